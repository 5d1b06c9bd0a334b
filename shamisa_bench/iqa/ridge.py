"""Ridge regression for a whole grid of alphas from one eigendecomposition.

For centred (and optionally standardised) training features ``Xc`` (n, D) and centred
targets ``yc`` (n,), the ridge solution for every ``alpha`` is, with the eigendecomposition
``Xc^T Xc = V diag(s) V^T`` (primal, used when n > D)::

    w(alpha) = V diag(1 / (s + alpha)) V^T Xc^T yc

or, with ``Xc Xc^T = U diag(s) U^T`` (dual, used when n <= D)::

    w(alpha) = Xc^T U diag(1 / (s + alpha)) U^T yc

and the intercept is ``mean(y) - mean(X) @ w``. This is the estimator of scikit-learn's
``Ridge(alpha, fit_intercept=True)`` (and, with ``standardize=True``, of a pipeline
``StandardScaler() -> Ridge(alpha * D / 2)`` with the weights mapped back to the raw feature
scale: standardised features are scaled to a total variance of 2 per sample, as the
two-scale unit-norm features have, so the same alpha grid fits both; without it a grid made
for 2,560 unit-norm features sits at its upper edge on 5,696 standardised ones). One
decomposition per training set serves all alphas; each extra alpha costs one ``(D, D) @ (D,)``
product. Features with zero variance keep a scale of 1 when standardising, as scikit-learn
does.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from shamisa_bench.common.scoring import srcc_many
from shamisa_bench.common.splits import permuted_group_parts

__all__ = [
    "STANDARDIZED_TOTAL_VARIANCE",
    "RidgeFit",
    "bench_ridge",
    "fit_ridge",
    "fit_ridge_path",
    "geometric_alphas",
    "predict_path",
    "select_alpha_by_val",
]

STANDARDIZED_TOTAL_VARIANCE = 2.0
"""Total variance per sample of standardised features in :func:`fit_ridge_path`: that of
the two unit-norm ``h`` (full and x0.5 scale) of the ``whole`` read-out."""


def geometric_alphas(lo: float = 1e-3, hi: float = 1e3, n: int = 100) -> NDArray[np.float64]:
    """``n`` alphas spaced geometrically from ``lo`` to ``hi`` inclusive (ARNIQA's grid).

    Raises:
        ValueError: if ``lo`` or ``hi`` is not positive, ``lo > hi`` or ``n < 1``.
    """
    if not (lo > 0 and hi > 0):
        raise ValueError(f"alpha bounds must be positive, got lo={lo}, hi={hi}")
    if lo > hi:
        raise ValueError(f"alpha lo must not exceed hi, got lo={lo}, hi={hi}")
    if int(n) < 1:
        raise ValueError(f"number of alphas must be >= 1, got {n}")
    return np.geomspace(lo, hi, int(n))


def _check_alphas(alphas: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("alphas must not be empty")
    if not (np.isfinite(a).all() and (a > 0).all()):
        raise ValueError(f"alphas must be finite and positive, got {a.tolist()[:8]}")
    return a


def fit_ridge_path(
    X: ArrayLike,
    y: ArrayLike,
    alphas: ArrayLike,
    *,
    standardize: bool = False,
    dtype: type[np.floating] | np.dtype = np.float64,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Fit ridge regression with intercept for every alpha at once.

    Args:
        X: training features, shape ``(n, D)``, finite.
        y: training targets, shape ``(n,)``, finite.
        alphas: regularisation strengths, shape ``(A,)``, positive.
        standardize: scale each centred feature to the variance
            ``STANDARDIZED_TOTAL_VARIANCE / D`` before the fit (a total of 2 per sample,
            the scale of the two unit-norm ``h`` of the ``whole`` read-out, so that one alpha
            grid serves raw and standardised features of any width); the returned weights
            act on the raw features.
        dtype: computation dtype: float64 (default, matches a float64 closed-form solve to
            ~1e-10) or float32 (about twice as fast; fine for well-conditioned features).

    Returns:
        ``(W, b)``: weights of shape ``(A, D)`` and intercepts of shape ``(A,)``, so that the
        predictions for alpha ``alphas[i]`` are ``X @ W[i] + b[i]``.

    Raises:
        ValueError: on mismatched shapes, fewer than 2 samples, non-finite input or
            non-positive alphas.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    Xa = np.asarray(X, dtype=dt)
    ya = np.asarray(y, dtype=dt).reshape(-1)
    if Xa.ndim != 2:
        raise ValueError(f"X must have shape (n, D), got {Xa.shape}")
    n, d = Xa.shape
    if ya.size != n:
        raise ValueError(f"X has {n} rows but y has {ya.size} values")
    if n < 2:
        raise ValueError(f"ridge needs at least 2 training samples, got {n}")
    if not (np.isfinite(Xa).all() and np.isfinite(ya).all()):
        raise ValueError("X and y must be finite")
    a = _check_alphas(alphas)

    mu = Xa.mean(axis=0)
    ymean = ya.mean()
    Xc = torch.from_numpy(Xa - mu)
    yc = torch.from_numpy(ya - ymean)
    if standardize:
        sd_np = np.sqrt(((Xa - mu) ** 2).mean(axis=0))
        sd_np[~(sd_np > np.finfo(dt).tiny * 1e3)] = 1.0
        sd_np = sd_np * math.sqrt(d / STANDARDIZED_TOTAL_VARIANCE)
        sd = torch.from_numpy(sd_np.astype(dt))
        Xc = Xc / sd
    al = torch.from_numpy(a.astype(dt))
    if n > d:
        gram = Xc.T @ Xc
        s, V = torch.linalg.eigh(gram)
        s = s.clamp_min(0)
        c = V.T @ (Xc.T @ yc)  # (D,)
        Ws = V @ (c[:, None] / (s[:, None] + al[None, :]))  # (D, A)
    else:
        kern = Xc @ Xc.T
        s, U = torch.linalg.eigh(kern)
        s = s.clamp_min(0)
        r = U.T @ yc  # (n,)
        Ws = Xc.T @ (U @ (r[:, None] / (s[:, None] + al[None, :])))  # (D, A)
    if standardize:
        Ws = Ws / sd[:, None]
    W = Ws.T.contiguous().numpy()
    b = ymean - W @ mu
    return W, np.asarray(b, dtype=dt)


def predict_path(
    X: ArrayLike, W: NDArray[np.floating], b: NDArray[np.floating]
) -> NDArray[np.floating]:
    """Predictions of every alpha of a path.

    Args:
        X: features, shape ``(m, D)``.
        W: weights, shape ``(A, D)``.
        b: intercepts, shape ``(A,)``.

    Returns:
        shape ``(A, m)``.
    """
    Xa = np.asarray(X, dtype=W.dtype)
    if Xa.ndim != 2 or Xa.shape[1] != W.shape[1]:
        raise ValueError(f"X must have shape (m, {W.shape[1]}), got {Xa.shape}")
    return W @ Xa.T + b[:, None]


def select_alpha_by_val(
    val_srcc: ArrayLike, alphas: ArrayLike
) -> tuple[int, float, NDArray[np.float64]]:
    """Choose the alpha with the best median validation SRCC over splits.

    Args:
        val_srcc: validation SRCC, shape ``(S, A)`` (splits x alphas); NaN counts as worst.
        alphas: shape ``(A,)``.

    Returns:
        ``(index, alpha, median_per_alpha)``: the first alpha (in grid order) reaching the
        best median, its value, and the medians, shape ``(A,)``.

    Raises:
        ValueError: on shape mismatch or when every median is NaN.
    """
    v = np.asarray(val_srcc, dtype=np.float64)
    a = _check_alphas(alphas)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != a.size:
        raise ValueError(f"val_srcc must have shape (S, {a.size}), got {v.shape}")
    med = np.median(np.where(np.isfinite(v), v, -np.inf), axis=0)
    med = np.where(np.isfinite(med), med, np.nan)
    if not np.isfinite(med).any():
        raise ValueError("no alpha has a finite median validation SRCC (constant predictions?)")
    i = int(np.nanargmax(med))
    return i, float(a[i]), med


@dataclass(frozen=True)
class RidgeFit:
    """One ridge solution ``q = x @ weight + bias`` at one alpha (a quality head adds its
    feature statistics and label scale to this: :class:`shamisa_bench.iqa.head.QualityHead`).

    Attributes:
        weight: shape ``(D,)``.
        bias: intercept.
        alpha: the regularisation it was fit with.
    """

    weight: NDArray[np.floating]
    bias: float
    alpha: float

    def __post_init__(self) -> None:
        if np.asarray(self.weight).ndim != 1:
            raise ValueError(f"weight must have shape (D,), got {np.asarray(self.weight).shape}")
        if not math.isfinite(self.bias):
            raise ValueError(f"bias must be finite, got {self.bias}")

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(np.asarray(self.weight).shape[0])

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predict quality for features of shape ``(m, D)`` (or ``(D,)``); returns ``(m,)``."""
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim == 1:
            Xa = Xa[None, :]
        if Xa.ndim != 2 or Xa.shape[1] != self.dim:
            raise ValueError(f"features must have shape (m, {self.dim}), got {Xa.shape}")
        return Xa @ np.asarray(self.weight, dtype=np.float64) + float(self.bias)


def fit_ridge(
    X: ArrayLike,
    y: ArrayLike,
    alpha: float,
    *,
    standardize: bool = False,
    dtype: type[np.floating] | np.dtype = np.float64,
) -> RidgeFit:
    """Fit one alpha (see :func:`fit_ridge_path`) and return it as a :class:`RidgeFit`."""
    W, b = fit_ridge_path(X, y, [alpha], standardize=standardize, dtype=dtype)
    return RidgeFit(weight=W[0], bias=float(b[0]), alpha=float(alpha))


def _splits_for_bench(n: int, n_splits: int, seed: int) -> list[tuple[NDArray, NDArray]]:
    rng = np.random.default_rng(seed)
    items = np.arange(n)  # one group per item
    counts = (round(0.7 * n), round(0.1 * n))
    return [tuple(permuted_group_parts(items, n, counts, rng)[:2]) for _ in range(n_splits)]


def bench_ridge(
    n: int = 10_000,
    d: int = 4096,
    n_splits: int = 10,
    n_alphas: int = 25,
    *,
    dtype: str = "float32",
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, object]:
    """Time alpha selection as the intra protocol does it, on random features.

    For each of ``n_splits`` random 70/10/20 splits: fit the whole alpha path on the train
    part, predict the validation part for every alpha and take its SRCC; then pick the
    alpha by median validation SRCC. Generating the data is not timed.

    Returns:
        a JSON-ready dict with the timings and the settings.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    X = rng.standard_normal((n, d), dtype=np.float32).astype(dt, copy=False)
    w_true = rng.standard_normal(d).astype(dt) / math.sqrt(d)
    y = X @ w_true + 0.5 * rng.standard_normal(n).astype(dt)
    alphas = geometric_alphas(1e-3, 1e3, n_alphas)
    splits = _splits_for_bench(n, n_splits, seed)
    per_split: list[float] = []
    val = np.empty((n_splits, n_alphas))
    t0 = time.perf_counter()
    for k, (tr, va) in enumerate(splits):
        ts = time.perf_counter()
        W, b = fit_ridge_path(X[tr], y[tr], alphas, dtype=dt)
        val[k] = srcc_many(predict_path(X[va], W, b), y[va])
        per_split.append(time.perf_counter() - ts)
    idx, alpha, _ = select_alpha_by_val(val, alphas)
    total = time.perf_counter() - t0
    return {
        "target": "ridge",
        "n": n,
        "d": d,
        "n_train": int(splits[0][0].size),
        "n_splits": n_splits,
        "n_alphas": n_alphas,
        "dtype": str(dt),
        "method": "primal eigh" if int(splits[0][0].size) > d else "dual eigh",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "total_s": round(total, 4),
        "per_split_s": round(float(np.median(per_split)), 4),
        "chosen_alpha": alpha,
        "chosen_index": idx,
    }
