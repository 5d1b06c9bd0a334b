"""Careful-user inputs of the harness: stale results, metrics outside the suite, odd suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from shamisa_bench.harness.staleness import stale_reasons
from tests.harness.test_run import _run, _unit, make_env

UNIT = ("tiny", "intra", "dummy-score", "tiny")


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    """test_run's registry with two tiny csv datasets (tiny, tinyd), dummy metrics and suites."""
    return make_env(tmp_path)


def _flip_labels(env: dict[str, Path]) -> None:
    csv = env["data"] / "tiny" / "mos.csv"
    lines = csv.read_text().splitlines()
    body = [f"{name},{100 - float(mos):.3f}" for name, mos in (ln.split(",") for ln in lines[1:])]
    csv.write_text("\n".join([lines[0], *body]) + "\n")


def test_changed_labels_make_a_finished_unit_stale(env, capsys):
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    before = _unit(env, *UNIT)["scores"]["aggregate"]["srcc"]["median"]
    capsys.readouterr()
    _flip_labels(env)
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    out = capsys.readouterr().out
    assert "recomputing a result whose inputs changed" in out and "label file sha256 changed" in out
    after = _unit(env, *UNIT)["scores"]["aggregate"]["srcc"]["median"]
    assert before > 0.5 and after == pytest.approx(-before)
    table = (env["results"] / "tables" / "tiny.csv").read_text()
    assert f"tiny,intra,dummy-score,tiny,,,srcc,median,{after:.6f}," in table  # the leaderboard too


def test_changed_images_and_seed_make_a_unit_stale(env, capsys):
    from PIL import Image

    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    capsys.readouterr()
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    assert "already done, skipped" in capsys.readouterr().out  # nothing changed: skipped
    Image.new("RGB", (48, 64), (200, 10, 10)).save(env["data"] / "tiny" / "img" / "img00.png")
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    assert "images digest changed" in capsys.readouterr().out
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score", "--seed", "5") == 0
    out = capsys.readouterr().out
    assert "split base_seed changed (0 -> 5)" in out
    assert _unit(env, *UNIT)["splits"]["base_seed"] == 5


def test_stale_reasons_compare_only_recorded_inputs():
    class Table:
        label_sha256 = "a" * 64
        images_sha256 = "b" * 64

    record = {"datasets": {"tiny": {"label_sha256": "a" * 64}},
              "splits": {"n_splits": 3, "base_seed": 0, "ratios": [0.5, 0.25, 0.25], "hashes": ["h1"]},
              "provenance": {"checkpoint_sha256": "c" * 64}}
    same = {"tables": {"tiny": Table()}, "split_hashes": ["h1"], "n_splits": 3, "base_seed": 0,
            "ratios": (0.5, 0.25, 0.25), "checkpoint_sha256": "c" * 64}
    assert stale_reasons(record, **same) == []  # images digest not recorded: not compared
    assert stale_reasons(record, **{**same, "checkpoint_sha256": "d" * 64}) == [
        "metric weights sha256 changed (cccccccccccc -> dddddddddddd)"]
    assert stale_reasons(record, **{**same, "checkpoint_sha256": None, "check_checkpoint": False}) == []
    assert stale_reasons(record, **{**same, "split_hashes": ["h2"]})[0].startswith("split definition changed")
    assert stale_reasons(json.loads(json.dumps(record)), **{**same, "n_splits": 4}) == [
        "split n_splits changed (3 -> 4)"]


def test_a_metric_outside_the_suite_is_refused_and_tables_are_untouched(env, capsys):
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    table = env["results"] / "tables" / "tiny.csv"
    before = table.read_bytes()
    capsys.readouterr()
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score", "dummy-fit") == 2
    err = capsys.readouterr().err
    assert "suite 'tiny' has no metric 'dummy-fit'" in err and "dummy-score, dummy-lower" in err
    assert not (env["results"] / "runs" / "tiny" / "intra" / "dummy-fit").exists()
    assert table.read_bytes() == before


def test_an_unwritable_results_folder_fails_before_any_work(env, capsys, monkeypatch):
    import errno
    import tempfile

    from shamisa_bench.harness.adapters.dummy import DummyMetric

    computed = []
    monkeypatch.setattr(DummyMetric, "compute", lambda self, x, name: computed.append(name))

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")  # chmod does not bind root

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 2
    err = capsys.readouterr().err
    assert f"--results {env['results']}: cannot write in {env['results'].parent} (Permission denied)" in err
    assert computed == [] and "Traceback" not in err


def test_a_write_error_names_the_file_and_keeps_the_units_written(env, capsys, monkeypatch):
    import errno
    import os

    from shamisa_bench.common import atomic

    real = os.fsync
    writes = []

    def full_disk(fd):  # the second unit file finds the disk full
        writes.append(fd)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score", "dummy-lower", "--no-cache") == 2
    err = " ".join(capsys.readouterr().err.split())
    second = env["results"] / "runs" / "tiny" / "intra" / "dummy-lower" / "tiny.json"
    assert f"cannot write {second}: No space left on device" in err and "Traceback" not in err
    assert _unit(env, *UNIT)["status"] == "ok"  # the unit written before is kept
    assert not second.exists() and not list(second.parent.glob(".tmp-*"))


def test_a_suite_named_dotdot_or_empty_fails_validate_and_writes_nothing(env, capsys):
    suites = env["registry"] / "suites"
    (suites / "...yaml").write_text((suites / "tiny.yaml").read_text().replace("name: tiny", "name: '..'"))
    (suites / "empty.yaml").write_text((suites / "tiny.yaml").read_text()
                                       .replace("name: tiny", "name: empty").replace("datasets: [tiny]", "datasets: []"))
    assert main(["validate", "--registry", str(env["registry"])]) == 1
    err = capsys.readouterr().err
    assert "name '..' must start with a letter or digit" in err
    assert "empty.yaml: field 'datasets' is empty: a suite needs at least one" in err
    assert _run(env, "--suite", "..") == 2
    assert not (env["results"] / "tables").exists() and not (env["results"] / "runs").exists()


def test_a_negative_seed_names_the_option(env, capsys):
    assert _run(env, "--suite", "tiny", "--seed", "-1") == 2
    assert "--seed must be a non-negative integer, got -1" in capsys.readouterr().err
