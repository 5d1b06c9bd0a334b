"""Pretraining: run folder, determinism, resume (also after SIGKILL), bad input, DDP on gloo."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shamisa_bench.cli import build_parser, main
from shamisa_bench.model import PretrainNet
from shamisa_bench.train import (
    PRESETS,
    PretrainConfig,
    PretrainError,
    StepDataset,
    preset_config,
    run_pretrain,
)
from shamisa_bench.train.cli import config_from_args
from shamisa_bench.train.loop import PARAM_GROUPS
from tests.helpers import csv_dataset_yaml, write_text


def _write_images(folder: Path, n: int = 6, size: tuple[int, int] = (96, 80)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"im{i}.png")
    return folder


def _export_state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "export" / "encoder.pt", map_location="cpu", weights_only=True)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _tiny(**overrides: object) -> PretrainConfig:
    return preset_config("tiny", **overrides)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_images(tmp_path_factory.mktemp("pristine"))


@pytest.fixture(scope="module")
def reference_run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    run_pretrain(_tiny(), images, run, device="cpu", num_workers=0, progress=False)
    return run


def test_run_folder_contents(reference_run: Path) -> None:
    lines = (reference_run / "log.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert "command" in header and header["config"]["preset"] == "tiny"
    assert header["provenance"]["torch_version"] and "git_sha" in header["provenance"]
    steps = [json.loads(line) for line in lines[1:-1]]
    assert [r["step"] for r in steps] == [0, 1, 2, 3]
    end = json.loads(lines[-1])
    assert end["summary"]["steps"] == 4 and len(end["export_sha256"]) == 64
    for r in steps:
        assert np.isfinite(r["loss"]) and r["lr"] > 0
        assert r["data_s"] >= 0 and r["compute_s"] > 0
        for term in ("var", "inv", "cov"):
            assert term in r
        # the aggregator's view of the graph: 6 weights summing to 1, and each branch's
        # coefficient-scaled weight sum (every branch of the full graph has edges)
        assert len(r["branch_weights"]) == 6 and abs(sum(r["branch_weights"]) - 1) < 1e-3
        assert len(r["branch_sums"]) == 6 and all(s > 0 for s in r["branch_sums"])
    export_cfg = json.loads((reference_run / "export" / "config.json").read_text())
    assert export_cfg["backbone"] == "resnet18"
    assert (reference_run / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_same_seed_same_weights_and_workers_do_not_matter(images: Path, reference_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "again"
    run_pretrain(_tiny(), images, run, device="cpu", num_workers=2, progress=False)
    assert _same_state(_export_state(run), _export_state(reference_run))
    other = tmp_path / "other-seed"
    run_pretrain(_tiny(seed=5), images, other, device="cpu", num_workers=0, progress=False)
    assert not _same_state(_export_state(other), _export_state(reference_run))


@pytest.mark.slow
def test_resume_continues_to_identical_weights(images: Path, reference_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "split"
    # the schedule's period is the whole run (4 steps) in the reference run: fix it here too
    run_pretrain(_tiny(max_steps=2, lr_period_steps=4), images, run, device="cpu", num_workers=0, progress=False)
    run_pretrain(_tiny(max_steps=4, lr_period_steps=4), images, run, device="cpu", num_workers=0, progress=False,
                 resume=True)
    assert _same_state(_export_state(run), _export_state(reference_run))
    steps = [json.loads(l)["step"] for l in (run / "log.jsonl").read_text().splitlines() if '"step"' in l and '"command"' not in l]
    assert steps == [0, 1, 2, 3]


@pytest.mark.slow
def test_resume_from_a_checkpoint_whose_group_is_still_called_heads(images: Path, reference_run: Path,
                                                                     tmp_path: Path) -> None:
    run = tmp_path / "old"
    run_pretrain(_tiny(max_steps=2, lr_period_steps=4), images, run, device="cpu", num_workers=0, progress=False)
    ckpt = run / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == list(PARAM_GROUPS)
    state["optimizer"]["param_groups"][1]["name"] = "heads"  # as checkpoints before the rename
    torch.save(state, ckpt)
    run_pretrain(_tiny(max_steps=4, lr_period_steps=4), images, run, device="cpu", num_workers=0, progress=False,
                 resume=True)
    assert _same_state(_export_state(run), _export_state(reference_run))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == ["encoder", "projector_graph"]


@pytest.mark.slow
def test_sigkill_then_resume(images: Path, reference_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    env = dict(os.environ)  # same thread count as the in-process reference run
    cmd = [sys.executable, "-m", "shamisa_bench", "pretrain", "--images", str(images), "--out", str(run),
           "--preset", "tiny", "--max-steps", "40", "--lr-period-steps", "4", "--checkpoint-every", "2",
           "--device", "cpu", "--workers", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"pretrain exited before its first checkpoint: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Resume, but stop at 4 steps: the weights equal the uninterrupted 4-step run (whose
    # learning-rate period, the whole run, is 4 steps: the killed run was given the same).
    assert main(["pretrain", "--images", str(images), "--out", str(run), "--preset", "tiny", "--max-steps", "4",
                 "--lr-period-steps", "4", "--checkpoint-every", "2", "--device", "cpu", "--workers", "0", "--no-progress", "--resume"]) == 0
    assert _same_state(_export_state(run), _export_state(reference_run))


def _wait_for_step(proc: subprocess.Popen, log: Path, step: int, timeout_s: float) -> None:
    """Wait until the run's log holds the record of ``step``; fail if the process ends first."""
    deadline = time.monotonic() + timeout_s
    while not (log.is_file() and f'"step": {step}, "loss"' in log.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"pretrain ended or stalled before step {step}: {proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_a_record(images: Path, tmp_path: Path,
                                                                        signum: int) -> None:
    run = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "shamisa_bench", "pretrain", "--images", str(images), "--out", str(run),
           "--preset", "tiny", "--max-steps", "400", "--lr-period-steps", "4", "--checkpoint-every", "1000",
           "--device", "cpu", "--workers", "1", "--no-progress"]
    # its own process group, so the signal reaches the DataLoader worker too, as Ctrl-C does
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = run / "log.jsonl"
    _wait_for_step(proc, log, 0, timeout_s=120)
    os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr.decode()[-2000:]
    assert "continue with --resume" in stderr.decode() and "Traceback" not in stderr.decode()
    stopped = json.loads(log.read_text().splitlines()[-1])["stopped"]
    done = stopped["after_step"]
    assert 1 <= done < 400 and stopped["signal"] == signal.Signals(signum).name and stopped["seconds"] > 0
    assert torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["step"] == done
    assert not (run / "export").exists()  # a stopped run has no final export
    from shamisa_bench.train.report import read_run_log

    assert read_run_log(run).state == f"stopped by {signal.Signals(signum).name} after step {done} of 400"

    # resumed, it reaches the weights of a run never stopped
    run_pretrain(_tiny(max_steps=done + 1, lr_period_steps=4, checkpoint_every=1000), images, run, device="cpu", num_workers=0,
                 progress=False, resume=True)
    whole = tmp_path / "whole"
    run_pretrain(_tiny(max_steps=done + 1, lr_period_steps=4, checkpoint_every=1000), images, whole, device="cpu", num_workers=0,
                 progress=False)
    assert _same_state(_export_state(run), _export_state(whole))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(done + 1))
    assert sum("stopped" in r for r in records) == 1


def test_bad_resume_folders_write_nothing(images: Path, reference_run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PretrainError, match="config.json"):
        run_pretrain(_tiny(), images, empty, device="cpu", num_workers=0, progress=False, resume=True)
    assert list(empty.iterdir()) == []

    import shutil

    wrong = tmp_path / "wrong"
    shutil.copytree(reference_run, wrong)
    before = {p.name: p.stat().st_mtime_ns for p in wrong.iterdir()}
    with pytest.raises(PretrainError, match="another config"):
        run_pretrain(_tiny(lr=0.5), images, wrong, device="cpu", num_workers=0, progress=False, resume=True)
    (wrong / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = {p.name: p.stat().st_mtime_ns for p in wrong.iterdir()}
    with pytest.raises(PretrainError, match="corrupt"):
        run_pretrain(_tiny(), images, wrong, device="cpu", num_workers=0, progress=False, resume=True)
    assert {p.name: p.stat().st_mtime_ns for p in wrong.iterdir()} == before


def test_bad_image_folders(tmp_path: Path) -> None:
    with pytest.raises(PretrainError, match="does not exist"):
        run_pretrain(_tiny(), tmp_path / "nope", tmp_path / "run", device="cpu", num_workers=0, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PretrainError, match="no JPEG"):
        run_pretrain(_tiny(), empty, tmp_path / "run", device="cpu", num_workers=0, progress=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"b{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(PretrainError, match="could be read"):
        run_pretrain(_tiny(), broken, tmp_path / "run", device="cpu", num_workers=0, progress=False)


def test_unreadable_files_are_counted_or_fail_the_run(tmp_path: Path) -> None:
    folder = _write_images(tmp_path / "mixed", n=6)
    (folder / "zz_broken.jpg").write_bytes(b"garbage")
    with pytest.raises(PretrainError, match="1 of 7 image files .* unreadable"):
        run_pretrain(_tiny(), folder, tmp_path / "strict", device="cpu", num_workers=0, progress=False)
    run = tmp_path / "lenient"
    run_pretrain(_tiny(max_steps=1, max_unreadable_fraction=0.5), folder, run, device="cpu", num_workers=0, progress=False)
    header = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert header["unreadable"] == 1 and header["n_images"] == 6
    assert header["unreadable_files"][0][0].endswith("zz_broken.jpg")


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_checkpoint(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "nan"
    run_pretrain(_tiny(max_steps=2), images, run, device="cpu", num_workers=0, progress=False)
    good = (run / "checkpoint.pt").read_bytes()

    from shamisa_bench import losses

    original = losses.ShamisaLoss.forward

    def poisoned(self, z, graph_out):  # type: ignore[no-untyped-def]
        out = original(self, z, graph_out)
        out.terms["cov"] = out.terms["cov"] * float("nan")
        return type(out)(total=out.total * float("nan"), terms=out.terms)

    monkeypatch.setattr(losses.ShamisaLoss, "forward", poisoned)
    with pytest.raises(PretrainError, match=r"step 2 \(term: cov"):
        run_pretrain(_tiny(max_steps=4), images, run, device="cpu", num_workers=0, progress=False, resume=True)
    assert (run / "checkpoint.pt").read_bytes() == good


def test_ranks_get_disjoint_shards(images: Path) -> None:
    layout = _tiny().layout
    paths = sorted(images.iterdir())
    ranks = [StepDataset(paths, layout, seed=1, start=0, stop=1, rank=r, world_size=2) for r in range(2)]
    seen = [set(ds.item_indices(0)) for ds in ranks]
    assert not seen[0] & seen[1]
    assert len(seen[0]) == layout.n_items


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")
    with pytest.raises(ValueError, match="init"):
        preset_config("tiny", init="pretrained")
    with pytest.raises(ValueError, match="unknown config fields"):
        preset_config("tiny", learning_rate=1.0)


@pytest.mark.slow
def test_ddp_gloo_two_ranks(images: Path, tmp_path: Path) -> None:
    """Two CPU ranks with gloo: identical weights on both ranks at the end.

    The DDP loss is the mean of the two ranks' losses, each over its own shard of the step.
    It is not the loss of one 4-item step in one process: ref-ref
    edges between items, the kNN and transport neighbourhoods, and the variance/covariance
    statistics are computed per rank (2 items each here, 4 per global step). So we check it
    against the mean of the per-shard losses.
    """
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "shamisa_bench", "pretrain", "--images", str(images), "--out", str(run), "--preset", "tiny",
           "--max-steps", "2", "--device", "cpu", "--workers", "0", "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2
    assert len(summary["rank_checksums"]) == 2 and len(set(summary["rank_checksums"])) == 1
    header = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert header["world_size"] == 2
    # The logged step-0 loss is the mean of the two shards' losses, each computed here in
    # one process from the same initial weights.
    from shamisa_bench.losses import LossConfig, ShamisaLoss
    from shamisa_bench.train.data import scan_images

    config = _tiny(max_steps=2)
    paths, _ = scan_images(images)
    shard_losses = []
    for rank in range(2):
        torch.manual_seed(config.seed)
        net = PretrainNet(config).train()
        batch = StepDataset(paths, config.layout, seed=config.seed, start=0, stop=1, rank=rank, world_size=2).build(0)
        z, graph_out = net(batch.crops, batch.nodes)
        shard_losses.append(float(ShamisaLoss(LossConfig.ablation(config.graph))(z, graph_out).total.detach()))
    step0 = json.loads((run / "log.jsonl").read_text().splitlines()[1])
    assert step0["step"] == 0
    assert step0["loss"] == pytest.approx(sum(shard_losses) / 2, rel=1e-4, abs=1e-4)



@pytest.mark.slow
def test_sigterm_to_a_torchrun_job_stops_both_ranks_after_the_same_step(images: Path, tmp_path: Path) -> None:
    """SIGTERM to torchrun's process group (a scheduler's notice): the agent forwards it, the
    ranks agree on the step through an all-reduce, and the run stops cleanly there."""
    run = tmp_path / "ddp-stopped"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "shamisa_bench", "pretrain", "--images", str(images), "--out", str(run), "--preset", "tiny",
           "--max-steps", "400", "--lr-period-steps", "4", "--checkpoint-every", "1000", "--device", "cpu",
           "--workers", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    log = run / "log.jsonl"
    _wait_for_step(proc, log, 1, timeout_s=180)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    text = stderr.decode()
    assert proc.returncode != 0
    assert text.count("continue with --resume") == 2, text[-3000:]  # both ranks stopped cleanly
    records = [json.loads(line) for line in log.read_text().splitlines()]
    stopped = [r["stopped"] for r in records if "stopped" in r]
    assert len(stopped) == 1 and stopped[0]["signal"] == "SIGTERM"
    done = stopped[0]["after_step"]
    assert 2 <= done < 400
    assert [r["step"] for r in records if "loss" in r] == list(range(done))
    assert torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["step"] == done
    assert not (run / "export").exists()


def _labelled_dataset(tmp: Path) -> tuple[Path, Path]:
    """A 12-image csv dataset (MOS follows brightness) and a registry overlay naming it."""
    data = tmp / "data"
    folder = _write_images(data / "bright" / "img", n=0)
    rng = np.random.default_rng(3)
    rows = ["image,mos"]
    for i in range(12):
        level = (i + 0.5) / 12
        arr = np.clip(level * 0.8 + rng.uniform(0, 0.2, size=(48, 48, 3)), 0, 1)
        Image.fromarray((arr * 255).astype(np.uint8)).save(folder / f"b{i:02d}.png")
        rows.append(f"img/b{i:02d}.png,{100 * level:.2f}")
    (data / "bright" / "mos.csv").write_text("\n".join(rows) + "\n")
    write_text(tmp / "registry" / "datasets" / "bright.yaml", csv_dataset_yaml("bright", 12))
    return data, tmp / "registry"


def test_validation_fell() -> None:
    from shamisa_bench.train.loop import validation_fell

    assert not validation_fell([0.73], 0.05, 1)  # the baseline alone
    assert validation_fell([0.73, 0.67], 0.05, 1)  # a fall from the start counts
    assert not validation_fell([0.73, 0.75, 0.71, 0.69], 0.05, 2)  # 0.71 is within 0.05 of 0.75
    assert validation_fell([0.73, 0.75, 0.69, 0.60], 0.05, 2)
    assert not validation_fell([0.73, 0.75, 0.69, 0.74, 0.60], 0.05, 2)  # not in a row
    for drop, patience in ((0.0, 2), (-0.1, 2), (float("nan"), 2), (0.05, 0)):
        with pytest.raises(ValueError, match="early stop"):
            validation_fell([0.7, 0.6, 0.5], drop, patience)


class _ScriptedProbe:
    """A validation probe that returns given SRCCs in turn (the early stop's input)."""

    dataset = "scripted"
    split_hash = "0" * 12

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)

    def __call__(self, encoder: torch.nn.Module) -> object:
        from shamisa_bench.train.probe import ValidationResult

        return ValidationResult(srcc=self.values.pop(0), alpha=1.0, n_images=10, n_divisions=3, seconds=0.0)


def test_early_stop_ends_a_falling_run_as_a_finished_one(images: Path, tmp_path: Path) -> None:
    from shamisa_bench.model import read_encoder_export
    from shamisa_bench.train.report import read_run_log

    run = tmp_path / "run"
    # steps 0..4: the start, a rise, then two validations more than 0.05 below the best (0.72)
    probe = _ScriptedProbe([0.70, 0.72, 0.60, 0.50])
    summary = run_pretrain(_tiny(max_steps=4, checkpoint_every=4), images, run, device="cpu", num_workers=0,
                           progress=False, validation=probe, val_every=1, early_stop=(0.05, 2))
    assert (summary["steps"], summary["planned_steps"], summary["early_stopped"]) == (3, 4, True)
    assert (summary["best_step"], summary["best_val_srcc"]) == (1, 0.72)
    log = read_run_log(run)
    assert [r["step"] for r in log.steps] == [0, 1, 2]
    assert log.stops[-1]["reason"] == "early_stop" and log.stops[-1]["after_step"] == 3
    assert log.state == "ended by --early-stop after step 3 of 4"
    assert read_encoder_export(run / "export").config["extra"]["pretrain"]["steps"] == 3
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3
    # --resume without the early stop runs the remaining step; the history is read from the log
    resumed = run_pretrain(_tiny(max_steps=4, checkpoint_every=4), images, run, device="cpu", num_workers=0,
                           progress=False, validation=_ScriptedProbe([0.55]), val_every=1, resume=True)
    assert (resumed["steps"], resumed["early_stopped"], resumed["best_step"]) == (4, False, 1)
    assert read_run_log(run).state == "finished"
    # a resumed run with the early stop reads the validations before it from the log
    def two_then_two(name: str, before: list[float], after: list[float]) -> dict[str, object]:
        folder = tmp_path / name
        run_pretrain(_tiny(max_steps=2, checkpoint_every=2), images, folder, device="cpu", num_workers=0,
                     progress=False, validation=_ScriptedProbe(before), val_every=1)
        return run_pretrain(_tiny(max_steps=4, checkpoint_every=2), images, folder, device="cpu", num_workers=0,
                            progress=False, validation=_ScriptedProbe(after), val_every=1, resume=True,
                            early_stop=(0.05, 2))

    ended = two_then_two("broken-row", [0.70, 0.60, 0.68], [0.64, 0.63])
    # step 3: 0.68 breaks the row; step 4 ends the run anyway, so it is no early stop
    assert (ended["start_step"], ended["steps"], ended["early_stopped"]) == (2, 4, False)
    ended = two_then_two("row", [0.70, 0.68, 0.60], [0.64, 0.9])
    assert (ended["steps"], ended["early_stopped"]) == (3, True)
    with pytest.raises(PretrainError, match="needs a validation"):
        run_pretrain(_tiny(max_steps=4), images, tmp_path / "x", device="cpu", num_workers=0, progress=False,
                     early_stop=(0.05, 2))
    with pytest.raises(PretrainError, match="early stop needs"):
        run_pretrain(_tiny(max_steps=4), images, tmp_path / "y", device="cpu", num_workers=0, progress=False,
                     validation=_ScriptedProbe([0.7]), val_every=1, early_stop=(0.0, 2))


def test_cli_early_stop_needs_a_validation(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["pretrain", "--preset", "tiny", "--images", str(images), "--out", str(tmp_path / "run"), "--no-progress",
            "--early-stop", "0.05"]
    assert main(argv) == 2
    assert "--val-dataset" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_cli_model_probe_measures_exports_as_pretraining_does(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from shamisa_bench import cli
    from shamisa_bench.harness.registry import load_registry
    from shamisa_bench.model import build_encoder, save_encoder_export
    from shamisa_bench.train.probe import ValidationProbe

    data, overlay = _labelled_dataset(tmp_path)
    registry = tmp_path / "full-registry"
    shutil.copytree(load_registry().root, registry)
    shutil.copy(overlay / "datasets" / "bright.yaml", registry / "datasets" / "bright.yaml")
    encoders = [build_encoder("resnet18", "random", seed=s) for s in (1, 2)]
    exports = [save_encoder_export(e, tmp_path / f"e{i}", extra={"pretrain": {"steps": 50 * (i + 1)}})
               for i, e in enumerate(encoders)]
    argv = ["model", "probe", *map(str, exports), "--dataset", "bright", "--data-root", str(data),
            "--registry", str(registry), "--device", "cpu"]
    assert cli.main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    probe = ValidationProbe("bright", data, registry=registry)
    assert [x["step"] for x in lines] == [50, 100]
    for line, encoder in zip(lines, encoders, strict=True):
        assert line["val_srcc"] == pytest.approx(probe(encoder).srcc, abs=1e-6)
        assert line["split_hash"] == probe.split_hash and line["val_divisions"] == 10
    # A broken export fails before any feature is extracted, naming the file.
    (exports[1] / "encoder.pt").write_bytes(b"garbage")
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "encoder.pt" in captured.err and "sha256" in captured.err
    assert cli.main([*argv[:3], "--dataset", "no-such-set", "--data-root", str(data)]) == 2
    assert "no-such-set" in capsys.readouterr().err


@pytest.mark.slow
def test_validation_selects_and_keeps_best_export(images: Path, tmp_path: Path) -> None:
    import shutil

    from shamisa_bench.harness.registry import load_registry
    from shamisa_bench.model import load_encoder_export, read_encoder_export
    from shamisa_bench.train.probe import ValidationProbe

    data, overlay = _labelled_dataset(tmp_path)
    registry = tmp_path / "full-registry"
    shutil.copytree(load_registry().root, registry)
    shutil.copy(overlay / "datasets" / "bright.yaml", registry / "datasets" / "bright.yaml")
    probe = ValidationProbe("bright", data, registry=registry, n_divisions=3, val_fraction=0.25)
    assert probe._mos.size < 12  # the split's test part is never measured
    run = tmp_path / "run"
    summary = run_pretrain(_tiny(max_steps=4), images, run, device="cpu", num_workers=0, progress=False,
                           validation=probe, val_every=2)
    vals = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"val_srcc"' in x]
    assert [v["step"] for v in vals] == [0, 2, 4]
    assert all(-1.0 <= v["val_srcc"] <= 1.0 and v["val_divisions"] == 3 for v in vals)
    best = max(vals[1:], key=lambda v: v["val_srcc"])  # step 0 (the init) is only the baseline
    assert summary["best_step"] == best["step"]
    extra = read_encoder_export(run / "best").config["extra"]
    assert extra["validation"]["val_srcc"] == best["val_srcc"]
    assert extra["pretrain"]["steps"] == best["step"]
    assert not (run / "best.new").exists() and not (run / "best.old").exists()
    # The same encoder measured twice gives the same value (features and splits are deterministic).
    encoder = load_encoder_export(run / "best")
    assert probe(encoder).srcc == pytest.approx(best["val_srcc"], abs=1e-6)
    # A resumed run remembers the best so far: same choice as the uninterrupted run.
    split = tmp_path / "split"
    run_pretrain(_tiny(max_steps=2), images, split, device="cpu", num_workers=0, progress=False,
                 validation=probe, val_every=2)
    resumed = run_pretrain(_tiny(max_steps=4), images, split, device="cpu", num_workers=0, progress=False,
                           validation=probe, val_every=2, resume=True)
    assert (resumed["best_step"], resumed["best_val_srcc"]) == (summary["best_step"], summary["best_val_srcc"])


def test_validation_needs_val_every(images: Path, tmp_path: Path) -> None:
    with pytest.raises(PretrainError, match="val_every"):
        run_pretrain(_tiny(), images, tmp_path / "run", device="cpu", num_workers=0, progress=False, val_every=0)


def test_lr_schedule_is_one_cosine_over_the_run_by_default() -> None:
    cfg = _tiny(max_steps=100)
    assert cfg.lr_period(100) == 100
    assert _tiny(lr_period_steps=30).lr_period(100) == 30
    with pytest.raises(ValueError):
        _tiny(lr_period_steps=0)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=cfg.lr_period(100), T_mult=cfg.t_mult,
                                                                 eta_min=cfg.eta_min)
    lrs = []
    for step in range(100):
        sched.step(step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(cfg.lr)
    assert lrs[50] == pytest.approx((cfg.lr + cfg.eta_min) / 2, rel=1e-6)
    assert all(a >= b for a, b in itertools.pairwise(lrs))  # no restart inside the run


def test_old_run_config_with_epoch_period_is_refused() -> None:
    data = _tiny().to_dict()
    data.pop("lr_period_steps")
    data["t_0"] = 1
    with pytest.raises(ValueError, match="older version"):
        PretrainConfig.from_dict(data)


def test_encoder_sees_references_and_distorted_crops_as_two_batches() -> None:
    from shamisa_bench.train.steps import build_step

    cfg = _tiny()
    torch.manual_seed(0)
    net = PretrainNet(cfg).train()
    g = torch.Generator().manual_seed(0)
    imgs = [[torch.rand(3, 80, 80, generator=g) for _ in range(cfg.layout.n_contents)]
            for _ in range(cfg.layout.n_items)]
    step = build_step(imgs, cfg.layout, generator=g)
    x, nodes = step.crops, step.nodes
    assert bool(nodes.is_ref[: int(nodes.is_ref.sum())].all())  # references first
    with torch.no_grad():
        z, _ = net(x, nodes)
        n_ref = int(nodes.is_ref.sum())
        _, z_ref_alone = net.model(x[:n_ref])
        _, z_joint = net.model(x)
    assert torch.allclose(z[:n_ref], z_ref_alone, atol=1e-5)
    assert not torch.allclose(z[:n_ref], z_joint[:n_ref], atol=1e-3)  # train-mode BN: batches differ


def test_resume_with_other_images_is_refused(images: Path, reference_run: Path, tmp_path: Path) -> None:
    import shutil

    stored = json.loads((reference_run / "config.json").read_text())["images"]
    assert stored["count"] == 6 and len(stored["sha256"]) == 64
    export_cfg = json.loads((reference_run / "export" / "config.json").read_text())
    assert export_cfg["extra"]["pretrain"]["images"] == stored
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for p in sorted(images.iterdir())[:3]:
        shutil.copy(p, fewer / p.name)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(PretrainError, match="another image set"):
        run_pretrain(_tiny(max_steps=6), fewer, run, device="cpu", num_workers=0, progress=False, resume=True)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_out_that_is_a_file_is_refused(images: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(PretrainError, match="is a file"):
        run_pretrain(_tiny(), images, target, device="cpu", num_workers=0, progress=False)
    assert target.read_text() == "x"


def test_unreadable_and_small_images_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _write_images(tmp_path / "imgs", n=5)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(folder / "tiny.png")
    run_pretrain(_tiny(max_steps=1, max_unreadable_fraction=0.5), folder, tmp_path / "run", device="cpu", num_workers=0,
                 progress=False)
    err = capsys.readouterr().err
    assert "skipping 1 unreadable image file(s)" in err and "broken.jpg" in err
    assert "1 image(s) have a side below the 64 px crop" in err and "tiny.png (16x12)" in err
    assert "5 more image(s) have a side below 128 px: their x0.5 views are zero-padded" in err
    assert "(--crop-size 40 fills them all)" in err  # the 96 x 80 images' x0.5 views are 48 x 40


def test_resume_drops_records_of_redone_steps(tmp_path: Path) -> None:
    from shamisa_bench.train.checkpoint import truncate_log

    log = tmp_path / "log.jsonl"
    lines = [{"command": ["x"]}, {"step": 0, "val_srcc": 0.5}, {"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.9},
             {"step": 2, "val_srcc": 0.6}, {"step": 2, "loss": 0.8}, {"step": 3, "loss": 0.7}]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "lo')
    assert truncate_log(log, 2) == 3
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    assert kept == lines[:5]


def test_finished_or_short_resume_reports_no_fake_export(images: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "run"
    run_pretrain(_tiny(max_steps=2), images, run, device="cpu", num_workers=0, progress=False)
    shutil.rmtree(run / "export")  # as if killed after the last checkpoint, before the export
    capsys.readouterr()
    assert main(["pretrain", "--images", str(images), "--out", str(run), "--preset", "tiny", "--max-steps", "2",
                 "--device", "cpu", "--workers", "0", "--no-progress", "--resume", "--no-malloc-tuning"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # strict JSON: no NaN
    assert summary["final_loss"] is None and summary["export"] is None


def test_freeze_stages_fixes_weights_and_batchnorm_of_the_first_stages() -> None:
    torch.manual_seed(0)
    net = PretrainNet(_tiny(freeze_stages=2)).train()
    trunk = net.encoder.trunk
    assert not any(p.requires_grad for p in [*trunk.conv1.parameters(), *trunk.layer1.parameters()])
    assert all(p.requires_grad for p in trunk.layer2.parameters())
    assert not trunk.bn1.training and not trunk.layer1[0].bn1.training and trunk.layer2[0].bn1.training
    assert not any(k.startswith("frozen") for k in net.state_dict())
    before = trunk.layer1[0].bn1.running_mean.clone()
    net(torch.rand(40, 3, 64, 64), _tiny_nodes())
    assert torch.equal(trunk.layer1[0].bn1.running_mean, before)
    with pytest.raises(ValueError, match="stages"):
        PretrainNet(_tiny(freeze_stages=6))


def test_train_stages_trains_the_first_stages_only() -> None:
    torch.manual_seed(0)
    net = PretrainNet(_tiny(backbone="efficientnet_lite0", init="random", train_stages=1)).train()
    trunk = net.encoder.trunk
    trainable = {n.split(".")[1] for n, p in net.encoder.named_parameters() if p.requires_grad}
    assert trainable == {"conv_stem", "bn1"}  # the stem alone: blocks, conv_head and bn2 are held
    assert trunk.bn1.training and not trunk.bn2.training and not trunk.blocks[0][0].bn1.training
    before = trunk.bn2.running_mean.clone()
    net(torch.rand(40, 3, 64, 64), _tiny_nodes())
    assert torch.equal(trunk.bn2.running_mean, before)
    # a window: stages 2-3 (blocks 0 and 1) with freeze_stages
    net = PretrainNet(_tiny(backbone="efficientnet_lite0", init="random", freeze_stages=1, train_stages=3))
    assert {".".join(n.split(".")[1:3]) for n, p in net.encoder.named_parameters() if p.requires_grad} == {
        "blocks.0", "blocks.1"}
    with pytest.raises(ValueError, match="stages"):
        PretrainNet(_tiny(train_stages=6))  # the tiny ResNet has 5
    for bad in (0, 2, True, 1.5):
        with pytest.raises(ValueError, match="train_stages"):
            _tiny(freeze_stages=2, train_stages=bad)


def _tiny_nodes():
    from shamisa_bench.train.steps import build_node_meta

    layout = _tiny().layout
    return build_node_meta(layout, torch.zeros(layout.n_items, layout.n_compositions, layout.n_levels))


def test_pretrain_report_copies_the_log_and_draws_the_curves(reference_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from shamisa_bench.train.report import read_run_log

    run = tmp_path / "with-val"
    run.mkdir()
    lines = (reference_run / "log.jsonl").read_text().splitlines()
    vals = [json.dumps({"step": 0, "val_srcc": 0.70}), json.dumps({"step": 2, "val_srcc": 0.74}),
            json.dumps({"step": 4, "val_srcc": 0.72})]
    (run / "log.jsonl").write_text("\n".join([lines[0], vals[0], *lines[1:3], vals[1], *lines[3:-1], vals[2],
                                              lines[-1]]) + "\n")
    log = read_run_log(run)
    assert len(log.steps) == 4 and len(log.validations) == 3 and log.end is not None
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["pretrain-report", str(reference_run), str(run), "--out", str(out), "--compare", "both"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed[1]["best_step"] == 2 and printed[1]["best_val_srcc"] == 0.74 and printed[1]["val_srcc_last"] == 0.72
    assert printed[0]["state"] == "finished"
    for folder in (out / "run", out / "with-val"):
        assert (folder / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "run" / "log.jsonl").read_text() == (reference_run / "log.jsonl").read_text()
    assert (out / "both.png").is_file()
    # a run stopped cleanly says so; one cut short without a record says that instead
    stop = json.dumps({"stopped": {"after_step": 2, "total_steps": 4, "signal": "SIGINT", "seconds": 1.0}})
    (run / "log.jsonl").write_text("\n".join([*lines[:3], stop]) + "\n")
    assert read_run_log(run).state == "stopped by SIGINT after step 2 of 4"
    (run / "log.jsonl").write_text("\n".join(lines[:3]) + "\n")
    assert read_run_log(run).state == "no closing record after step 2 (killed, or still running)"
    (run / "log.jsonl").write_text("\n".join([*lines[:3], stop, lines[0], *lines[3:]]) + "\n")  # resumed
    assert read_run_log(run).state == "finished" and len(read_run_log(run).stops) == 1
    # a finished run extended with --resume --max-steps and stopped again is not finished
    extra = json.dumps({**json.loads(lines[1]), "step": 4})
    later = json.dumps({"stopped": {"after_step": 5, "total_steps": 6, "signal": "SIGTERM", "seconds": 1.0}})
    (run / "log.jsonl").write_text("\n".join([*lines, lines[0], extra, later]) + "\n")
    assert read_run_log(run).state == "stopped by SIGTERM after step 5 of 6"
    (run / "log.jsonl").write_text("{not json\n")
    assert main(["pretrain-report", str(run), "--out", str(out)]) == 2


def test_recipe_options_keep_what_the_run_trains_and_drop_where_its_files_live() -> None:
    from shamisa_bench.train.report import recipe_options

    command = ["shamisa-bench", "pretrain", "--preset", "lite-cpu", "--images", "a", "b", "c", "--seed", "27",
               "--out", "runs/x", "--data-root=../d", "--c-inv", "0", "--val-every", "50", "--no-progress",
               "--resume", "--val-dataset", "clive-dev"]
    assert recipe_options(command) == "--preset lite-cpu --seed 27 --c-inv 0 --val-dataset clive-dev"
    assert recipe_options(["shamisa-bench", "pretrain", "--images", "a", "--out", "o"]) == ""
    assert recipe_options(["pytest", "-q", "tests"]) is None


def test_pretrain_report_index_lists_every_run_folder_with_its_curve(reference_run: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["pretrain-report", "--index", "--out", str(out)]) == 2  # nothing to index
    lines = (reference_run / "log.jsonl").read_text().splitlines()
    for name, vals in (("b-run", [(0, 0.70), (2, 0.74), (4, 0.72)]), ("a-run", [])):
        (out / name).mkdir(parents=True)
        records = [json.dumps({"step": step, "val_srcc": srcc}) for step, srcc in vals]
        (out / name / "log.jsonl").write_text("\n".join([*lines[:-1], *records, lines[-1]]) + "\n")
    (out / "alignment").mkdir()  # results that are not a run are passed over
    capsys.readouterr()
    assert main(["pretrain-report", "--index", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == 2
    table = [line for line in (out / "index.md").read_text().splitlines() if line.startswith("| [")]
    assert [line.split("`")[1] for line in table] == ["a-run", "b-run"]
    assert "| 0.700 | 0.740 (2) | 0.720 (4) | 0.720 (4) | finished |" in table[1]
    assert "| — | — | — | — | finished |" in table[0]
    assert "(not started by a `pretrain` command line)" in table[1]  # run_pretrain from Python logs sys.argv
    assert (out / "index.png").read_bytes()[:4] == b"\x89PNG"
    (out / "b-run" / "log.jsonl").write_text("{not json\n")
    assert main(["pretrain-report", "--index", "--out", str(out)]) == 2


def test_loss_coefficient_overrides() -> None:
    cfg = _tiny(c_cov=1.0, c_var=25.0)
    loss = cfg.loss_config()
    assert (loss.c_var, loss.c_inv, loss.c_cov) == (25.0, 88.36882206311276, 1.0)
    base = _tiny().loss_config()
    assert (base.c_var, base.c_inv, base.c_cov) == (11.975680785304435, 88.36882206311276, 57.21249573027589)
    assert preset_config("lite", c_cov=1.0).loss_config().c_inv == 88.369  # the lite presets' rounded values
    assert _tiny(graph="vicreg_binary", c_cov=1.0).loss_config().enable_ot is False
    with pytest.raises(ValueError, match="c_cov"):
        _tiny(c_cov=-1.0)


@pytest.mark.slow
def test_head_warmup_keeps_the_encoder_and_then_releases_it(images: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = PretrainNet(_tiny()).encoder.state_dict()
    warm = tmp_path / "warm"
    run_pretrain(_tiny(max_steps=2, head_warmup_steps=2), images, warm, device="cpu", num_workers=0, progress=False)
    state = torch.load(warm / "checkpoint.pt", map_location="cpu", weights_only=False)["net"]
    encoder_keys = [k for k in state if k.startswith("model.encoder.") and "num_batches" not in k]
    projector_keys = [k for k in state if k.startswith("model.projector.")]
    trained = PretrainNet(_tiny())
    trained.load_state_dict(state)
    fresh = PretrainNet(_tiny())
    # the encoder's weights are those of initialisation, the projector's moved
    assert all(torch.equal(state[k], fresh.state_dict()[k]) for k in encoder_keys if "running" not in k)
    assert any(not torch.equal(state[k], fresh.state_dict()[k]) for k in projector_keys)
    assert start.keys() == trained.encoder.state_dict().keys()
    # past the warm-up the encoder trains
    past = tmp_path / "past"
    run_pretrain(_tiny(max_steps=3, head_warmup_steps=2), images, past, device="cpu", num_workers=0, progress=False)
    moved = torch.load(past / "checkpoint.pt", map_location="cpu", weights_only=False)["net"]
    assert any(not torch.equal(moved[k], fresh.state_dict()[k]) for k in encoder_keys if "running" not in k)


def test_projector_dim_sets_the_width_of_z() -> None:
    net = PretrainNet(_tiny(projector_dim=24))
    z, _ = net(torch.rand(40, 3, 64, 64), _tiny_nodes())
    assert z.shape == (40, 24)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="projector_dim"):
            _tiny(projector_dim=bad)
    for bad in (-1, 1.5, False):
        with pytest.raises(ValueError, match="head_warmup_steps"):
            _tiny(head_warmup_steps=bad)


def _drifts(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [r["encoder_drift"] for r in records if "encoder_drift" in r]


def _run_tiny(images: Path, out: Path, *, resume: bool = False, **overrides: object) -> None:
    run_pretrain(_tiny(**overrides), images, out, device="cpu", num_workers=0, progress=False, resume=resume)


@pytest.mark.slow
def test_encoder_anchor_holds_the_encoder_near_its_start_and_resumes_exactly(images: Path, tmp_path: Path) -> None:
    free, held = tmp_path / "free", tmp_path / "held"
    _run_tiny(images, free, max_steps=3, lr=0.05, lr_period_steps=3)
    _run_tiny(images, held, max_steps=3, lr=0.05, encoder_anchor=10.0, lr_period_steps=3)
    d_free, d_held = _drifts(free), _drifts(held)
    assert len(d_free) == len(d_held) == 3 and d_free[0] > 0
    assert d_held[0] == pytest.approx(d_free[0], rel=1e-4)  # at the first step w == w_init: no pull yet
    assert d_held[-1] < 0.9 * d_free[-1]
    # the anchor is the seeded initialisation, so a resumed run pulls towards the same weights
    part = tmp_path / "part"
    _run_tiny(images, part, max_steps=2, lr=0.05, encoder_anchor=10.0, lr_period_steps=3)
    _run_tiny(images, part, resume=True, max_steps=3, lr=0.05, encoder_anchor=10.0, lr_period_steps=3)
    assert _same_state(_export_state(part), _export_state(held))
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="encoder_anchor"):
            _tiny(encoder_anchor=bad)


@pytest.mark.slow
def test_projector_steps_hold_the_projector_and_graph_fixed_after_n_steps(images: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _run_tiny(images, one, max_steps=1, lr=0.05, lr_period_steps=2)
    _run_tiny(images, two, max_steps=2, lr=0.05, lr_period_steps=2, projector_steps=1)
    after_one = torch.load(one / "checkpoint.pt", map_location="cpu", weights_only=False)["net"]
    after_two = torch.load(two / "checkpoint.pt", map_location="cpu", weights_only=False)["net"]
    heads = [k for k in after_one if not k.startswith("model.encoder.")]
    encoder = [k for k in after_one if k.startswith("model.encoder.") and "running" not in k and "num_batches" not in k]
    assert any(k.startswith("model.projector.") for k in heads) and any(k.startswith("graph.") for k in heads)
    # step 1 updated the projector and the graph; step 2 left them exactly as they were
    assert all(torch.equal(after_one[k], after_two[k]) for k in heads)
    assert any(not torch.equal(after_one[k], after_two[k]) for k in encoder)
    # 0 holds them at their initialisation: the seed's fresh net, not step 1's
    zero = tmp_path / "zero"
    _run_tiny(images, zero, max_steps=1, lr=0.05, lr_period_steps=2, projector_steps=0)
    after_zero = torch.load(zero / "checkpoint.pt", map_location="cpu", weights_only=False)["net"]
    torch.manual_seed(_tiny().seed)
    fresh = PretrainNet(_tiny()).state_dict()
    assert all(torch.equal(after_zero[k], fresh[k]) for k in heads)
    assert any(not torch.equal(after_zero[k], after_one[k]) for k in heads)
    cli = config_from_args(build_parser().parse_args(
        ["pretrain", "--images", "x", "--out", "y", "--preset", "tiny", "--projector-steps", "5"]))
    assert cli.projector_steps == 5 and _tiny().projector_steps is None
    for bad in (-1, -2, 1.5, True):
        with pytest.raises(ValueError, match="projector_steps"):
            _tiny(projector_steps=bad)


def test_detach_graph_reaches_the_relation_graph() -> None:
    assert PretrainNet(_tiny(detach_graph=True)).graph.config.detach_structure is True
    assert PretrainNet(_tiny()).graph.config.detach_structure is False
    with pytest.raises(TypeError, match="detach_graph"):
        _tiny(detach_graph=1)


def test_initial_graph_features_fix_the_feature_branches_to_the_encoder_start() -> None:
    """With graph_features="initial" the kNN and transport branches follow a frozen copy of
    the initial encoder: the same as the online ones at the start, unchanged (and without
    gradient) once the encoder has moved, and absent from the state dict."""
    torch.manual_seed(0)  # the graph's init draws from the global generator, as in run_pretrain
    online = PretrainNet(_tiny())
    torch.manual_seed(0)
    initial = PretrainNet(_tiny(graph_features="initial"))
    assert online.state_dict().keys() == initial.state_dict().keys()
    assert _same_state(online.state_dict(), initial.state_dict())  # the same seeded init
    nodes = _tiny_nodes()
    x = torch.rand((nodes.item.numel(), 3, 64, 64), generator=torch.Generator().manual_seed(1))
    online.eval(), initial.eval()

    def branches(net: PretrainNet):
        _, out = net(x, nodes)
        return out

    start_online, start_initial = branches(online), branches(initial)
    for name in ("knn", "transport"):
        torch.testing.assert_close(start_initial.branches[name], start_online.branches[name])
    with torch.no_grad():
        for net in (online, initial):
            for p in net.encoder.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    moved_online, moved_initial = branches(online), branches(initial)
    assert not torch.equal(moved_online.branches["knn"], start_online.branches["knn"])
    torch.testing.assert_close(moved_initial.branches["knn"], start_initial.branches["knn"])
    torch.testing.assert_close(moved_initial.branches["transport"], start_initial.branches["transport"])
    assert moved_online.G.requires_grad and not moved_initial.G.requires_grad
    # the loss's own prototype scores still come from the online encoder
    torch.testing.assert_close(moved_initial.logits, moved_online.logits)
    assert moved_initial.logits.requires_grad
    h = torch.nn.functional.normalize(torch.randn(x.shape[0], online.graph.feature_dim), dim=1)
    with pytest.raises(ValueError, match="edge_features"):
        online.graph(h, nodes, edge_features=h[:-1])
    with pytest.raises(ValueError, match="graph_features"):
        _tiny(graph_features="frozen")


@pytest.mark.slow
def test_initial_graph_features_train_and_resume_exactly(images: Path, tmp_path: Path) -> None:
    whole, part = tmp_path / "whole", tmp_path / "part"
    config = _tiny(max_steps=3, lr=0.05, lr_period_steps=3, graph_features="initial")
    run_pretrain(config, images, whole, device="cpu", num_workers=0, progress=False)
    run_pretrain(dataclasses.replace(config, max_steps=2), images, part, device="cpu", num_workers=0, progress=False)
    run_pretrain(config, images, part, device="cpu", num_workers=0, progress=False, resume=True)
    assert _same_state(_export_state(part), _export_state(whole))
    assert json.loads((whole / "config.json").read_text())["config"]["graph_features"] == "initial"


def test_layout_flags_override_only_the_given_fields_of_the_preset_layout() -> None:
    args = build_parser().parse_args(
        ["pretrain", "--images", "x", "--out", "y", "--preset", "lite", "--items", "4", "--levels", "3"])
    layout = config_from_args(args).layout
    assert (layout.n_items, layout.n_contents, layout.n_compositions, layout.n_levels, layout.crop_size) == (
        4, 2, 3, 3, 192)
    assert layout.n_nodes == 4 * 4 * (1 + 3 * 3)
    plain = config_from_args(build_parser().parse_args(["pretrain", "--images", "x", "--out", "y"]))
    assert plain.layout == PRESETS["lite"]["layout"]
    assert main(["pretrain", "--images", "x", "--out", "y", "--contents", "0"]) == 2


def test_distortion_types_flag_sets_the_layout_subset_and_survives_the_run_config(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["pretrain", "--images", "x", "--out", "y", "--preset", "lite-cpu",
                                      "--distortion-types", "jpeg,blur"])
    config = config_from_args(args)
    assert config.layout.distortion_types == ("gaussian_blur", "lens_blur", "motion_blur", "jpeg")
    assert config.layout.crop_size == PRESETS["lite-cpu"]["layout"].crop_size  # the rest of the preset kept
    # written to config.json as a list, read back as the same spec
    again = PretrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.layout.distortion_types == config.layout.distortion_types
    assert PRESETS["lite-cpu"]["layout"].distortion_types is None  # the reference draws all 26
    assert main(["pretrain", "--images", "x", "--out", "y", "--distortion-types", "blur,fog"]) == 2
    assert "--distortion-types: 'fog' is neither a distortion type nor a group" in capsys.readouterr().err


def test_lite_cpu_preset_is_the_lite_preset_with_the_recipe_flags() -> None:
    """The lite-cpu preset is exactly the flags its runs in results/pretrain were given, and a
    flag still overrides it (including switching --freeze-bn off)."""
    def config(*flags: str) -> PretrainConfig:
        return config_from_args(build_parser().parse_args(["pretrain", "--images", "x", "--out", "y", *flags]))

    recipe = config("--preset", "lite", "--max-steps", "1000", "--projector-init", "unit_norm_input",
                    "--clip-grad-norm", "1.0", "--freeze-bn", "--projector-dim", "32", "--head-warmup-steps", "50",
                    "--lr", "0.015", "--backbone-lr-mult", "0.1", "--c-var", "300", "--encoder-anchor", "3",
                    "--crop-size", "160")
    preset = config("--preset", "lite-cpu")
    assert dataclasses.replace(preset, preset="lite") == recipe
    assert preset.graph == "full" and preset.layout.crop_size == 160
    assert config("--preset", "lite-cpu", "--no-freeze-bn").freeze_bn is False
    assert config("--preset", "lite-cpu", "--detach-graph").detach_graph is True
    assert config("--preset", "lite-cpu", "--no-detach-graph").detach_graph is False
    assert preset.graph_features == "online"
    assert config("--preset", "lite-cpu", "--graph-features", "initial").graph_features == "initial"
    assert config("--preset", "lite").freeze_bn is False


def test_c_severity_adds_the_readout_to_the_objective(images: Path, reference_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "severity"
    run_pretrain(_tiny(c_severity=5.0), images, run, device="cpu", num_workers=0, progress=False)
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    reference = [json.loads(line) for line in (reference_run / "log.jsonl").read_text().splitlines()
                 if '"loss"' in line]
    assert all(r["severity"] > 0 for r in steps) and all("severity" not in r for r in reference)
    # step 0 starts from the same weights on the same batch: its loss is the reference's plus the term
    assert steps[0]["loss"] == pytest.approx(reference[0]["loss"] + 5.0 * steps[0]["severity"], rel=1e-4)
    assert not _same_state(_export_state(run), _export_state(reference_run))
    args = build_parser().parse_args(["pretrain", "--images", "x", "--out", "y", "--c-severity", "2"])
    assert config_from_args(args).c_severity == 2.0
    for bad in (-1.0, float("nan"), True):
        with pytest.raises(ValueError, match="c_severity"):
            _tiny(c_severity=bad)
