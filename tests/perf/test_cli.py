"""Command-line smoke tests of ``bench engine``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shamisa_bench.cli import main
from shamisa_bench.distortions import CATALOG


def test_bench_engine_json(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(photo.read_bytes())
    argv = [
        "bench",
        "engine",
        "--images",
        str(folder),
        "--steps",
        "2",
        "--warmup",
        "0",
        "--crop-size",
        "24",
        "--type-batch",
        "4",
        "--no-malloc-tuning",
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["crops_per_step"] == 252 and result["device"] == "cpu"
    assert result["seconds_per_step"] > 0 and result["crops_per_s"] > 0
    assert len(result["seconds_per_step_all"]) == 2
    assert set(result["ms_per_crop"]) == set(CATALOG)
    assert all(v >= 0 for v in result["ms_per_crop"].values())
    assert 0 < sum(result["step_share"].values()) <= 1.0 + 1e-6
    assert "1 of 1 images" in result["images"] and result["malloc_tuned"] is False
    assert result["cpu_seconds_per_step"] > 0


def test_bench_engine_readable_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "engine", "--steps", "1", "--warmup", "0", "--crop-size", "16", "--type-batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "crops per step" in out and "s/step" in out


def test_bench_engine_bad_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "engine", "--images", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["perf", "engine", "--images", str(tmp_path)]) == 2
    assert "no JPEG/PNG/BMP/TIFF images" in capsys.readouterr().err
    assert main(["perf", "engine", "--steps", "0"]) == 2


def test_perf_pretrain_data_only_reads_the_runs_loader(capsys: pytest.CaptureFixture[str]) -> None:
    """No model: the preset's steps as the run's loader produces them, timed after the warm-up."""
    argv = ["perf", "pretrain", "--preset", "tiny", "--data-only", "--workers", "0", "--steps", "2", "--warmup", "1",
            "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "pretrain-data" and result["workers"] == 0 and result["steps_timed"] == 2
    assert result["crops_per_step"] == 40 and result["steps_per_s"] > 0
    assert result["crops_per_s"] == pytest.approx(40 * result["steps_per_s"], rel=1e-3)
    assert result["build_s_median"] > 0 and result["cpu_seconds_per_step"] > 0
