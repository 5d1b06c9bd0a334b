"""The command tree: grouped --help, and the old spellings of renamed commands."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest

from shamisa_bench.cli import COMMAND_GROUPS, COMMANDS, build_parser, main

NOTE = "note: 'shamisa-bench {old}' is now 'shamisa-bench {new}'; the old spelling will be removed in the next release"


def test_help_lists_the_commands_by_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "command groups:" in out
    for group, commands in COMMAND_GROUPS:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"{group}:"))
        assert line.split(":", 1)[1].strip() == ", ".join(commands)


def test_every_listed_command_exists_and_old_spellings_are_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    listed = {action.dest for action in commands._choices_actions}
    grouped = {c for _, cs in COMMAND_GROUPS for c in cs}
    assert listed == grouped
    assert {"datasets", "distort", "bench"} <= set(commands.choices) - listed
    parser.print_help()
    rows = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("    ") and ln.strip()]
    assert set(rows) >= grouped and not {"datasets", "distort", "bench"} & set(rows)


def test_commands_table_matches_the_modules_that_declare_them() -> None:
    """COMMANDS (what --help shows without importing anything) says what the modules declare."""
    declared: dict[str, tuple[str | None, str]] = {}
    for module in dict.fromkeys(m for _, modules in COMMANDS.values() for m in modules):
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        helps = {action.dest: action.help for action in sub._choices_actions}
        declared.update({name: (helps.get(name), module) for name in sub.choices})
    assert set(declared) == set(COMMANDS)
    listed = [name for name in COMMANDS if COMMANDS[name][0] is not None]
    assert [name for name in declared if declared[name][0] is not None] == listed  # in the order of --help
    for name, (help_line, module) in declared.items():
        assert COMMANDS[name][0] == help_line, name
        assert COMMANDS[name][1][0] == module, name  # the declaring module comes first
    assert COMMANDS["run"][1] == COMMANDS["report"][1] == ("shamisa_bench.harness.cli", "shamisa_bench.robustness.cli")


def test_a_command_imports_only_its_modules_and_keeps_its_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name: imported.append(name) or real(name))
    args = build_parser("run").parse_args(["run", "--suite", "robustness"])
    assert imported == ["shamisa_bench.harness.cli", "shamisa_bench.robustness.cli"]
    assert len(args.suite_handlers) == 1  # robustness takes `run --suite robustness`
    imported.clear()
    with pytest.raises(SystemExit):
        main(["--debug", "bogus"])
    assert imported == []


def test_datasets_is_data_ls_and_data_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--cache-dir", str(tmp_path), "--data-root", str(tmp_path)]
    assert main(["datasets", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [NOTE.format(old="datasets", new="data ls")]
    assert main(["data", "ls", *argv]) == 0
    new = capsys.readouterr()
    assert new.err == "" and new.out == captured.out
    assert main(["datasets", "--verify", *argv]) == 0
    assert capsys.readouterr().err.splitlines() == [NOTE.format(old="datasets", new="data verify")]


def test_distortions_without_action_is_distortions_ls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distortions", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [NOTE.format(old="distortions", new="distortions ls")]
    assert main(["distortions", "ls", "--json"]) == 0
    new = capsys.readouterr()
    assert new.err == "" and json.loads(new.out) == json.loads(captured.out)


def test_distort_is_distortions_sheet(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(photo), "--types", "gaussian_blur", "--size", "32", "--no-composition"]
    assert main(["distort", *argv, "--out", str(tmp_path / "old.png")]) == 0
    assert capsys.readouterr().err.splitlines() == [NOTE.format(old="distort", new="distortions sheet")]
    assert main(["distortions", "sheet", *argv, "--out", str(tmp_path / "new.png")]) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "old.png").read_bytes() == (tmp_path / "new.png").read_bytes()


def test_bench_is_perf(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--n", "200", "--d", "32", "--splits", "2", "--alphas", "3"]
    assert main(["bench", "ridge", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [NOTE.format(old="bench ridge", new="perf ridge")]
    assert main(["perf", "ridge", *argv]) == 0
    new = capsys.readouterr()
    assert new.err == ""
    assert json.loads(new.out)["chosen_alpha"] == json.loads(captured.out)["chosen_alpha"]
    parser = build_parser()
    perf = parser.parse_args(["perf", "engine"])
    bench = parser.parse_args(["bench", "engine"])
    same = {k: v for k, v in vars(perf).items() if k not in ("func", "command")}
    assert same == {k: v for k, v in vars(bench).items() if k not in ("func", "command")}
