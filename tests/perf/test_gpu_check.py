"""``perf gpu-check`` on a machine without a GPU: it refuses, and every check and comparison
runs on the CPU against itself (agreement) and on made-up figures (disagreement)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shamisa_bench.cli import main
from shamisa_bench.distortions import CATALOG
from shamisa_bench.perf.gpu_check import (
    TOLERANCES,
    amp_agreement,
    compare_scores,
    compare_step,
    ddp_verdict,
    engine_agreement,
    gpu_check,
    psnr,
)
from shamisa_bench.train import preset_config


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_refuses_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "gpu-check"]) == 2
    err = capsys.readouterr().err
    assert "CUDA GPU and there is none here" in err and "torch.cuda.is_available() is False" in err


def test_psnr() -> None:
    a = torch.zeros(1, 3, 4, 4)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # mse 0.01
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(a, torch.zeros(1, 3, 4, 5))


def test_engine_agreement_of_the_cpu_with_itself() -> None:
    crops = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = engine_agreement(crops, "cpu", "cpu", seed=3)
    assert result["passed"] and result["failed"] == []
    assert set(result["psnr_db"]) == set(CATALOG) and set(result["psnr_db"].values()) == {"inf"}
    json.dumps(result)  # JSON-ready (inf as a string)
    # a threshold no comparison can meet: every type is reported as failed
    assert engine_agreement(crops, "cpu", "cpu", types=["jpeg"], min_psnr=math.nan)["failed"] == ["jpeg"]


def test_compare_step_flags_each_kind_of_disagreement() -> None:
    g = torch.randn(100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    same = compare_step(2.0, g, 2.0, g.clone())
    assert same["passed"] and same["grad_cosine"] == pytest.approx(1.0) and same["loss_rel_diff"] == 0.0
    assert compare_step(2.0, g, 2.0 * (1 + 0.5 * TOLERANCES["amp_loss_rtol"]), g)["passed"]
    assert not compare_step(2.0, g, 2.0 * (1 + 2 * TOLERANCES["amp_loss_rtol"]), g)["passed"]  # the loss
    assert not compare_step(2.0, g, 2.0, -g)["passed"]  # the direction
    assert not compare_step(2.0, g, 2.0, 1.2 * g)["passed"]  # the size
    bad = compare_step(2.0, g, float("nan"), g)
    assert not bad["passed"] and bad["loss_rel_diff"] == "inf"
    json.dumps(bad)


def test_compare_scores() -> None:
    assert compare_scores([0.1, 0.5], [0.1, 0.5 + 0.5 * TOLERANCES["metric_atol"]])["passed"]
    assert not compare_scores([0.1, 0.5], [0.1, 0.51])["passed"]
    assert not compare_scores([0.1], [0.1, 0.2])["passed"]
    assert not compare_scores([0.1], [float("nan")])["passed"]


def _log(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_ddp_verdict(tmp_path: Path) -> None:
    agree = {"summary": {"world_size": 2, "rank_checksums": ["ab", "ab"], "steps": 2}}
    assert ddp_verdict(_log(tmp_path / "a.jsonl", [{"step": 0}, agree]), 2)["passed"]
    assert not ddp_verdict(_log(tmp_path / "b.jsonl", [agree]), 4)["passed"]  # fewer ranks than GPUs
    split = {"summary": {"world_size": 2, "rank_checksums": ["ab", "cd"], "steps": 2}}
    assert ddp_verdict(_log(tmp_path / "c.jsonl", [split]), 2)["ranks_agree"] is False
    unfinished = ddp_verdict(_log(tmp_path / "d.jsonl", [{"step": 0}]), 2)
    assert not unfinished["passed"] and "did not finish" in unfinished["error"]
    assert "cannot read" in ddp_verdict(tmp_path / "missing.jsonl", 2)["error"]


@pytest.mark.slow
def test_amp_agreement_runs_a_step_and_agrees_with_itself_in_fp32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(tmp_path / f"im{i}.png")
    result = amp_agreement(preset_config("tiny"), tmp_path, "cpu", amp=False)
    assert result["passed"] and result["loss_rel_diff"] == 0.0 and result["grad_cosine"] == pytest.approx(1.0)
    assert result["crops"] == preset_config("tiny").layout.n_nodes and math.isfinite(result["loss"][0])


def test_the_report_names_what_ran_and_refuses_unknown_checks(tmp_path: Path) -> None:
    every = ["engine", "amp", "ddp", "resume", "metric"]
    report = gpu_check("cpu", skip=every, workdir=tmp_path)
    assert report["benchmark"] == "gpu-check" and report["passed"] and report["checks"] == []
    assert report["skipped"] == sorted(every) and report["tolerances"] == TOLERANCES
    assert report["provenance"]["git_sha"] is not None and "torch_version" in report["provenance"]
    assert len(list((tmp_path / "images").glob("*.png"))) == 8  # the runs' generated images
    json.dumps(report)
    with pytest.raises(ValueError, match="unknown checks"):
        gpu_check("cpu", skip=["fog"], workdir=tmp_path)
