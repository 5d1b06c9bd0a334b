"""SHAMISA's full-reference extension: pair features, the feature distance, the FR head.

The frozen encoder reads the distorted image and its reference at full and x0.5 scale
(:func:`shamisa_bench.iqa.head.head_features`, so every feature mode works: ``whole``,
``crops5``, ...). For a pair the feature vector is the element-wise absolute difference::

    u = |f(ref) - f(dist)|          (N, K, F), the same width as the NR features

Two ways to turn it into a score:

* **Feature distance** (no head; what runs offline, since no human full-reference labels
  ship): each scale's feature vector (the first and second half of ``f``) is L2-normalised,
  and ``d_s = ||a_s - b_s||^2 / 4 = (1 - cos(a_s, b_s)) / 2`` in [0, 1]; the distance is
  the mean of ``d_s`` over the two scales (and over the crops of ``crops5``). 0 means the
  encoder sees no difference, 1 means opposite features; **lower is better**. An identical
  pair gives 0 exactly (the two feature vectors are bitwise equal, see :func:`encode_pair`).
* **FR head** (``shamisa-bench fit-head --fr``): a ridge regression through the reference
  point, ``mos = best + w . (u / s)`` with ``best`` the best end of the label scale and
  ``s`` the features' root mean square (only for feature modes whose features need
  standardising; 1 otherwise). It has no intercept, so a pair with ``u = 0`` (an identical
  pair) predicts the best label exactly. Alpha is chosen by median validation SRCC over
  reference-disjoint splits, as for the NR head.

FR heads use the NR head file format (:mod:`shamisa_bench.iqa.head`) with ``kind``
``"shamisa_fr_head"`` instead of ``"shamisa_head"``: :func:`load_fr_head` refuses an NR
head and :func:`shamisa_bench.iqa.head.load_head` an FR head, each with a message that
says which metric takes it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import nn

from shamisa_bench.common.atomic import atomic_torch_save
from shamisa_bench.common.imageio import load_image
from shamisa_bench.common.scoring import srcc_many
from shamisa_bench.iqa.head import (
    DEFAULT_MIN_SIZE,
    MAX_SIDE,
    FitConfig,
    HeadError,
    QualityHead,
    check_fit_inputs,
    head_features,
    validation_splits,
)
from shamisa_bench.iqa.ridge import select_alpha_by_val
from shamisa_bench.model.features import STANDARDIZED_MODES

__all__ = [
    "FR_HEAD_KIND",
    "NR_HEAD_KIND",
    "check_pair",
    "encode_pair",
    "extract_pair_features",
    "feature_distance",
    "fit_anchored_path",
    "fit_fr_head",
    "load_fr_head",
    "pair_difference",
    "save_fr_head",
]

FR_HEAD_KIND = "shamisa_fr_head"
"""``kind`` of a full-reference head file."""

NR_HEAD_KIND = "shamisa_head"
"""``kind`` of a no-reference head file (:mod:`shamisa_bench.iqa.head`)."""


def check_pair(dist: Any, ref: Any) -> None:
    """Refuse a pair that is not two image batches of one size.

    Full-reference scores compare pixel-aligned images: a reference of another size is
    refused, never resized silently. Channel counts may differ (grey is repeated to RGB).

    Raises:
        TypeError: Either is not a tensor.
        ValueError: Different numbers of images, or different heights or widths.
    """
    for label, x in (("distorted image", dist), ("reference", ref)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{label} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if dist.shape[0] != ref.shape[0]:
        raise ValueError(f"{dist.shape[0]} distorted image(s) but {ref.shape[0]} reference(s); give one reference per image")
    if dist.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"the distorted image is {dist.shape[-2]}x{dist.shape[-1]} pixels but its reference is "
            f"{ref.shape[-2]}x{ref.shape[-1]}; a full-reference score needs a pixel-aligned pair of one "
            "size (crop or resize one of them first)"
        )


def encode_pair(
    encoder: nn.Module,
    dist: torch.Tensor,
    ref: torch.Tensor,
    feature_mode: str = "whole",
    crop_size: int = 224,
    min_size: int = DEFAULT_MIN_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-scale features of the distorted images and of their references.

    Two separate passes on batches of the same shape (not one batch of 2N), so that a
    reference identical to its distorted image gets bitwise the same features (the same
    computation on the same values) and ``u = 0`` exactly.

    Args:
        encoder: Frozen encoder in eval mode.
        dist, ref: (N, C, H, W) float in [0, 1], of one size (:func:`check_pair`).
        feature_mode, crop_size, min_size: As :func:`shamisa_bench.iqa.head.head_features`.

    Returns:
        ``(f_dist, f_ref)``, each (N, K, F).
    """
    check_pair(dist, ref)
    f_dist = head_features(encoder, dist, feature_mode, crop_size, min_size)
    f_ref = head_features(encoder, ref, feature_mode, crop_size, min_size)
    return f_dist, f_ref


def pair_difference(f_dist: torch.Tensor, f_ref: torch.Tensor) -> torch.Tensor:
    """The pair feature ``u = |f_ref - f_dist|`` (same shape as the inputs)."""
    if f_dist.shape != f_ref.shape:
        raise ValueError(f"feature shapes differ: {tuple(f_dist.shape)} and {tuple(f_ref.shape)}")
    return (f_ref - f_dist).abs()


def feature_distance(f_dist: torch.Tensor, f_ref: torch.Tensor) -> torch.Tensor:
    """The documented feature distance in [0, 1] (lower is better; identical features give 0).

    Args:
        f_dist, f_ref: (N, K, F) two-scale features, F even (``[scale 1, scale 0.5]``).

    Returns:
        (N,) mean over the two scales and the K crops of ``(1 - cos) / 2``, computed as
        ``||a - b||^2 / 4`` on the L2-normalised halves (so equal features give exactly 0).
    """
    if f_dist.shape != f_ref.shape or f_dist.dim() != 3 or f_dist.shape[-1] % 2:
        raise ValueError(f"features must be two (N, K, F) tensors of one shape, F even; got "
                         f"{tuple(f_dist.shape)} and {tuple(f_ref.shape)}")
    n, k, width = f_dist.shape
    a = F.normalize(f_dist.reshape(n, k, 2, width // 2), p=2, dim=-1, eps=1e-12)
    b = F.normalize(f_ref.reshape(n, k, 2, width // 2), p=2, dim=-1, eps=1e-12)
    d = (a - b).pow(2).sum(dim=-1) / 4.0  # (N, K, 2)
    return d.clamp(0.0, 1.0).mean(dim=(1, 2))


# --------------------------------------------------------------------------------------
# The FR head: ridge through the reference point
# --------------------------------------------------------------------------------------


def fit_anchored_path(
    x: ArrayLike, t: ArrayLike, alphas: ArrayLike
) -> NDArray[np.float64]:
    """Ridge regression without intercept for every alpha: ``t ~ x @ w``.

    Args:
        x: (n, D) features, finite.
        t: (n,) targets, finite.
        alphas: (A,) positive penalties.

    Returns:
        (A, D) weights.
    """
    xa = torch.from_numpy(np.asarray(x, dtype=np.float64))
    ta = torch.from_numpy(np.asarray(t, dtype=np.float64).reshape(-1))
    al = torch.from_numpy(np.asarray(alphas, dtype=np.float64).reshape(-1))
    n, d = xa.shape
    if ta.numel() != n:
        raise ValueError(f"x has {n} rows but t has {ta.numel()} values")
    if not (al > 0).all():
        raise ValueError("alphas must be positive")
    if n > d:
        s, v = torch.linalg.eigh(xa.T @ xa)
        c = v.T @ (xa.T @ ta)
        w = v @ (c[:, None] / (s.clamp_min(0)[:, None] + al[None, :]))
    else:
        s, u = torch.linalg.eigh(xa @ xa.T)
        r = u.T @ ta
        w = xa.T @ (u @ (r[:, None] / (s.clamp_min(0)[:, None] + al[None, :])))
    return w.T.contiguous().numpy()


def fit_fr_head(
    pair_features: ArrayLike,
    mos: ArrayLike,
    *,
    mos_range: tuple[float, float],
    lower_better: bool,
    dataset: str,
    feature_mode: str,
    crop_size: int = 224,
    min_size: int = DEFAULT_MIN_SIZE,
    encoder_sha256: str | None = None,
    backbone: str = "",
    groups: Sequence[Hashable] | None = None,
    config: FitConfig = FitConfig(),
    standardize: bool | None = None,
) -> QualityHead:
    """Fit an FR head on pair features ``u``: ``mos = best + w . (u / s)``, no intercept.

    ``best`` is the best end of ``mos_range`` (``hi``, or ``lo`` when ``lower_better``), so
    ``u = 0`` predicts it exactly. Alpha: median validation SRCC over ``config``'s splits
    (reference-disjoint when ``groups`` is given), crop predictions averaged; then refit on
    every pair.

    Args:
        pair_features: (N, K, F) or (N, F) values of ``u``, finite, non-negative.
        mos: (N,) labels.
        mos_range, lower_better, dataset, feature_mode, crop_size, min_size, encoder_sha256,
            backbone: Recorded in the head, as :func:`shamisa_bench.iqa.head.fit_head`.
        groups: (N,) reference keys, or None.
        config: Alpha grid and splits (``config.standardize`` is read when ``standardize``
            is None).
        standardize: Scale each feature by its root mean square (not centred: the anchor
            ``u = 0`` stays at 0). Always on for the feature modes of
            :data:`~shamisa_bench.model.features.STANDARDIZED_MODES`.

    Returns:
        A :class:`QualityHead` (zero ``feature_mean``); save it with :func:`save_fr_head`.

    Raises:
        ValueError: Bad shapes, non-finite values, fewer than 5 pairs, constant labels.
    """
    x, y = check_fit_inputs(pair_features, mos, feature_mode, items="pairs", head="an FR head")
    n, k, dim = x.shape
    lo, hi = float(mos_range[0]), float(mos_range[1])
    best = lo if lower_better else hi
    scale_features = (config.standardize if standardize is None else bool(standardize)) or (
        feature_mode in STANDARDIZED_MODES  # e.g. multilevel: raw statistics of very different scales
    )
    rows = x.reshape(-1, dim)
    scale = np.sqrt((rows**2).mean(axis=0)) if scale_features else np.ones(dim)
    scale[~(scale > np.finfo(np.float64).tiny * 1e3)] = 1.0
    z = x / scale
    t = y - best

    alphas = config.alpha_grid()
    splits = validation_splits(n, config.n_splits, config.val_fraction, config.seed, groups)
    val = np.full((len(splits), alphas.size), np.nan)
    for s, (tr, va) in enumerate(splits):
        if tr.size < 2 or va.size < 2 or np.ptp(y[va]) == 0:
            continue
        w = fit_anchored_path(z[tr].reshape(-1, dim), np.repeat(t[tr], k), alphas)
        pred = (z[va].reshape(-1, dim) @ w.T).T.reshape(alphas.size, va.size, k).mean(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            val[s] = srcc_many(pred, y[va])
    if not np.isfinite(val).any():
        raise ValueError(f"no validation split could be scored ({n} pairs, {config.n_splits} splits)")
    index, alpha, medians = select_alpha_by_val(val, alphas)
    weight = fit_anchored_path(z.reshape(-1, dim), np.repeat(t, k), [alpha])[0]
    return QualityHead(
        weight=torch.from_numpy(weight).float(),
        bias=best,
        feature_mean=torch.zeros(dim),
        feature_std=torch.from_numpy(scale).float(),
        mos_range=(lo, hi),
        lower_better=bool(lower_better),
        dataset=dataset,
        feature_mode=feature_mode,
        crop_size=int(crop_size),
        min_size=int(min_size),
        alpha=float(alpha),
        n_train=int(n),
        n_splits=len(splits),
        val_srcc=float(medians[index]) if math.isfinite(medians[index]) else None,
        standardize=scale_features,
        encoder_sha256=encoder_sha256,
        backbone=backbone,
    )


def save_fr_head(head: QualityHead, path: str | os.PathLike[str]) -> Path:
    """Write an FR head file atomically (the NR format with ``kind: shamisa_fr_head``)."""
    if not isinstance(head, QualityHead):
        raise TypeError(f"head must be a QualityHead, got {type(head).__name__}")
    state = head.to_state_dict()
    state["kind"] = FR_HEAD_KIND
    return atomic_torch_save(state, path)


def load_fr_head(path: str | os.PathLike[str]) -> QualityHead:
    """Read and validate an FR head file.

    Raises:
        HeadError: Missing or unreadable file, an NR head (with the metric that takes it),
            or an invalid head. The message names the file.
    """
    file = Path(path)
    if not file.is_file():
        raise HeadError(f"{file}: no such head file" + (" (it is a folder)" if file.is_dir() else ""))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HeadError(f"{file}: not a SHAMISA head (cannot be read with torch.load(weights_only=True): {first})") from err
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == NR_HEAD_KIND:
        raise HeadError(
            f"{file}: is a no-reference head (fit-head without --fr); the full-reference metric needs a head "
            "fit with `shamisa-bench fit-head --fr`. Use this one with pyiqa.create_metric('shamisa', head_path=...)"
        )
    if kind != FR_HEAD_KIND:
        raise HeadError(f"{file}: not a SHAMISA full-reference head (kind {kind!r}, expected {FR_HEAD_KIND!r})")
    return QualityHead.from_state_dict({**state, "kind": NR_HEAD_KIND}, source=str(file))


def extract_pair_features(
    encoder: nn.Module,
    images: Sequence[str | os.PathLike[str]],
    references: Sequence[str | os.PathLike[str]],
    *,
    feature_mode: str = "whole",
    crop_size: int = 224,
    min_size: int = DEFAULT_MIN_SIZE,
    device: str | torch.device = "cpu",
) -> NDArray[np.float32]:
    """Pair features ``u`` of image files and their reference files, one pair at a time.

    Both files are read by the metric's loader (:func:`shamisa_bench.common.imageio.load_image`,
    longer side at most :data:`~shamisa_bench.iqa.head.MAX_SIDE`), without autograd.

    Returns:
        (N, K, F) float32.

    Raises:
        ValueError: Different numbers of images and references, a pair of different sizes
            (both files named), or an unreadable file (named).
    """
    if len(images) != len(references):
        raise ValueError(f"{len(images)} images but {len(references)} references")
    out: list[NDArray[np.float32]] = []
    with torch.inference_mode():
        for image, ref in zip(images, references):
            x = load_image(image, max_side=MAX_SIDE).unsqueeze(0).to(device)
            r = load_image(ref, max_side=MAX_SIDE).unsqueeze(0).to(device)
            try:
                check_pair(x, r)
            except ValueError as err:
                raise ValueError(f"{image} against {ref}: {err}") from None
            f_dist, f_ref = encode_pair(encoder, x, r, feature_mode, crop_size, min_size)
            out.append(pair_difference(f_dist, f_ref).float().cpu().numpy())
    if not out:
        raise ValueError("no pairs to extract features from")
    return np.concatenate(out, axis=0)
