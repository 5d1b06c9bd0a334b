"""Robustness measurements: pure functions of quality scores (higher = better quality).

Every function takes NaN for an image whose score is missing (the metric failed or gave
NaN/Inf) and counts it; none drops a value silently.

* :func:`type_response`: per source, the Spearman correlation between severity and quality
  over the grid (a metric that sees the damage gives -1) and the adjacent steps where
  quality does not drop; averaged / pooled over sources. A source whose qualities are all
  equal has an undefined SRCC; it counts as 0 (no response) and is reported.
* :func:`composition_sensitivity`: along each composition chain (pristine, 1 distortion,
  2, ...), how often adding one more distortion lowers quality.
* :func:`invariance_spread`: ``|q(T(x)) - q(x)|`` for quality-preserving transforms T,
  relative to the metric's score range.
* :func:`score_range`: the range used for "relative to the score range". Several metrics
  have open ranges (ridge probes, entropy), so every metric uses the same definition: the
  observed range (max - min) of its finite scores over the pristine images and the whole
  type x severity grid.
* :func:`agreement`: Spearman correlation between metrics over the grid images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shamisa_bench.common.scoring import srcc

__all__ = [
    "agreement",
    "composition_sensitivity",
    "invariance_spread",
    "measure_metric",
    "score_range",
    "type_response",
]


def _finite(a: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(a, dtype=np.float64)
    return v[np.isfinite(v)]


def score_range(*groups: ArrayLike) -> dict[str, float | int]:
    """Observed range of the finite values of all ``groups``: ``{lo, hi, width, n}``."""
    v = np.concatenate([_finite(g).reshape(-1) for g in groups]) if groups else np.zeros(0)
    if v.size == 0:
        return {"lo": math.nan, "hi": math.nan, "width": math.nan, "n": 0}
    return {"lo": float(v.min()), "hi": float(v.max()), "width": float(v.max() - v.min()),
            "n": int(v.size)}


def type_response(severities: ArrayLike, quality: ArrayLike, width: float) -> dict[str, Any]:
    """Monotonicity of one type.

    Args:
        severities: ``(L,)`` increasing severity indices.
        quality: ``(S, L)`` quality per source and level (NaN = missing).
        width: the metric's score range (for the normalised drop).

    Returns:
        ``srcc``: mean over sources of SRCC(severity, quality) (NaN if no source has 2
        finite levels); ``srcc_per_source``; ``non_drop_fraction``: adjacent finite steps
        (pooled over sources) where quality does not drop (0 = always drops, 1 = never);
        ``n_steps``; ``drop``: mean over sources of (first - last finite level) / width;
        ``n_nan``: missing values; ``n_constant``: sources with constant quality.
    """
    sev = np.asarray(severities, dtype=np.float64).reshape(-1)
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != sev.size:
        raise ValueError(f"quality must have shape (S, {sev.size}), got {q.shape}")
    per_source: list[float] = []
    drops: list[float] = []
    n_const = n_up = n_steps = 0
    for row in q:
        ok = np.isfinite(row)
        if ok.sum() >= 2:
            r = srcc(sev[ok], row[ok])
            if math.isnan(r):  # constant quality: the metric does not respond at all
                r = 0.0
                n_const += 1
            per_source.append(r)
            f = row[ok]
            drops.append((f[0] - f[-1]) / width if width > 0 else math.nan)
        step_ok = ok[:-1] & ok[1:]
        n_steps += int(step_ok.sum())
        n_up += int((row[1:][step_ok] >= row[:-1][step_ok]).sum())
    return {
        "srcc": float(np.mean(per_source)) if per_source else math.nan,
        "srcc_per_source": per_source,
        "non_drop_fraction": n_up / n_steps if n_steps else math.nan,
        "n_steps": n_steps,
        "drop": float(np.nanmean(drops)) if drops and np.isfinite(drops).any() else math.nan,
        "n_nan": int((~np.isfinite(q)).sum()),
        "n_constant": n_const,
    }


def composition_sensitivity(chains: Sequence[ArrayLike]) -> dict[str, Any]:
    """How often adding one distortion lowers quality.

    Args:
        chains: one ``(S, n + 1)`` array per composition: column 0 the pristine quality,
            column k the quality after the first k distortions.

    Returns:
        ``lowered_fraction``: over every step that adds a distortion to an already
        distorted image (k >= 2), the fraction where quality drops; ``first_lowered``: the
        same for the first distortion (pristine -> 1); ``by_count``: the fraction per
        number of distortions after the step (``"2"`` .. ``"5"``); ``full_below_pristine``:
        fraction of chains whose full composition scores below the pristine image;
        ``n_steps``; ``n_nan``: missing values among the distorted images (column 0, the
        pristine image, is counted elsewhere).
    """
    lowered: dict[int, list[bool]] = {}
    full: list[bool] = []
    n_nan = 0
    for ch in chains:
        c = np.asarray(ch, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] < 2:
            raise ValueError(f"each chain must have shape (S, n + 1) with n >= 1, got {c.shape}")
        n_nan += int((~np.isfinite(c[:, 1:])).sum())
        for row in c:
            for k in range(1, row.size):
                if np.isfinite(row[k]) and np.isfinite(row[k - 1]):
                    lowered.setdefault(k, []).append(bool(row[k] < row[k - 1]))
            if np.isfinite(row[0]) and np.isfinite(row[-1]):
                full.append(bool(row[-1] < row[0]))
    later = [v for k, vs in lowered.items() if k >= 2 for v in vs]
    return {
        "lowered_fraction": float(np.mean(later)) if later else math.nan,
        "first_lowered": float(np.mean(lowered[1])) if lowered.get(1) else math.nan,
        "by_count": {str(k): float(np.mean(v)) for k, v in sorted(lowered.items()) if k >= 2},
        "n_by_count": {str(k): len(v) for k, v in sorted(lowered.items()) if k >= 2},
        "full_below_pristine": float(np.mean(full)) if full else math.nan,
        "n_steps": len(later),
        "n_nan": n_nan,
    }


def invariance_spread(pristine: ArrayLike, transformed: Mapping[str, ArrayLike], width: float
                      ) -> dict[str, Any]:
    """Score changes under quality-preserving transforms, relative to the score range.

    Args:
        pristine: ``(S,)`` quality of the sources.
        transformed: transform name -> ``(S,)`` quality of the transformed sources.
        width: the metric's score range.

    Returns:
        per transform ``{median, mean, max, n}`` of ``|q(T(x)) - q(x)| / width``, and
        ``all``: the same for the per-source spread (max - min over the source and all its
        transforms) / width.
    """
    p = np.asarray(pristine, dtype=np.float64)
    out: dict[str, Any] = {}
    stack = [p]

    def stats(v: NDArray[np.float64]) -> dict[str, float | int]:
        f = v[np.isfinite(v)]
        if f.size == 0 or not width > 0:
            return {"median": math.nan, "mean": math.nan, "max": math.nan, "n": int(f.size)}
        return {"median": float(np.median(f)), "mean": float(f.mean()), "max": float(f.max()),
                "n": int(f.size)}

    for name, t in transformed.items():
        tv = np.asarray(t, dtype=np.float64)
        stack.append(tv)
        out[name] = stats(np.abs(tv - p) / width if width > 0 else tv * np.nan)
    s = np.stack(stack, axis=1)
    ok = np.isfinite(s).all(axis=1)
    spread = np.full(p.shape, np.nan)
    spread[ok] = (s[ok].max(axis=1) - s[ok].min(axis=1)) / width if width > 0 else np.nan
    out["all"] = stats(spread)
    return out


def agreement(qualities: Mapping[str, ArrayLike]) -> dict[str, Any]:
    """Spearman correlation between every pair of metrics on the same images.

    Args:
        qualities: metric -> ``(N,)`` quality over the same N images (NaN = missing).

    Returns:
        ``{"metrics": [...], "srcc": M x M (NaN where < 3 shared finite images),
        "n": M x M shared finite images}``.
    """
    names = list(qualities)
    m = len(names)
    mat = np.full((m, m), np.nan)
    cnt = np.zeros((m, m), dtype=int)
    vals = [np.asarray(qualities[k], dtype=np.float64).reshape(-1) for k in names]
    for i in range(m):
        for j in range(m):
            if vals[i].size != vals[j].size:
                raise ValueError(f"{names[i]} and {names[j]} were scored on different image sets")
            ok = np.isfinite(vals[i]) & np.isfinite(vals[j])
            cnt[i, j] = int(ok.sum())
            if ok.sum() >= 3:
                mat[i, j] = srcc(vals[i][ok], vals[j][ok])
    return {"metrics": names, "srcc": mat.tolist(), "n": cnt.tolist()}


def measure_metric(raw: Mapping[str, Any]) -> dict[str, Any]:
    """All per-metric measurements from the raw qualities of a metric record.

    Args:
        raw: ``{"pristine": (S,), "invariance": {t: (S,)}, "grid": {type: {"severities":
            (L,), "quality": (S, L)}}, "compositions": [(S, n + 1), ...]}`` (None = NaN).

    Returns:
        ``{"range", "types": {type: type_response}, "invariance", "compositions",
        "n_nan"}``.
    """
    def arr(v: Any) -> NDArray[np.float64]:
        return np.asarray(v, dtype=np.float64)  # JSON null -> NaN

    pristine = arr(raw["pristine"])
    grid = {t: (np.asarray(g["severities"], dtype=np.float64), arr(g["quality"]))
            for t, g in raw["grid"].items()}
    rng = score_range(pristine, *[q for _, q in grid.values()])
    width = rng["width"]
    types = {t: type_response(s, q, width) for t, (s, q) in grid.items()}
    inv = invariance_spread(pristine, {t: arr(v) for t, v in raw["invariance"].items()}, width)
    comp = composition_sensitivity([arr(c) for c in raw["compositions"]])
    n_nan = int((~np.isfinite(pristine)).sum()) + sum(r["n_nan"] for r in types.values())
    n_nan += comp["n_nan"] + sum(int((~np.isfinite(arr(v))).sum()) for v in raw["invariance"].values())
    return {"range": rng, "types": types, "invariance": inv, "compositions": comp, "n_nan": n_nan}
