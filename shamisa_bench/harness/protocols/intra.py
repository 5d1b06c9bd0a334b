"""The intra-dataset protocol: seeded train/val/test splits of one dataset.

For a dataset whose images carry a distortion type, :func:`srcc_by_type` adds the SRCC of
each type on the same test parts (the table IQA papers print for LIVE and CSIQ).

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

from shamisa_bench.common.scoring import orient, srcc
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

__all__ = ["run_intra", "srcc_by_type"]

#: Fewest test images of a type in a split for its SRCC to count.
MIN_TYPE_IMAGES = 3


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


def srcc_by_type(result: ProtocolResult, mos: ArrayLike, distortion: Sequence[Any], *,
                 labels_lower_better: bool) -> dict[str, Any] | None:
    """SRCC per distortion type on each split's test part, and its median over the splits.

    Args:
        result: :func:`run_intra`'s result (its test rows and predictions are reused).
        mos: the labels as published, shape ``(N,)``.
        distortion: ``(N,)`` the type of each image (empty or missing: not typed, left out).
        labels_lower_better: True for DMOS datasets.

    Returns:
        ``{"per_split": [{type: srcc or None}], "aggregate": {type: {"median", "n_splits",
        "n_images"}}}`` in the order types first appear, or None when no image has a type.
        A type with fewer than :data:`MIN_TYPE_IMAGES` test images in a split has no value there.
    """
    y = orient(mos, labels_lower_better)
    types = np.asarray(["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in distortion])
    if types.shape[0] != y.shape[0]:
        raise ValueError(f"{types.shape[0]} distortion types but {y.shape[0]} labels")
    names = [t for t in dict.fromkeys(types.tolist()) if t]
    if not names:
        return None
    per_split = []
    for split in result.splits:
        te = np.asarray(split.test_index)
        pred = np.asarray(split.predictions)
        row: dict[str, float | None] = {}
        for t in names:
            sel = types[te] == t
            v = srcc(pred[sel], y[te][sel]) if sel.sum() >= MIN_TYPE_IMAGES else float("nan")
            row[t] = float(v) if np.isfinite(v) else None
        per_split.append(row)
    usable = result.usable.mask
    aggregate = {}
    for t in names:
        vals = [r[t] for r in per_split if r[t] is not None]
        aggregate[t] = {"median": float(np.median(vals)) if vals else None, "n_splits": len(vals),
                        "n_images": int(((types == t) & usable).sum())}
    return {"per_split": per_split, "aggregate": aggregate}
