"""Weight averaging of encoder exports: one encoder from several checkpoints of a run.

Averaging the weights a run passes through (stochastic weight averaging, Izmailov et al.
2018, https://arxiv.org/abs/1803.05407) smooths the step-to-step oscillation of a short
self-supervised run: ``shamisa-bench pretrain --export-every 50`` writes the checkpoints,
``shamisa-bench model average-exports`` combines them, and the validation probe
(``shamisa-bench model probe``) or the ablation suite measures the result.

Every floating tensor of the state dict is averaged, BatchNorm's running statistics
included: with ``--freeze-bn`` they are the initial ones in every export, so the average
is exact; otherwise averaging them approximates re-estimating them. Integer buffers
(BatchNorm's ``num_batches_tracked``) are taken from the last export.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from shamisa_bench.model.backbones import Encoder
from shamisa_bench.model.export import (
    EncoderExport,
    ExportError,
    load_encoder_export,
    read_encoder_export,
)

__all__ = ["average_exports", "average_state_dicts"]


def average_state_dicts(
    states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The weighted mean of state dicts with the same keys and shapes.

    Args:
        states: one or more state dicts (any floating dtypes; accumulated in float64).
        weights: one non-negative weight per state dict, not all zero; normalised to sum
            to 1 (default: uniform).

    Returns:
        A float32 state dict (integer tensors copied from the last state dict).

    Raises:
        ValueError: no state dict, mismatched keys or shapes, weights that are negative,
            all zero, not finite or overflow their sum, or a non-finite average.
    """
    if not states:
        raise ValueError("average_state_dicts needs at least one state dict")
    if weights is None:
        weights = [1.0] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"got {len(weights)} weights for {len(states)} state dicts")
    if any(not (w >= 0) or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {list(weights)}")
    total = float(sum(float(w) for w in weights))
    if not math.isfinite(total):
        raise ValueError(f"weights {list(weights)} sum to {total}: scale them down (only their ratios matter)")
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        if set(state) != set(keys):
            diff = sorted(set(state) ^ set(keys))
            raise ValueError(f"state dict {i} has other keys than state dict 0, e.g. {diff[0]!r}")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [state[key] for state in states]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            raise ValueError(f"{key!r} has different shapes across the state dicts: {sorted(shapes)}")
        if not tensors[0].is_floating_point():
            out[key] = tensors[-1].detach().clone()
            continue
        acc = torch.zeros_like(tensors[0], dtype=torch.float64, device="cpu")
        for w, t in zip(weights, tensors, strict=True):
            acc.add_(t.detach().to("cpu", torch.float64), alpha=w / total)
        result = acc.to(torch.float32)
        if not bool(torch.isfinite(result).all()):
            bad = int((~torch.isfinite(result)).sum())
            raise ValueError(f"the average of {key!r} has {bad} non-finite value(s) (a source holds NaN or "
                             "infinite values, or the mean overflows float32)")
        out[key] = result
    return out


def average_exports(
    paths: Sequence[str | os.PathLike[str]], weights: Sequence[float] | None = None
) -> tuple[Encoder, dict[str, Any]]:
    """Loads encoder exports (each verified) and averages their weights.

    Args:
        paths: export folders (or their ``config.json``), all of one backbone and init.
        weights: one non-negative weight per export (default: uniform).

    Returns:
        The averaged float32 encoder (eval mode, CPU), and a provenance dict for the
        export's ``extra``: each source's sha256, its pretraining step and seed where its
        config records them, and the weights.

    Raises:
        ExportError: an export is missing or corrupt, or the exports differ in backbone or init.
        ValueError: fewer than two exports, or bad weights.
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two exports, got {len(paths)}")
    infos: list[EncoderExport] = [read_encoder_export(p, verify=False) for p in paths]  # loading verifies
    first = infos[0]
    for info in infos[1:]:
        if (info.backbone, info.init) != (first.backbone, first.init):
            raise ExportError(
                f"{info.config_path}: backbone {info.backbone} (init {info.init}) differs from "
                f"{first.config_path}: {first.backbone} (init {first.init}); only one model's exports can be averaged"
            )
    if weights is None:
        weights = [1.0] * len(paths)
    encoders = [load_encoder_export(p) for p in paths]
    state = average_state_dicts([e.state_dict() for e in encoders], weights)
    encoder = encoders[-1]
    encoder.load_state_dict(state, strict=True)
    encoder.weights_sha256 = None  # no longer the weights of any file
    sources = []
    for info in infos:
        pretrain = (info.config.get("extra") or {}).get("pretrain") or {}
        sources.append({"weights_sha256": info.weights_sha256, "step": pretrain.get("steps"),
                        "seed": pretrain.get("seed")})
    total = float(sum(weights))
    return encoder.eval(), {"method": "weighted mean of every floating tensor", "sources": sources,
                            "weights": [round(w / total, 6) for w in weights]}
