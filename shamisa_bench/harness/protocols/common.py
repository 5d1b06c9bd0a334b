"""Pieces shared by the protocols: exclusions, label direction, ridge fits over splits.

Direction: labels are put in the quality direction (negated for DMOS datasets) before
anything is fit or scored, and score metrics are negated when lower is better, so every
correlation is reported with "higher = agrees with people".

Exclusions: an image whose metric output failed or is NaN/Inf is removed from every split
part for that metric (and counted, with its name and reason); the splits themselves are
made from the full dataset, so all metrics share the same split definitions (same hashes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.common.scoring import (
    SCORE_KEYS,
    aggregate_scores,
    correlations,
    srcc_many,
)
from shamisa_bench.harness.adapters.runner import MetricOutputs
from shamisa_bench.iqa.ridge import fit_ridge_path, predict_path, select_alpha_by_val

__all__ = [
    "ProtocolResult",
    "SplitScores",
    "Usable",
    "aggregate_splits",
    "alpha_path_over_splits",
    "predict_images",
    "score_split",
    "split_hash",
    "split_parts",
    "usable_images",
]


@dataclass(frozen=True)
class Usable:
    """Which images of a dataset a metric can be scored on.

    Attributes:
        mask: ``(N,)`` bool, True for usable images.
        excluded: ``(name, reason)`` for every unusable image.
        n_nan: images with a NaN output.
        n_inf: images with an infinite output.
        nonfinite_names: names of the NaN/Inf images.
    """

    mask: NDArray[np.bool_]
    excluded: tuple[tuple[str, str], ...]
    n_nan: int
    n_inf: int
    nonfinite_names: tuple[str, ...]

    def nonfinite(self) -> dict[str, Any]:
        """The ``nonfinite`` block of a unit record."""
        return {"nan": self.n_nan, "inf": self.n_inf, "names": list(self.nonfinite_names)}


def usable_images(outputs: MetricOutputs) -> Usable:
    """Exclude failed images and images with NaN/Inf outputs (each with its reason)."""
    nan, inf = outputs.nonfinite()
    excluded = list(outputs.failures)
    for i, name in enumerate(outputs.names):
        if nan[i]:
            excluded.append((name, "NaN output"))
        elif inf[i]:
            excluded.append((name, "Inf output"))
    mask = ~outputs.failed & ~nan & ~inf
    names = tuple(outputs.names[i] for i in np.flatnonzero(nan | inf))
    return Usable(mask, tuple(excluded), int(nan.sum()), int(inf.sum()), names)


@dataclass(frozen=True)
class SplitScores:
    """Scores of one split.

    Attributes:
        index: split number.
        hash: the split's hash as the data layer gives it (None for no split).
        scores: srcc, plcc, plcc_logistic, krcc (NaN when undefined) and
            logistic_converged (1.0/0.0).
        n_train, n_val, n_test: usable images in each part (test: images scored).
        alpha: the ridge alpha used (None for score metrics).
        test_index: ``(n_test,)`` rows of the scored dataset table.
        predictions: ``(n_test,)`` predictions in the quality direction.
    """

    index: int
    hash: Any
    scores: dict[str, float]
    n_train: int
    n_val: int
    n_test: int
    alpha: float | None
    test_index: NDArray[np.intp]
    predictions: NDArray[np.float64]

    def record(self) -> dict[str, Any]:
        """The per-split entry of a unit record (no per-image predictions)."""
        return {"split": self.index, **self.scores, "n_train": self.n_train,
                "n_val": self.n_val, "n_test": self.n_test, "alpha": self.alpha,
                "hash": self.hash}


@dataclass(frozen=True)
class ProtocolResult:
    """What a protocol returns for one unit.

    Attributes:
        protocol: ``intra`` or ``cross``.
        splits: per-split scores and predictions.
        aggregate: score key -> {median, mean, std, n, n_nan}.
        n_images: usable images of the scored dataset.
        usable: exclusions of the scored dataset (and, for cross, of the training one in
            ``train_usable``).
        ridge: alpha selection details for feature metrics, else None.
        notes: remarks worth keeping in the unit (fallbacks).
    """

    protocol: str
    splits: tuple[SplitScores, ...]
    aggregate: dict[str, dict[str, float | int]]
    n_images: int
    usable: Usable
    ridge: dict[str, Any] | None = None
    train_usable: Usable | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _split_part(split: Any, part: str) -> NDArray[np.intp]:
    idx = getattr(split, part, None)
    if idx is None and isinstance(split, dict):
        idx = split.get(part)
    return np.asarray([] if idx is None else idx, dtype=np.intp).reshape(-1)


def split_parts(split: Any, mask: NDArray[np.bool_]
                ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """Train, val and test rows of a split restricted to usable images."""
    parts = []
    for part in ("train", "val", "test"):
        idx = _split_part(split, part)
        if idx.size and (idx.min() < 0 or idx.max() >= mask.size):
            raise ValueError(f"split {part} indices out of range for {mask.size} images")
        parts.append(idx[mask[idx]])
    return parts[0], parts[1], parts[2]


def split_hash(split: Any) -> Any:
    """The split's hash as provided by the data layer, or None."""
    return getattr(split, "hash", None) if not isinstance(split, dict) else split.get("hash")


def _design(values: NDArray[np.floating], idx: NDArray[np.intp]) -> tuple[NDArray, int]:
    """Rows of the ridge design for images ``idx``: ``(len(idx) * K, F)`` and K."""
    v = values[idx]
    if v.ndim == 2:
        return v, 1
    k = v.shape[1]
    return v.reshape(-1, v.shape[-1]), k


def predict_images(values: NDArray[np.floating], idx: NDArray[np.intp], W: NDArray,
                   b: NDArray) -> NDArray[np.float64]:
    """Predictions ``(A, len(idx))`` of a ridge path, averaged over an image's K crops."""
    X, k = _design(values, idx)
    p = predict_path(X, W, b)
    return p.reshape(p.shape[0], -1, k).mean(axis=2).astype(np.float64)


def alpha_path_over_splits(
    values: NDArray[np.floating],
    y: NDArray[np.float64],
    parts: Sequence[tuple[NDArray[np.intp], NDArray[np.intp]]],
    alphas: NDArray[np.float64],
    *,
    standardize: bool,
) -> tuple[list[tuple[NDArray, NDArray]], NDArray[np.float64], int | None, list[str]]:
    """Fit the ridge path on each split's train part and score every alpha on its val part.

    Args:
        values: features ``(N, K, F)`` (or ``(N, F)``).
        y: labels in the quality direction, ``(N,)``.
        parts: ``(train rows, val rows)`` per split.
        alphas: ``(A,)``.
        standardize: standardise features inside the fit.

    Returns:
        ``(paths, val_srcc, chosen_index, notes)``: the ``(W, b)`` of each split,
        validation SRCC ``(S, A)``, the index of the alpha with the best median validation
        SRCC (the grid's middle alpha, with a note, when no validation SRCC is defined),
        and notes.
    """
    paths = []
    val = np.full((len(parts), alphas.size), np.nan)
    notes: list[str] = []
    for s, (tr, va) in enumerate(parts):
        X, k = _design(values, tr)
        if tr.size < 2:
            raise ValueError(f"split {s}: {tr.size} usable training image(s); ridge needs 2")
        W, b = fit_ridge_path(X, np.repeat(y[tr], k), alphas, standardize=standardize)
        paths.append((W, b))
        if va.size >= 2:
            val[s] = srcc_many(predict_images(values, va, W, b), y[va])
    if np.isfinite(val).any(axis=1).any():
        idx, _, _ = select_alpha_by_val(val, alphas)
    else:
        idx = alphas.size // 2
        notes.append(
            f"validation SRCC undefined on every split (validation parts too small); "
            f"used the grid's middle alpha {alphas[idx]:.6g}"
        )
    return paths, val, idx, notes


def score_split(
    index: int,
    split: Any,
    pred: NDArray[np.float64],
    target: NDArray[np.float64],
    test_index: NDArray[np.intp],
    *,
    n_train: int,
    n_val: int,
    alpha: float | None,
) -> SplitScores:
    """Correlations of one split's test predictions (both in the quality direction)."""
    if test_index.size >= 2:
        scores = correlations(pred, target)
    else:
        scores = {k: math.nan for k in SCORE_KEYS} | {"logistic_converged": 0.0}
    return SplitScores(
        index=index,
        hash=split_hash(split) if split is not None else None,
        scores=scores,
        n_train=int(n_train),
        n_val=int(n_val),
        n_test=int(test_index.size),
        alpha=alpha,
        test_index=test_index,
        predictions=np.asarray(pred, dtype=np.float64),
    )


def aggregate_splits(splits: Sequence[SplitScores]) -> dict[str, dict[str, float | int]]:
    """Median/mean/std over splits of every score key."""
    return aggregate_scores([s.scores for s in splits], SCORE_KEYS)

