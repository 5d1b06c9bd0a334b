"""The cross-dataset protocol: fit on dataset A, predict all of dataset B.

Feature metrics: for each split of A the ridge path is fit on its train part; alpha is
chosen by the median validation SRCC over A's splits (A's val parts, never B); each split's
head then predicts every usable image of B, and the table reports the median over splits.
Labels of both datasets are put in the quality direction first, so a head trained on MOS
and tested on DMOS (or on another label scale) is scored correctly. Score metrics have
nothing to fit: they are correlated once with all of B (one "split").
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

__all__ = ["run_cross"]


def run_cross(
    train_outputs: MetricOutputs,
    train_mos: ArrayLike,
    test_outputs: MetricOutputs,
    test_mos: ArrayLike,
    *,
    train_lower_better: bool,
    test_lower_better: bool,
    metric_lower_better: bool,
    train_splits: Sequence[Any],
    alphas: ArrayLike,
    standardize: bool = False,
) -> ProtocolResult:
    """Score a metric trained on A (``train_*``) and tested on all of B (``test_*``).

    Args:
        train_outputs, test_outputs: per-image outputs on A and on B.
        train_mos, test_mos: labels as published, shapes ``(N_A,)`` and ``(N_B,)``.
        train_lower_better, test_lower_better: label directions (True for DMOS).
        metric_lower_better: score direction (score metrics).
        train_splits: A's splits (``train``, ``val``, ``test`` row indices, ``hash``).
        alphas: ridge grid, shape ``(A,)``.
        standardize: standardise features inside the ridge fit.

    Returns:
        per-split scores on B, aggregates, exclusions on B (``usable``) and A
        (``train_usable``), alpha selection.
    """
    yb = orient(test_mos, test_lower_better)
    if yb.shape[0] != len(test_outputs.names):
        raise ValueError(f"{len(test_outputs.names)} outputs on B but {yb.shape[0]} labels")
    use_b = usable_images(test_outputs)
    all_b = np.flatnonzero(use_b.mask)
    if test_outputs.output == "score":
        pred = orient(test_outputs.values, metric_lower_better)[all_b]
        res = [score_split(0, None, pred, yb[all_b], all_b, n_train=0, n_val=0, alpha=None)]
        return ProtocolResult("cross", tuple(res), aggregate_splits(res), int(all_b.size),
                              use_b, None, usable_images(train_outputs),
                              ("score metric: no fitting; correlated once on all of B",))
    ya = orient(train_mos, train_lower_better)
    if ya.shape[0] != len(train_outputs.names):
        raise ValueError(f"{len(train_outputs.names)} outputs on A but {ya.shape[0]} labels")
    if not train_splits:
        raise ValueError("the cross protocol needs at least one split of the training dataset")
    use_a = usable_images(train_outputs)
    parts = [split_parts(s, use_a.mask) for s in train_splits]
    grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    paths, val, idx, notes = alpha_path_over_splits(
        train_outputs.values, ya, [(tr, va) for tr, va, _ in parts], grid,
        standardize=standardize,
    )
    alpha = float(grid[idx])
    res = []
    for i, (split, (tr, va, _), (W, b)) in enumerate(zip(train_splits, parts, paths)):
        pred = predict_images(test_outputs.values, all_b, W[idx : idx + 1], b[idx : idx + 1])[0]
        res.append(score_split(i, split, pred, yb[all_b], all_b, n_train=tr.size,
                               n_val=va.size, alpha=alpha))
    with np.errstate(all="ignore"):
        med = (np.nanmedian(np.where(np.isfinite(val), val, np.nan), axis=0)
               if np.isfinite(val).any() else np.full(grid.size, np.nan))
    ridge = {
        "alpha_grid": {"lo": float(grid[0]), "hi": float(grid[-1]), "n": int(grid.size)},
        "chosen_alpha": alpha,
        "chosen_index": int(idx),
        "selection": "median validation SRCC over the training dataset's splits",
        "val_srcc_median": med.tolist(),
        "standardize": bool(standardize),
    }
    return ProtocolResult("cross", tuple(res), aggregate_splits(res), int(all_b.size), use_b,
                          ridge, use_a, tuple(notes))
