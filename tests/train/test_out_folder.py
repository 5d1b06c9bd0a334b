"""pretrain's --out: another program's files are never overwritten; unwritable folders fail first."""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from shamisa_bench.train import cli as train_cli


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """run_pretrain replaced by a recorder: these tests check what happens before training."""
    seen: list[Path] = []

    def fake(config, images, out, **kw):  # type: ignore[no-untyped-def]
        seen.append(out)
        return {"rank": 1}

    monkeypatch.setattr(train_cli, "run_pretrain", fake)
    return seen


def _pretrain(tmp_path: Path, out: Path, *extra: str) -> int:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    return main(["pretrain", "--images", str(tmp_path / "imgs"), "--out", str(out), "--preset", "tiny", *extra])


def test_a_folder_of_someone_elses_files_is_refused(tmp_path: Path, calls: list[Path], capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"learning_rate": 0.1}')
    (out / "log.jsonl").write_text("my notes\n")
    assert _pretrain(tmp_path, out) == 2
    err = capsys.readouterr().err
    assert f"--out {out} holds files that are not a shamisa-bench pretrain run (config.json, log.jsonl)" in err
    assert "--overwrite" in err and calls == []
    assert (out / "config.json").read_text() == '{"learning_rate": 0.1}'
    assert (out / "log.jsonl").read_text() == "my notes\n"
    assert _pretrain(tmp_path, out, "--overwrite") == 0 and calls == [out]


def test_new_empty_and_own_run_folders_are_accepted(tmp_path: Path, calls: list[Path]) -> None:
    assert _pretrain(tmp_path, tmp_path / "new" / "run") == 0
    (tmp_path / "empty").mkdir()
    assert _pretrain(tmp_path, tmp_path / "empty") == 0
    own = tmp_path / "own"
    own.mkdir()
    (own / "config.json").write_text(json.dumps({"format": 1, "config": {"seed": 0}, "images": {"count": 3}}))
    (own / "log.jsonl").write_text("")
    assert _pretrain(tmp_path, own) == 0
    assert calls == [tmp_path / "new" / "run", tmp_path / "empty", own]


def test_an_unwritable_out_fails_before_training(tmp_path: Path, calls: list[Path], capsys,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # a read-only folder (chmod does not bind root)
    assert _pretrain(tmp_path, tmp_path / "ro" / "run") == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'ro' / 'run'}: cannot write in {tmp_path} (Permission denied)" in err
    assert calls == []
    (tmp_path / "file").write_text("x")
    assert _pretrain(tmp_path, tmp_path / "file") == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_checkpoint_with_a_negative_step_names_the_file(tmp_path: Path) -> None:
    import torch

    from shamisa_bench.train.checkpoint import load_resume
    from shamisa_bench.train.config import CONFIG_FORMAT, PretrainError, preset_config

    config = preset_config("tiny")
    (tmp_path / "config.json").write_text(json.dumps({"format": CONFIG_FORMAT, "config": config.to_dict(),
                                                      "images": {"count": 1}}))
    torch.save({"net": {}, "optimizer": {}, "step": -3, "scaler": None}, tmp_path / "checkpoint.pt")
    with pytest.raises(PretrainError, match=rf"checkpoint {tmp_path / 'checkpoint.pt'} records step -3"):
        load_resume(tmp_path, config)
