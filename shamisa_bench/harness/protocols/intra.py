"""The intra-dataset protocol: seeded train/val/test splits of one dataset.

Feature metrics: for each split the ridge path (every alpha of the grid) is fit on the
train part from one eigendecomposition, and every alpha is scored by SRCC on the val part;
the alpha with the best **median** validation SRCC over splits is used for every split's
test part. ``crops5`` features fit on crop rows with the label repeated and average the K
crop predictions of an image. Score metrics need no fit: they are correlated on the same
test parts, so every number of a table compares the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from shamisa_bench.common.scoring import orient
from shamisa_bench.harness.adapters.runner import MetricOutputs
from shamisa_bench.harness.protocols.common import (
    ProtocolResult,
    aggregate_splits,
    alpha_path_over_splits,
    predict_images,
    score_split,
    split_parts,
    usable_images,
)

__all__ = ["run_intra"]


def run_intra(
    outputs: MetricOutputs,
    mos: ArrayLike,
    *,
    labels_lower_better: bool,
    metric_lower_better: bool,
    splits: Sequence[Any],
    alphas: ArrayLike,
    standardize: bool = False,
) -> ProtocolResult:
    """Score one metric on one dataset over its splits.

    Args:
        outputs: the metric's per-image outputs on the dataset (row order = table order).
        mos: labels as published, shape ``(N,)``.
        labels_lower_better: True for DMOS datasets.
        metric_lower_better: True when the metric's low scores mean high quality (scores).
        splits: objects with ``train``, ``val``, ``test`` row-index arrays (and ``hash``).
        alphas: ridge grid, shape ``(A,)`` (feature metrics).
        standardize: standardise features inside the ridge fit.

    Returns:
        per-split scores and predictions, aggregates, exclusions, alpha selection.

    Raises:
        ValueError: on mismatched sizes, no splits, or too few usable training images.
    """
    y = orient(mos, labels_lower_better)
    if y.shape[0] != len(outputs.names):
        raise ValueError(f"{len(outputs.names)} metric outputs but {y.shape[0]} labels")
    if not np.isfinite(y).all():
        raise ValueError("labels contain NaN/Inf; the dataset reader must reject them")
    if not splits:
        raise ValueError("the intra protocol needs at least one split")
    use = usable_images(outputs)
    parts = [split_parts(s, use.mask) for s in splits]
    results = []
    ridge = None
    notes: list[str] = []
    if outputs.output == "score":
        pred_all = orient(outputs.values, metric_lower_better)
        for i, (split, (tr, va, te)) in enumerate(zip(splits, parts)):
            results.append(score_split(i, split, pred_all[te], y[te], te, n_train=tr.size,
                                       n_val=va.size, alpha=None))
    else:
        grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
        paths, val, idx, notes = alpha_path_over_splits(
            outputs.values, y, [(tr, va) for tr, va, _ in parts], grid, standardize=standardize
        )
        alpha = float(grid[idx])
        for i, (split, (tr, va, te), (W, b)) in enumerate(zip(splits, parts, paths)):
            pred = predict_images(outputs.values, te, W[idx : idx + 1], b[idx : idx + 1])[0]
            results.append(score_split(i, split, pred, y[te], te, n_train=tr.size,
                                       n_val=va.size, alpha=alpha))
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(np.isfinite(val), val, np.nan), axis=0) if np.isfinite(
                val).any() else np.full(grid.size, np.nan)
        ridge = {
            "alpha_grid": {"lo": float(grid[0]), "hi": float(grid[-1]), "n": int(grid.size)},
            "chosen_alpha": alpha,
            "chosen_index": int(idx),
            "selection": "median validation SRCC over splits",
            "val_srcc_median": med.tolist(),
            "standardize": bool(standardize),
            "n_crops": int(outputs.values.shape[1]) if outputs.values.ndim == 3 else 1,
        }
    return ProtocolResult(
        protocol="intra",
        splits=tuple(results),
        aggregate=aggregate_splits(results),
        n_images=int(use.mask.sum()),
        usable=use,
        ridge=ridge,
        notes=tuple(notes),
    )
