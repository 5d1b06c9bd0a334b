"""``pretrain-diagnose``: per-term encoder gradients at a run's checkpoint."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from shamisa_bench.cli import main
from shamisa_bench.train import PretrainError, preset_config, run_pretrain
from shamisa_bench.train.diagnose import (
    PARTS,
    _open_run,
    _stage,
    alignment_run,
    diagnose_run,
)

REPO = Path(__file__).resolve().parents[2]


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
    # an option only --alignment uses is refused rather than ignored
    for extra in (["--parts"], ["--seed", "1"], ["--noise-directions", "2"], ["--val-dataset", "bright"]):
        assert main(["pretrain-diagnose", str(run), *extra]) == 2
        assert f"{extra[0]} goes with --alignment" in capsys.readouterr().err


def test_a_run_that_trains_the_severity_term_reports_it_as_a_part(tmp_path: Path) -> None:
    severity = _one_step_run(tmp_path / "severity", seed=7, c_severity=2.0)
    result = diagnose_run(severity, batches=2)
    assert set(result["consistency"]) == {*PARTS, "severity", "total"}
    for b in result["batches"]:
        assert b["parts"]["severity"] > 0 and b["grad_norm"]["severity"] > 0
        # the parts are the whole objective the run trains, severity term included
        assert sum(b["parts"].values()) == pytest.approx(b["loss"], rel=1e-3, abs=1e-3)
        assert "pull/severity" in b["cos"]


def _bright_registry(tmp_path: Path) -> tuple[Path, Path]:
    """A generated labelled dataset (``bright``) and a copy of the shipped registry that names it."""
    from shamisa_bench.harness.registry import load_registry

    from .test_pretrain import _labelled_dataset

    data, overlay = _labelled_dataset(tmp_path)
    registry = tmp_path / "full-registry"
    shutil.copytree(load_registry().root, registry)
    shutil.copy(overlay / "datasets" / "bright.yaml", registry / "datasets" / "bright.yaml")
    return data, registry


def _one_step_run(out: Path, *, seed: int, **overrides: Any) -> Path:
    """A one-step tiny run on 4 generated images, the preset changed by ``overrides``."""
    images = out.parent / f"{out.name}-pristine"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(4):
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(images / f"im{i}.png")
    run_pretrain(preset_config("tiny", max_steps=1, **overrides), images, out, device="cpu", num_workers=0,
                 progress=False)
    return out


def test_alignment_needs_something_to_move(tmp_path: Path) -> None:
    frozen = _one_step_run(tmp_path / "frozen", seed=4, freeze_stages=5)
    probe = _DirectionProbe(torch.zeros(1), (torch.zeros(1), torch.zeros(1)))
    with pytest.raises(ValueError, match="no trainable weights"):
        alignment_run(frozen, probe, batches=4)
    assert probe.calls == 0


def test_pretrain_report_draws_line_search_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the committed searches (made by the line search that pretrain-diagnose had up to 3060998) still draw
    searches = [REPO / "results" / "pretrain" / "line-search" / f"s{seed}-step50" / "line-search.json"
                for seed in (27, 28)]
    out = tmp_path / "out"
    argv = ["pretrain-report", "--line-search", *map(str, searches), "--out", str(out)]
    assert main([*argv, "--line-search-name", "ls"]) == 0
    assert json.loads(capsys.readouterr().out)["line_search"] == str(out / "ls.png")
    assert (out / "ls.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "b.json").write_text(json.dumps({"run": "x"}))
    assert main([*argv, str(tmp_path / "b.json")]) == 2
    assert "b.json" in capsys.readouterr().err
    assert main(["pretrain-report", "--out", str(out)]) == 2
    assert "run folders" in capsys.readouterr().err


class _DirectionProbe:
    """A stand-in for the validation probe whose supervised gradient is a fixed direction."""

    def __init__(self, mean: torch.Tensor, halves: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.mean, self.halves = mean, halves
        self.calls = 0

    def supervised_gradient(self, encoder: torch.nn.Module, params: list[torch.Tensor], *, seed: int = 0) -> Any:
        from shamisa_bench.train.probe import SupervisedGradient

        self.calls += 1
        assert sum(p.numel() for p in params) == self.mean.numel()
        return SupervisedGradient(mean=self.mean, halves=self.halves, alpha=1.0, rmse=0.5, n_images=10)


def _unit_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b) / float(a.norm() * b.norm())


def test_alignment_measures_cosines_with_the_supervised_direction(run: Path) -> None:
    before = _digest(run)
    opened = _open_run(run, None)
    batch_grads = [r.grads["total"] for r in opened.replay(4, parts=False)]
    mean = torch.stack(batch_grads).mean(0)
    checkpoint = {k: v.clone() for k, v in opened.net.encoder.state_dict().items()}
    # a supervised direction half along the mean gradient, half along a random one
    noise = torch.randn(mean.numel(), generator=torch.Generator().manual_seed(5))
    target = mean / mean.norm() + noise / noise.norm()
    probe = _DirectionProbe(target, (mean, -mean))
    result = alignment_run(run, probe, batches=4, noise_directions=3, parts=True)
    assert _digest(run) == before and probe.calls == 1
    total = result["alignment"]["total"]
    assert total["cos_mean"] == pytest.approx(_unit_cos(mean, target), abs=1e-5)
    assert total["cos_mean"] > 0.5  # the construction: cos 1/sqrt(2) up to the noise's overlap
    assert total["cos_mean_halves"] == pytest.approx([1.0, -1.0], abs=1e-5)
    cosines = [_unit_cos(g, target) for g in batch_grads]
    assert total["batch_cos"]["mean"] == pytest.approx(sum(cosines) / 4, abs=1e-5)
    assert total["batch_cos"]["min"] == pytest.approx(min(cosines), abs=1e-5)
    se = float(torch.tensor(cosines, dtype=torch.float64).std()) / 2
    assert total["batch_cos"]["se"] == pytest.approx(se, abs=1e-5)
    assert len(total["controls_cos"]) == 3
    assert total["controls_at_least_mean"] == sum(c >= total["cos_mean"] for c in total["controls_cos"]) / 3
    assert set(result["alignment"]) == {"total", *PARTS}
    for name, entry in result["alignment"].items():  # each gradient has its own controls and stages
        if entry is not None:
            assert len(entry["controls_cos"]) == 3, name
            assert sum(v["weights"] for v in entry["by_stage"].values()) == mean.numel(), name
    # by stage: the same cosine restricted to each stage's weights, which together are all of them
    stages = total["by_stage"]
    assert sum(v["weights"] for v in stages.values()) == mean.numel() and len(stages) >= 2
    offset, seen = 0, {}
    for name, p in zip(opened.names, opened.params, strict=True):
        seen.setdefault(_stage(name), []).append(slice(offset, offset + p.numel()))
        offset += p.numel()
    for stage, slices in seen.items():
        def part(v: torch.Tensor, slices: list[slice] = slices) -> torch.Tensor:
            return torch.cat([v[s] for s in slices])

        assert stages[stage]["cos_mean"] == pytest.approx(_unit_cos(part(mean), part(target)), abs=1e-5)
        lo, hi = stages[stage]["controls_range"]
        assert lo <= hi
    assert result["supervised"]["halves_cos"] == pytest.approx(-1.0, abs=1e-5)
    # the encoder is left as the checkpoint holds it, BatchNorm statistics included
    encoder_state = opened.net.encoder.state_dict()
    assert all(torch.equal(encoder_state[k], v) for k, v in checkpoint.items())
    assert (result["step"], result["n_batches"], result["first_batch_step"]) == (2, 4, 2)


def test_alignment_bad_input_is_named(run: Path, tmp_path: Path) -> None:
    probe = _DirectionProbe(torch.zeros(1), (torch.zeros(1), torch.zeros(1)))
    with pytest.raises(ValueError, match="batches"):
        alignment_run(run, probe, batches=3)
    with pytest.raises(ValueError, match="noise_directions"):
        alignment_run(run, probe, batches=4, noise_directions=0)
    assert probe.calls == 0
    opened = _open_run(run, None)
    size = sum(p.numel() for p in opened.params)
    zero = _DirectionProbe(torch.zeros(size), (torch.zeros(size), torch.zeros(size)))
    with pytest.raises(ValueError, match="supervised gradient is zero"):
        alignment_run(run, zero, batches=4)
    nan = torch.full((size,), float("nan"))
    with pytest.raises(ValueError, match="supervised gradient is not finite"):
        alignment_run(run, _DirectionProbe(nan, (nan, nan)), batches=4)


def test_supervised_gradient_is_the_derivative_of_the_refit_ridge_error(run: Path, tmp_path: Path) -> None:
    """By the envelope theorem, the gradient with the head held fixed is that of the ridge optimum.

    J(w) = min over the head of sum (pred - mos)^2 + alpha |head|^2 at the chosen alpha;
    dJ/dw = 2 n x the probe's gradient of mean 0.5 (pred - mos)^2. Checked by central
    differences along the gradient and along a direction at 53 degrees to it, refitting the head each time.
    """
    from shamisa_bench.iqa.head import extract_features
    from shamisa_bench.iqa.ridge import fit_ridge
    from shamisa_bench.train.probe import ValidationProbe

    data, registry = _bright_registry(tmp_path)
    probe = ValidationProbe("bright", data, registry=registry, n_divisions=3)
    opened = _open_run(run, None)
    encoder = opened.net.encoder
    params = [p for p in encoder.parameters() if p.requires_grad]
    sup = probe.supervised_gradient(encoder, params, seed=1)
    n = sup.n_images
    assert n == len(probe._images) and sup.rmse > 0
    assert torch.allclose(sup.mean, (sup.halves[0] * (n // 2) + sup.halves[1] * (n - n // 2)) / n,
                          rtol=1e-5, atol=1e-4)
    assert _unit_cos(sup.halves[0], sup.halves[1]) < 1.0 - 1e-6  # two different sets of images
    w0 = [p.detach().clone() for p in params]

    def optimum(direction: torch.Tensor, eps: float) -> float:
        with torch.no_grad():
            offset = 0
            for p, w in zip(params, w0, strict=True):
                p.copy_(w + eps * direction[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        encoder.eval()
        feats = extract_features(encoder, (im.float() / 255 for im in probe._images)).astype(np.float64)[:, 0]
        fit = fit_ridge(feats, probe._mos, sup.alpha)
        return float(((feats @ fit.weight + fit.bias - probe._mos) ** 2).sum() + sup.alpha * (fit.weight ** 2).sum())

    unit = sup.mean.double() / sup.mean.double().norm()
    random = torch.randn(sup.mean.numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    random -= (random @ unit) * unit
    for direction in (unit, 0.6 * unit + 0.8 * random / random.norm()):  # the second: 0.6 of the slope
        eps = 1e-4
        numeric = (optimum(direction, eps) - optimum(direction, -eps)) / (2 * eps)
        assert numeric == pytest.approx(2 * n * float(sup.mean.double() @ direction), rel=2e-2)


def test_cli_alignment_compares_with_the_validation_labels(run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data, registry = _bright_registry(tmp_path)
    argv = ["pretrain-diagnose", str(run), "--batches", "4", "--alignment", "--noise-directions", "2"]
    where = ["--val-dataset", "bright", "--data-root", str(data), "--registry", str(registry)]
    assert main(argv) == 2
    assert "--alignment needs --val-dataset" in capsys.readouterr().err
    assert main([*argv, *where]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    lines = captured.err.splitlines()
    assert lines[0].startswith("alignment: supervised gradient over ") and len(lines) == 1 + 4
    assert out["validation"]["dataset"] == "bright" and out["supervised"]["n_images"] >= 5
    assert set(out["alignment"]) == {"total"} and len(out["alignment"]["total"]["controls_cos"]) == 2
    assert -1.0 <= out["alignment"]["total"]["cos_mean"] <= 1.0
    assert out["checkpoint_sha256"] == hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()


def test_alignment_reports_a_part_the_graph_lacks_as_none(tmp_path: Path) -> None:
    binary = _one_step_run(tmp_path / "binary", seed=5, graph="vicreg_binary")
    size = sum(p.numel() for p in _open_run(binary, None).params)
    direction = torch.randn(size, generator=torch.Generator().manual_seed(6))
    result = alignment_run(binary, _DirectionProbe(direction, (direction, direction)), batches=4, parts=True)
    assert result["alignment"]["ot"] is None  # no transport branch: its term never reaches the encoder
    assert result["alignment"]["total"]["cos_mean"] is not None


def test_stage_names() -> None:
    assert _stage("trunk.blocks.3.1.conv_dw.weight") == "blocks.3"
    assert _stage("trunk.conv_head.weight") == "conv_head"
    assert _stage("trunk.layer2.0.conv1.weight") == "layer2"
    assert _stage("weight") == "weight"


def test_the_probe_leaves_frozen_batchnorm_frozen_and_alignment_measures_the_run_s_objective(
        tmp_path: Path) -> None:
    """A run that keeps its BatchNorm statistics fixed trains with them in eval mode; the
    probe must hand the encoder back so, and alignment must measure that objective: the
    same figures with the real probe (which runs the encoder first) as with a stand-in that
    returns the same supervised gradient without touching the encoder."""
    from shamisa_bench.train.probe import ValidationProbe

    frozen = _one_step_run(tmp_path / "frozen-bn", seed=6, freeze_bn=True)
    data, registry = _bright_registry(tmp_path)
    probe = ValidationProbe("bright", data, registry=registry, n_divisions=3)
    opened = _open_run(frozen, None)

    def batchnorm_modes() -> set[bool]:
        return {m.training for m in opened.net.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}

    assert opened.net.encoder.training and batchnorm_modes() == {False}
    probe(opened.net.encoder)
    sup = probe.supervised_gradient(opened.net.encoder, opened.params)
    assert opened.net.encoder.training and batchnorm_modes() == {False}
    real = alignment_run(frozen, probe, batches=4, noise_directions=2)
    stand_in = alignment_run(frozen, _DirectionProbe(sup.mean, sup.halves), batches=4, noise_directions=2)
    assert real["supervised"]["norm"] == stand_in["supervised"]["norm"]
    assert real["alignment"] == stand_in["alignment"]
