"""``pretrain-diagnose``: per-term encoder gradients at a run's checkpoint."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shamisa_bench.cli import main
from shamisa_bench.train import PretrainError, preset_config, run_pretrain
from shamisa_bench.train.diagnose import PARTS, diagnose_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = tmp_path_factory.mktemp("pristine")
    rng = np.random.default_rng(3)
    for i in range(6):
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    out = tmp_path_factory.mktemp("diag") / "run"
    run_pretrain(preset_config("tiny", max_steps=2), images, out, device="cpu", num_workers=0, progress=False)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_parts_sum_to_the_loss_and_the_run_is_left_untouched(run: Path) -> None:
    before = _digest(run)
    result = diagnose_run(run, batches=2)
    assert _digest(run) == before
    assert result["step"] == 2 and [b["step"] for b in result["batches"]] == [2, 3]
    for b in result["batches"]:
        assert sum(b["parts"][k] for k in PARTS) == pytest.approx(b["loss"], rel=1e-3, abs=1e-3)
        assert b["grad_norm"]["total"] > 0
        # the total's gradient is the sum of the parts': never longer than their norms added
        assert b["grad_norm"]["total"] <= sum(b["grad_norm"][k] for k in PARTS) * (1 + 1e-4)
        assert all(c is None or -1.0 <= c <= 1.0 for c in b["cos"].values())
    assert result["noise_mean_over_norm"] == pytest.approx(1 / math.sqrt(2), abs=1e-4)
    total = result["consistency"]["total"]
    assert -1.0 <= total["mean_pairwise_cos"] <= 1.0 and 0.0 < total["mean_over_norm"] <= 1.0


def test_averaged_batches_follow_the_accumulation_ladder(run: Path) -> None:
    result = diagnose_run(run, batches=5)
    ladder = result["total_averaged"]
    # k doubles up to half the batches; the last partial group is dropped
    assert [(a["k"], a["groups"]) for a in ladder] == [(1, 5), (2, 2)]
    # single batches are the total's own pairwise consistency
    assert ladder[0]["mean_pairwise_cos"] == result["consistency"]["total"]["mean_pairwise_cos"]
    assert all(-1.0 <= a["mean_pairwise_cos"] <= 1.0 for a in ladder)


def test_same_run_same_figures(run: Path) -> None:
    a, b = diagnose_run(run, batches=2), diagnose_run(run, batches=2)
    assert a["checkpoint_sha256"] == b["checkpoint_sha256"] and a["seed"] == b["seed"]
    assert (a["batches"], a["consistency"]) == (b["batches"], b["consistency"])


def test_bad_input_is_named(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batches"):
        diagnose_run(run, batches=1)
    with pytest.raises(PretrainError, match="config.json"):
        diagnose_run(tmp_path)
    with pytest.raises(PretrainError, match="no JPEG, PNG"):
        diagnose_run(run, [tmp_path], batches=2)


def test_a_log_cut_short_still_gives_the_images(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with (copy / "log.jsonl").open("a") as fh:
        fh.write('{"step": 9, "loss": 1.')  # a record cut short by a kill
    result = diagnose_run(copy, batches=2)
    assert result["images"]["count"] == 6 and result["images"]["unreadable"] == 0
    mixed = tmp_path / "mixed"
    shutil.copytree(result["images"]["folders"][0], mixed)
    (mixed / "bad.jpg").write_bytes(b"not a jpeg")
    counted = diagnose_run(copy, [mixed], batches=2)["images"]
    assert counted["count"] == 6 and counted["unreadable"] == 1
    assert counted["unreadable_files"][0][0].endswith("bad.jpg")
    (copy / "log.jsonl").write_text("")
    with pytest.raises(PretrainError, match="records no image folders"):
        diagnose_run(copy, batches=2)


def test_cli_prints_json(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain-diagnose", str(run), "--batches", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["consistency"]) == {*PARTS, "total"}
    assert main(["pretrain-diagnose", str(run), "--batches", "1"]) != 0
