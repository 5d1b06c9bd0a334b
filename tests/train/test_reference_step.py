"""The a0 step as the reference takes it: exact coefficients, the schedule stepped after the
update, and which parts of the step run in which precision under autocast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shamisa_bench.graphs import BRANCHES, GraphConfig
from shamisa_bench.graphs.config import ROUNDED_BRANCH_COEFFICIENTS
from shamisa_bench.losses import LossConfig, ShamisaLoss
from shamisa_bench.losses.shamisa import ROUNDED_LOSS_COEFFICIENTS
from shamisa_bench.model import PretrainNet
from shamisa_bench.train import PretrainConfig, preset_config, run_pretrain
from shamisa_bench.train.steps import build_node_meta

# configs/shamisa_a0.yaml of the official code, as written there
YAML = {
    "var": 11.975680785304435, "inv": 88.36882206311276, "cov": 57.21249573027589,
    "regulariser": 0.03419084992354765, "ot": 0.49057801093072007,
    "structural": 0.6010794863656556, "ref_dist": 0.8038735892351129, "ref_ref": 0.5765695739376243,
    "dist_dist": 0.1789641360878255, "knn": 0.20874201442160423, "transport": 0.3670314792148166,
}


def test_a0_uses_the_reference_coefficients_to_the_last_digit() -> None:
    a0 = preset_config("a0")
    assert (a0.coefficients, a0.lr_step) == ("reference", "after")
    loss, graph = a0.loss_config(), a0.graph_config()
    assert (loss.c_var, loss.c_inv, loss.c_cov) == (YAML["var"], YAML["inv"], YAML["cov"])
    assert (loss.r_graph, loss.ot_weight) == (-YAML["regulariser"], YAML["ot"])
    assert dict(zip(BRANCHES, graph.coefficients(), strict=True)) == {b: YAML[b] for b in BRANCHES}
    assert (LossConfig(), GraphConfig()) == (loss, graph)  # the library defaults are a0's


def test_lite_presets_keep_the_rounded_coefficients_and_the_schedule_they_were_trained_with() -> None:
    for name in ("lite", "lite-cpu"):
        cfg = preset_config(name)
        assert (cfg.coefficients, cfg.lr_step) == ("rounded", "before")
        graph = cfg.graph_config()
        assert graph.coefficients() == tuple(ROUNDED_BRANCH_COEFFICIENTS[f"{b}_coef"] for b in BRANCHES)
        loss = cfg.loss_config()
        assert (loss.c_inv, loss.c_cov, loss.r_graph, loss.ot_weight) == (88.369, 57.212, -0.0342, 0.4906)
    assert preset_config("lite").loss_config().c_var == ROUNDED_LOSS_COEFFICIENTS["c_var"] == 11.976
    assert preset_config("lite-cpu").loss_config().c_var == 300.0  # the recipe's override still wins
    # the rounded values differ from the exact ones by less than 6e-4 relative
    for b in BRANCHES:
        assert ROUNDED_BRANCH_COEFFICIENTS[f"{b}_coef"] == pytest.approx(YAML[b], rel=6e-4)
    # the ablations are applied on top of either set
    assert preset_config("lite", graph="no_knn").graph_config().enable_knn is False
    assert preset_config("a0", graph="no_regulariser").loss_config().r_graph == 0.0
    assert preset_config("lite", detach_graph=True).graph_config().detach_structure is True


def test_a_config_written_before_the_fields_is_read_as_it_was_run() -> None:
    data = preset_config("a0").to_dict()
    del data["coefficients"], data["lr_step"]
    old = PretrainConfig.from_dict(json.loads(json.dumps(data)))
    assert (old.coefficients, old.lr_step) == ("rounded", "before")
    assert PretrainConfig.from_dict(preset_config("a0").to_dict()) == preset_config("a0")
    with pytest.raises(ValueError, match="coefficients"):
        preset_config("a0", coefficients="exact")
    with pytest.raises(ValueError, match="lr_step"):
        preset_config("a0", lr_step="later")


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def _logged_lrs(run: Path) -> list[tuple[float, float]]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["lr"], r["lr_encoder"]) for r in records if "lr" in r]


# lr 0.05, eta_min 1e-6, a cosine period of 4 steps, T_mult 2; by hand:
# eta + (lr - eta) * (1 + cos(pi * t / 4)) / 2 at t = 0, 1, 2, 3 ((1 + cos(pi / 4)) / 2 = 0.853553...):
# 0.05, 0.0426778..., 0.0250005, 0.0073232...
HAND = {0: 0.05, 1: 0.0426778159762731, 2: 0.0250005, 3: 0.0073231840237269}


@pytest.mark.slow
def test_the_first_learning_rates_are_the_reference_schedules(tmp_path: Path) -> None:
    """With the schedule stepped after the update, step i runs at the cosine's value at i - 1
    (steps 0 and 1 at lr), as the reference's scheduler.step(epoch + i / len) after
    optimizer.step() gives, and a run stopped and resumed continues the same rates; "before"
    runs one step ahead."""
    images = _images(tmp_path / "img")
    common = {"lr": 0.05, "lr_period_steps": 4, "backbone_lr_mult": 0.5, "checkpoint_every": 2}
    after, before = tmp_path / "after", tmp_path / "before"
    # stopped after step 2 (its checkpoint), resumed to the end of a 5-step run
    run_pretrain(preset_config("tiny", max_steps=2, **common), images, after, device="cpu", num_workers=0,
                 progress=False)
    run_pretrain(preset_config("tiny", max_steps=5, **common), images, after, device="cpu", num_workers=0,
                 progress=False, resume=True)
    run_pretrain(preset_config("tiny", max_steps=3, lr_step="before", **common), images, before, device="cpu",
                 num_workers=0, progress=False)
    expected_after = [HAND[0], HAND[0], HAND[1], HAND[2], HAND[3]]
    lrs = _logged_lrs(after)
    assert [lr for lr, _ in lrs] == pytest.approx(expected_after, rel=1e-9)
    # the encoder's group: base 0.025, the same cosine
    assert [enc for _, enc in lrs] == pytest.approx(
        [1e-6 + (0.025 - 1e-6) * (lr - 1e-6) / (0.05 - 1e-6) for lr in expected_after], rel=1e-9)
    assert [lr for lr, _ in _logged_lrs(before)] == pytest.approx([HAND[0], HAND[1], HAND[2]], rel=1e-9)


def test_under_autocast_only_the_encoder_and_projector_leave_float32() -> None:
    """The reference runs the encoder and projector in fp16 autocast and var/cov in fp32; we do
    the same and keep the relation graph and its association penalty in fp32 as well. On CPU
    autocast (bfloat16) stands in for CUDA's fp16: given low-precision h and z (what the
    encoder and projector give under autocast), the graph and the loss come out float32 and
    equal to a pass without autocast on the same values."""
    cfg = preset_config("tiny")
    torch.manual_seed(0)
    net = PretrainNet(cfg).eval()
    layout = cfg.layout
    nodes = build_node_meta(layout, torch.rand(layout.n_items, layout.n_compositions, layout.n_levels) * 4)
    n = nodes.is_ref.shape[0]
    h = torch.nn.functional.normalize(torch.randn(n, net.encoder.feature_dim), dim=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        z = net.model.projector(h)
        graph_out = net.graph(h.to(torch.bfloat16), nodes)
        out = ShamisaLoss(cfg.loss_config())(z, graph_out)
    assert z.dtype == torch.bfloat16  # the projector runs under autocast
    assert graph_out.G.dtype == torch.float32 and graph_out.P.dtype == torch.float32
    assert out.total.dtype == torch.float32 and all(t.dtype == torch.float32 for t in out.terms.values())
    with torch.no_grad():
        graph_fp32 = net.graph(h.to(torch.bfloat16).float(), nodes)
        out_fp32 = ShamisaLoss(cfg.loss_config())(z.float(), graph_fp32)
    assert torch.equal(graph_out.G, graph_fp32.G)
    assert {k: float(v) for k, v in out.terms.items()} == {k: float(v) for k, v in out_fp32.terms.items()}
