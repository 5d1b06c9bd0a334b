"""Correlation scores between predicted and subjective quality, and their aggregation.

All functions take 1-D arrays of equal length ``(n,)`` and return Python floats. Scores are
reported as they come: a negative SRCC means the prediction runs against the labels. Callers
orient both arrays in the *quality direction* (higher = better) before scoring, see
:func:`orient`.

PLCC is given raw and after the customary 4-parameter logistic mapping of the predictions
onto the labels (VQEG, "Final report on the validation of objective models of video quality
assessment", 2000; the form used by LIVE, CSIQ and most NR-IQA papers)::

    f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2

The fit is done by :func:`scipy.optimize.curve_fit` on predictions standardised to zero mean
and unit variance, starting from b1 = max(y), b2 = min(y) (swapped when the raw correlation
is negative), b3 = median(x), b4 = 1. When the fit fails (no convergence, non-finite
parameters, fewer than 5 points or a constant input) the mapping falls back to the identity,
so ``plcc_logistic`` equals the raw ``plcc``; :func:`fit_logistic` says so through
``LogisticFit.converged``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import kendalltau, rankdata

__all__ = [
    "SCORE_KEYS",
    "LogisticFit",
    "aggregate",
    "aggregate_scores",
    "bootstrap_median_interval",
    "correlations",
    "fit_logistic",
    "krcc",
    "logistic_4p",
    "orient",
    "plcc",
    "plcc_logistic",
    "srcc",
    "srcc_many",
]

#: The score keys every protocol reports, in table order.
SCORE_KEYS: tuple[str, ...] = ("srcc", "plcc", "plcc_logistic", "krcc")


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same length, got {p.size} and {t.size}")
    if p.size and not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError(
            "pred and target must be finite; count and exclude NaN/Inf values before scoring"
        )
    return p, t


def _pearson(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    if a.size < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    if den == 0.0:
        return math.nan
    return float(np.clip((a @ b) / den, -1.0, 1.0))


def orient(values: ArrayLike, lower_better: bool) -> NDArray[np.float64]:
    """Return ``values`` in the quality direction: negated when lower means better.

    Args:
        values: scores or labels, shape ``(n,)``.
        lower_better: True for DMOS labels and for metrics whose low scores mean high quality.

    Returns:
        float64 array of shape ``(n,)`` where higher means better quality.
    """
    v = np.asarray(values, dtype=np.float64)
    return -v if lower_better else v.copy()


def srcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman rank-order correlation (ties get average ranks). NaN if either is constant.

    Args:
        pred: predictions, shape ``(n,)``, finite.
        target: labels, shape ``(n,)``, finite.
    """
    p, t = _pair(pred, target)
    return _pearson(rankdata(p), rankdata(t))


def srcc_many(preds: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """SRCC of many prediction vectors against one target, vectorised.

    Args:
        preds: shape ``(A, n)``, one row per candidate (e.g. per ridge alpha), finite.
        target: shape ``(n,)``.

    Returns:
        shape ``(A,)``; NaN for a constant row.
    """
    p = np.asarray(preds, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"preds must have shape (A, n), got {p.shape}")
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape[1] != t.size:
        raise ValueError(f"preds has {p.shape[1]} columns but target has {t.size} values")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("preds and target must be finite")
    rp = rankdata(p, axis=1)
    rt = rankdata(t)
    rp -= rp.mean(axis=1, keepdims=True)
    rt = rt - rt.mean()
    num = rp @ rt
    den = np.sqrt((rp * rp).sum(axis=1) * float(rt @ rt))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(out, -1.0, 1.0)


def plcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Pearson linear correlation of the raw predictions. NaN if either is constant."""
    p, t = _pair(pred, target)
    return _pearson(p, t)


def krcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall rank correlation (tau-b, which accounts for ties). NaN if either is constant."""
    p, t = _pair(pred, target)
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return math.nan
    return float(kendalltau(p, t).statistic)


def logistic_4p(
    x: ArrayLike, b1: float, b2: float, b3: float, b4: float
) -> NDArray[np.float64]:
    """The 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    Args:
        x: inputs, any shape.
        b1: upper asymptote.
        b2: lower asymptote.
        b3: centre.
        b4: scale (its sign is ignored; a zero scale is treated as 1e-12).
    """
    xx = np.asarray(x, dtype=np.float64)
    s = max(abs(b4), 1e-12)
    z = np.clip(-(xx - b3) / s, -700.0, 700.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


@dataclass(frozen=True)
class LogisticFit:
    """A fitted monotonic mapping from predictions to the label scale.

    Attributes:
        params: (b1, b2, b3, b4) of :func:`logistic_4p`, on standardised inputs.
        shift: mean of the predictions used for standardisation.
        scale: standard deviation of the predictions used for standardisation.
        converged: False when the fit failed and the mapping is the identity.
    """

    params: tuple[float, float, float, float]
    shift: float
    scale: float
    converged: bool

    def __call__(self, pred: ArrayLike) -> NDArray[np.float64]:
        """Map predictions, shape ``(n,)``, onto the label scale."""
        p = np.asarray(pred, dtype=np.float64)
        if not self.converged:
            return p.copy()
        return logistic_4p((p - self.shift) / self.scale, *self.params)


def fit_logistic(pred: ArrayLike, target: ArrayLike) -> LogisticFit:
    """Fit the 4-parameter logistic of ``pred`` onto ``target`` (see module docstring).

    Args:
        pred: predictions, shape ``(n,)``, finite.
        target: labels, shape ``(n,)``, finite.

    Returns:
        the fit; ``converged`` is False (identity mapping) when the fit fails.
    """
    p, t = _pair(pred, target)
    identity = LogisticFit((1.0, 0.0, 0.0, 1.0), 0.0, 1.0, False)
    if p.size < 5 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return identity
    shift, scale = float(p.mean()), float(p.std())
    if not scale > 0:
        return identity
    x = (p - shift) / scale
    r = _pearson(p, t)
    hi, lo = float(t.max()), float(t.min())
    b1, b2 = (hi, lo) if not r < 0 else (lo, hi)
    p0 = [b1, b2, float(np.median(x)), 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            popt, _ = curve_fit(logistic_4p, x, t, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, FloatingPointError):
        return identity
    if not np.isfinite(popt).all():
        return identity
    fitted = logistic_4p(x, *popt)
    if not np.isfinite(fitted).all() or np.ptp(fitted) == 0:
        return identity
    b = tuple(float(v) for v in popt)
    return LogisticFit((b[0], b[1], b[2], b[3]), shift, scale, True)


def plcc_logistic(pred: ArrayLike, target: ArrayLike) -> float:
    """PLCC after mapping the predictions with :func:`fit_logistic` (identity on failure)."""
    p, t = _pair(pred, target)
    return _pearson(fit_logistic(p, t)(p), t)


def correlations(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """All reported scores for one prediction set.

    Args:
        pred: predictions in the quality direction, shape ``(n,)``, finite.
        target: labels in the quality direction, shape ``(n,)``, finite.

    Returns:
        ``{"srcc", "plcc", "plcc_logistic", "krcc"}`` (NaN where undefined) plus
        ``"logistic_converged"`` as 1.0 or 0.0.
    """
    p, t = _pair(pred, target)
    fit = fit_logistic(p, t)
    return {
        "srcc": srcc(p, t),
        "plcc": _pearson(p, t),
        "plcc_logistic": _pearson(fit(p), t),
        "krcc": krcc(p, t),
        "logistic_converged": 1.0 if fit.converged else 0.0,
    }


def aggregate(values: Sequence[float] | ArrayLike) -> dict[str, float | int]:
    """Median, mean and population std over splits, ignoring NaN (counted in ``n_nan``).

    Args:
        values: one score per split, shape ``(S,)``.

    Returns:
        ``{"median", "mean", "std", "n", "n_nan"}``; statistics are NaN when no value is finite.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        nan = math.nan
        return {"median": nan, "mean": nan, "std": nan, "n": int(v.size), "n_nan": int(v.size)}
    return {
        "median": float(np.median(finite)),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "n": int(v.size),
        "n_nan": int(v.size - finite.size),
    }


def aggregate_scores(
    per_split: Sequence[Mapping[str, float]], keys: Sequence[str] = SCORE_KEYS
) -> dict[str, dict[str, float | int]]:
    """Aggregate a list of per-split score dicts key by key with :func:`aggregate`."""
    return {k: aggregate([s.get(k, math.nan) for s in per_split]) for k in keys}



#: Resamples and seed of :func:`bootstrap_median_interval` (fixed, so tables are reproducible).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_median_interval(
    values: Sequence[float] | ArrayLike,
    *,
    level: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the median over splits.

    The splits are resampled with replacement ``n_resamples`` times with
    ``numpy.random.default_rng(seed)``; the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled medians. The same seed and length give
    the same resampled indices, so paired differences (the values being per-split
    differences) are resampled consistently.

    Args:
        values: one value per split, shape ``(S,)``; NaN values are dropped first.
        level: coverage of the interval, in (0, 1).
        n_resamples: bootstrap resamples (>= 100).
        seed: seed of the resampling.

    Returns:
        ``(low, high)``, or None when fewer than 2 finite values remain.

    Raises:
        ValueError: ``level`` outside (0, 1) or ``n_resamples`` below 100.
    """
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if int(n_resamples) < 100:
        raise ValueError(f"n_resamples must be at least 100, got {n_resamples!r}")
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    rng = np.random.default_rng(int(seed))
    idx = rng.integers(0, v.size, size=(int(n_resamples), v.size))
    medians = np.median(v[idx], axis=1)
    lo, hi = np.quantile(medians, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)
