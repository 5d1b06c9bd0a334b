"""SHAMISA quality heads: the ridge regressor on frozen two-scale features, its file format and its fit.

A head maps the two-scale feature ``f`` of an image crop (``[h(x), h(x at 0.5)]``, 2 * D
wide, see :func:`shamisa_bench.model.encode_two_scale`) to a MOS prediction::

    mos = ((f - feature_mean) / feature_std) @ weight + bias

and, for the ``crops5`` feature mode, the five crop predictions of an image are averaged.
The pyiqa metric then maps the MOS to [0, 1], higher-better, with the head's
``mos_range`` and ``lower_better`` (:func:`scale_mos`).

File format (``torch.save`` of a plain dict; read with ``torch.load(weights_only=True)``,
so no pickled objects, no TorchScript):

================  ==========================================================
key               value
================  ==========================================================
format_version    int, :data:`HEAD_FORMAT_VERSION`
kind              ``"shamisa_head"``
weight            float32 tensor (1, F): ``nn.Linear`` layout, standardised space
bias              float32 tensor (1,)
feature_mean      float32 tensor (F,)
feature_std       float32 tensor (F,) (all ones unless fit with ``standardize``; a
                  ``multilevel`` head always is)
mos_range         float64 tensor (2,): (lo, hi) of the training labels' scale
lower_better      bool: True when a lower label means better quality (DMOS)
dataset           str: the training set (registry name, or a CSV's name)
protocol          str: the feature mode, ``whole``, ``crops5`` or ``multilevel``, the features it was fit
                  on (:attr:`QualityHead.feature_mode`; the key keeps its format-1 name)
crop_size         int: crop side of ``crops5``
min_size          int: images are zero-padded to at least this side first
alpha             float: ridge strength, chosen on validation splits
n_train           int: images in the final fit
n_splits          int: validation splits used to choose alpha
val_srcc          float or None: median validation SRCC at the chosen alpha
standardize       bool: whether features were scaled to unit variance
encoder_sha256    str or None: ``weights_sha256`` of the encoder export
backbone          str: backbone of that encoder
package_version   str: shamisa-bench version that wrote the file
================  ==========================================================

Input preprocessing shared by fitting and the metric (:func:`prepare_images`): 1-channel
images are repeated to RGB, a 4th (alpha) channel is dropped (as PIL's
``convert("RGB")`` does), and a side shorter than ``min_size`` (224 by default) is
zero-padded at the bottom/right, the convention of the pretraining crops and of the
``crops5`` feature mode. Padding is preferred over upscaling because upscaling would add blur,
itself a quality distortion, while black borders are what the encoder saw in training.
Images with a side under :data:`MIN_IMAGE_SIDE` (32) are refused, and images whose longer
side exceeds :data:`MAX_SIDE` (1024) are downscaled to it first (bounded memory; images up
to 1024 px are untouched).

Alpha selection follows the paper's protocol: a geometric grid (default 100 values in
[1e-3, 1e3], ARNIQA's), the median validation SRCC over ``n_splits`` random
(reference-disjoint when groups are given) train/validation splits; the validation part is
``val_fraction`` = 1/8 of the images (the 70/10 train/val ratio of the evaluation protocol,
with no test part because a shipped head uses every labelled image). The head is then refit
on all images with the chosen alpha.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import nn

from shamisa_bench import __version__
from shamisa_bench.common.atomic import atomic_torch_save
from shamisa_bench.common.imageio import scaled_size
from shamisa_bench.common.scoring import srcc_many
from shamisa_bench.common.splits import permuted_group_parts
from shamisa_bench.iqa.ridge import (
    fit_ridge_path,
    geometric_alphas,
    predict_path,
    select_alpha_by_val,
)
from shamisa_bench.model.features import STANDARDIZED_MODES, check_feature_mode, encode_two_scale

__all__ = [
    "DEFAULT_MIN_SIZE",
    "HEAD_FORMAT_VERSION",
    "MAX_SIDE",
    "MIN_IMAGE_SIDE",
    "FitConfig",
    "HeadError",
    "check_fit_inputs",
    "QualityHead",
    "QualityHeadModule",
    "extract_features",
    "fit_head",
    "head_features",
    "load_head",
    "prepare_images",
    "save_head",
    "scale_mos",
    "select_alpha",
    "validation_splits",
]

HEAD_FORMAT_VERSION = 1
DEFAULT_MIN_SIZE = 224
"""Images with a side shorter than this are zero-padded (bottom/right) before encoding."""

MIN_IMAGE_SIDE = 32
"""Images with a side shorter than this are refused: too few pixels to rate (a 1x1 image
padded to 224 would get a score that means nothing)."""

MAX_SIDE = 1024
"""Images whose longer side exceeds this are downscaled (bilinear, antialiased, aspect kept)
until it equals this, before encoding: feature memory then stays bounded (it grows with
the pixel count otherwise), and every image up to this side scores exactly as before."""

_HEAD_KIND = "shamisa_head"


class HeadError(ValueError):
    """A head file is missing, not a SHAMISA head, malformed, or does not fit its encoder."""


# --------------------------------------------------------------------------------------
# The head
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QualityHead:
    """A fitted ridge head plus everything needed to use it correctly.

    Attributes:
        weight: (F,) float32, acting on standardised features.
        bias: Intercept.
        feature_mean: (F,) float32.
        feature_std: (F,) float32, positive.
        mos_range: (lo, hi) of the label scale, lo < hi.
        lower_better: True when lower labels mean better quality.
        dataset: Training-set name.
        feature_mode: ``"whole"``, ``"crops5"`` or ``"multilevel"``, the features it was fit on.
        crop_size: Crop side for ``crops5``.
        min_size: Padding target for small images (see :func:`prepare_images`).
        alpha: Ridge strength.
        n_train: Images in the final fit.
        n_splits: Validation splits used to choose alpha (0 if alpha was given).
        val_srcc: Median validation SRCC at ``alpha``, or None.
        standardize: Whether ``feature_std`` holds real standard deviations (always for
            ``multilevel``, whose raw stage statistics differ in scale by orders of magnitude).
        encoder_sha256: The encoder export's ``weights_sha256``, or None (no check).
        backbone: Backbone name of that encoder.
        package_version: Version of shamisa-bench that wrote the head.
    """

    weight: torch.Tensor
    bias: float
    feature_mean: torch.Tensor
    feature_std: torch.Tensor
    mos_range: tuple[float, float]
    lower_better: bool
    dataset: str
    feature_mode: str
    crop_size: int = 224
    min_size: int = DEFAULT_MIN_SIZE
    alpha: float = 1.0
    n_train: int = 0
    n_splits: int = 0
    val_srcc: float | None = None
    standardize: bool = False
    encoder_sha256: str | None = None
    backbone: str = ""
    package_version: str = field(default="")

    def __post_init__(self) -> None:
        for name in ("weight", "feature_mean", "feature_std"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.dim() != 1 or not value.is_floating_point():
                raise ValueError(f"{name} must be a 1-D float tensor, got {_describe(value)}")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} must be finite")
        dim = self.weight.shape[0]
        if self.feature_mean.shape[0] != dim or self.feature_std.shape[0] != dim:
            raise ValueError(
                f"weight ({dim}), feature_mean ({self.feature_mean.shape[0]}) and feature_std "
                f"({self.feature_std.shape[0]}) must have the same length"
            )
        if not bool((self.feature_std > 0).all()):
            raise ValueError("feature_std must be positive")
        if not math.isfinite(self.bias):
            raise ValueError(f"bias must be finite, got {self.bias}")
        lo, hi = self.mos_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"mos_range must be finite with lo < hi, got {self.mos_range}")
        check_feature_mode(self.feature_mode)
        if self.feature_mode in STANDARDIZED_MODES and not self.standardize:
            raise ValueError(f"a {self.feature_mode!r} head must standardise its features (standardize=True)")
        for name in ("crop_size", "min_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 64:
                raise ValueError(f"{name} must be an int >= 64, got {value!r}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be finite and positive, got {self.alpha}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}")

    @property
    def dim(self) -> int:
        """Feature width F (= 2 * D of the encoder)."""
        return int(self.weight.shape[0])

    def predict(self, features: ArrayLike | torch.Tensor) -> NDArray[np.float64]:
        """Predicted MOS of images from their features (NumPy, no autograd).

        Args:
            features: (N, K, F) (K crops per image, averaged) or (N, F).

        Returns:
            (N,) float64 MOS predictions.
        """
        x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"features must have shape (N, K, {self.dim}) or (N, {self.dim}), got {x.shape}")
        mean = self.feature_mean.double().numpy()
        std = self.feature_std.double().numpy()
        pred = ((x - mean) / std) @ self.weight.double().numpy() + self.bias
        return pred.mean(axis=1)

    def to_state_dict(self) -> dict[str, Any]:
        """The plain dict written by :func:`save_head` (tensors, str, int, float, bool, None)."""
        return {
            "format_version": HEAD_FORMAT_VERSION,
            "kind": _HEAD_KIND,
            "weight": self.weight.detach().cpu().float().reshape(1, -1).contiguous().clone(),
            "bias": torch.tensor([self.bias], dtype=torch.float32),
            "feature_mean": self.feature_mean.detach().cpu().float().contiguous().clone(),
            "feature_std": self.feature_std.detach().cpu().float().contiguous().clone(),
            "mos_range": torch.tensor(self.mos_range, dtype=torch.float64),
            "lower_better": bool(self.lower_better),
            "dataset": self.dataset,
            "protocol": self.feature_mode,  # the feature mode, under its format-1 key
            "crop_size": int(self.crop_size),
            "min_size": int(self.min_size),
            "alpha": float(self.alpha),
            "n_train": int(self.n_train),
            "n_splits": int(self.n_splits),
            "val_srcc": None if self.val_srcc is None else float(self.val_srcc),
            "standardize": bool(self.standardize),
            "encoder_sha256": self.encoder_sha256,
            "backbone": self.backbone,
            "package_version": self.package_version or __version__,
        }

    @classmethod
    def from_state_dict(cls, state: Any, source: str = "head") -> QualityHead:
        """Validate a dict read from a head file and build the head.

        Raises:
            HeadError: Missing or mistyped keys, wrong kind or format version, bad shapes.
        """
        if not isinstance(state, dict):
            raise HeadError(f"{source}: expected a dict, got {type(state).__name__}")
        if state.get("kind") == "shamisa_fr_head":  # written by fit-head --fr (shamisa_bench.iqa.fr)
            raise HeadError(f"{source}: is a full-reference head (fit-head --fr); use it with "
                            "pyiqa.create_metric('shamisa-fr', head_path=...), not with a no-reference metric")
        if state.get("kind") != _HEAD_KIND:
            raise HeadError(f"{source}: not a SHAMISA head (kind {state.get('kind')!r}, expected {_HEAD_KIND!r})")
        if state.get("format_version") != HEAD_FORMAT_VERSION:
            raise HeadError(
                f"{source}: unsupported format_version {state.get('format_version')!r} "
                f"(this shamisa-bench reads {HEAD_FORMAT_VERSION})"
            )

        def get(name: str, kinds: type | tuple[type, ...], optional: bool = False) -> Any:
            if name not in state:
                raise HeadError(f"{source}: missing key {name!r}")
            value = state[name]
            if value is None and optional:
                return None
            if not isinstance(value, kinds) or (kinds in (int, float) and isinstance(value, bool)):
                raise HeadError(f"{source}: key {name!r} has the wrong type ({type(value).__name__})")
            return value

        weight = get("weight", torch.Tensor)
        bias = get("bias", torch.Tensor)
        mos_range = get("mos_range", torch.Tensor)
        if weight.dim() != 2 or weight.shape[0] != 1:
            raise HeadError(f"{source}: weight must have shape (1, F), got {tuple(weight.shape)}")
        if bias.numel() != 1:
            raise HeadError(f"{source}: bias must have one value, got {tuple(bias.shape)}")
        if mos_range.numel() != 2:
            raise HeadError(f"{source}: mos_range must have two values, got {tuple(mos_range.shape)}")
        alpha = get("alpha", (int, float))
        val_srcc = get("val_srcc", (int, float), optional=True)
        try:
            return cls(
                weight=weight.reshape(-1).float(),
                bias=float(bias.reshape(-1)[0]),
                feature_mean=get("feature_mean", torch.Tensor).float(),
                feature_std=get("feature_std", torch.Tensor).float(),
                mos_range=(float(mos_range[0]), float(mos_range[1])),
                lower_better=get("lower_better", bool),
                dataset=get("dataset", str),
                feature_mode=get("protocol", str),
                crop_size=get("crop_size", int),
                min_size=get("min_size", int),
                alpha=float(alpha),
                n_train=get("n_train", int),
                n_splits=get("n_splits", int),
                val_srcc=None if val_srcc is None else float(val_srcc),
                standardize=get("standardize", bool),
                encoder_sha256=get("encoder_sha256", str, optional=True),
                backbone=get("backbone", str),
                package_version=get("package_version", str),
            )
        except ValueError as err:
            if isinstance(err, HeadError):
                raise
            raise HeadError(f"{source}: {err}") from err


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def save_head(head: QualityHead, path: str | os.PathLike[str]) -> Path:
    """Write a head file atomically (temp file in the same folder, then rename).

    Args:
        head: The head.
        path: Destination file (conventionally ``*.pt``); its folder is created.

    Returns:
        The path written.
    """
    if not isinstance(head, QualityHead):
        raise TypeError(f"head must be a QualityHead, got {type(head).__name__}")
    return atomic_torch_save(head.to_state_dict(), path)


def load_head(path: str | os.PathLike[str]) -> QualityHead:
    """Read a head file with ``torch.load(weights_only=True)`` and validate it.

    Raises:
        HeadError: The file is missing, is not loadable without unpickling arbitrary
            objects (``weights_only``), or is not a valid SHAMISA head. The message names
            the file.
    """
    file = Path(path)
    if file.is_dir():
        raise HeadError(f"{file}: is a folder; a head is one .pt file written by shamisa-bench fit-head")
    if not file.is_file():
        raise HeadError(f"{file}: no such head file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HeadError(
            f"{file}: not a SHAMISA head (it cannot be read as plain tensors and values with "
            f"torch.load(weights_only=True): {first})"
        ) from err
    return QualityHead.from_state_dict(state, source=str(file))


class QualityHeadModule(nn.Module):
    """A :class:`QualityHead` as a frozen module (buffers follow ``.to()``).

    ``forward`` maps features (N, K, F) to per-image MOS (N,), averaging the K crops, and
    is differentiable with respect to the features.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, head: QualityHead) -> None:
        super().__init__()
        self.linear = nn.Linear(head.dim, 1)
        with torch.no_grad():
            self.linear.weight.copy_(head.weight.reshape(1, -1))
            self.linear.bias.fill_(head.bias)
        self.linear.requires_grad_(False)
        self.register_buffer("feature_mean", head.feature_mean.clone().float())
        self.register_buffer("feature_std", head.feature_std.clone().float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (N, K, F). Returns: (N,) MOS predictions, crops averaged."""
        if features.dim() != 3 or features.shape[-1] != self.linear.in_features:
            raise ValueError(f"features must have shape (N, K, {self.linear.in_features}), got {tuple(features.shape)}")
        z = (features - self.feature_mean) / self.feature_std
        return self.linear(z).squeeze(-1).mean(dim=1)


def scale_mos(mos: torch.Tensor, mos_range: tuple[float, float], lower_better: bool) -> torch.Tensor:
    """Map MOS predictions to [0, 1], higher-better.

    ``s = (mos - lo) / (hi - lo)``, then ``1 - s`` when ``lower_better``, then clipped to
    [0, 1]. The clip is straight-through for gradients (its value is clipped, its gradient
    is the identity's), so ``as_loss`` keeps a signal for predictions outside the range.

    Args:
        mos: Any shape.
        mos_range: (lo, hi), lo < hi.
        lower_better: Label direction.

    Returns:
        Tensor of the same shape in [0, 1].
    """
    lo, hi = float(mos_range[0]), float(mos_range[1])
    if not hi > lo:
        raise ValueError(f"mos_range must have lo < hi, got {mos_range}")
    s = (mos - lo) / (hi - lo)
    if lower_better:
        s = 1.0 - s
    return s + (s.clamp(0.0, 1.0) - s).detach()


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


def prepare_images(x: torch.Tensor, min_size: int = DEFAULT_MIN_SIZE, max_side: int | None = MAX_SIDE) -> torch.Tensor:
    """Bring images to the encoder's contract: RGB, float, sides in [``min_size``, ``max_side``].

    Args:
        x: (N, C, H, W) or (C, H, W) float in [0, 1] with C = 1 (grey, repeated), 3 (RGB)
            or 4 (RGBA; alpha dropped); both sides at least :data:`MIN_IMAGE_SIDE`.
        min_size: Sides shorter than this are zero-padded at the bottom/right.
        max_side: When the longer side exceeds this, the images are first downscaled
            (bilinear, antialiased, aspect ratio kept, clamped to [0, 1]) so that it equals
            this; None = never. Images up to ``max_side`` are left exactly as they are.

    Returns:
        (N, 3, max(H', min_size), max(W', min_size)), same dtype, (H', W') the size after
        any downscaling; differentiable.

    Raises:
        TypeError: Not a floating-point tensor.
        ValueError: Wrong number of dimensions or channels, or a side shorter than
            :data:`MIN_IMAGE_SIDE` (before or after downscaling).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor in [0, 1], got dtype {x.dtype} (divide uint8 by 255)")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    channels = x.shape[1]
    if channels == 1:
        x = x.expand(-1, 3, -1, -1)
    elif channels == 4:
        x = x[:, :3]
    elif channels != 3:
        raise ValueError(f"images must have 1, 3 or 4 channels, got {channels} (shape {tuple(x.shape)})")
    height, width = x.shape[2], x.shape[3]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image is {height}x{width} pixels; SHAMISA needs at least {MIN_IMAGE_SIDE} pixels on each side "
            "(smaller images are refused rather than padded into a meaningless score)"
        )
    if max_side is not None and max(height, width) > max_side:
        size = scaled_size(height, width, max_side)
        if min(size) < MIN_IMAGE_SIDE:
            raise ValueError(
                f"image is {height}x{width} pixels: downscaled to at most {max_side} pixels on the longer side "
                f"it would be {size[0]}x{size[1]}, under {MIN_IMAGE_SIDE} on a side (aspect ratio too extreme)"
            )
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    pad_h, pad_w = max(min_size - x.shape[2], 0), max(min_size - x.shape[3], 0)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=0.0)
    return x


def head_features(
    encoder: nn.Module,
    x: torch.Tensor,
    feature_mode: str = "whole",
    crop_size: int = 224,
    min_size: int = DEFAULT_MIN_SIZE,
) -> torch.Tensor:
    """Features a head consumes: :func:`prepare_images`, then the two-scale encoder features.

    Args:
        encoder: An encoder in eval mode (see :class:`shamisa_bench.model.Encoder`).
        x: Images, see :func:`prepare_images`.
        feature_mode: ``"whole"``, ``"crops5"`` or ``"multilevel"``.
        crop_size: Crop side for ``crops5``.
        min_size: Padding target.

    Returns:
        (N, K, F), K = 5 for crops5 and 1 otherwise (see :func:`encode_two_scale`).
    """
    return encode_two_scale(encoder, prepare_images(x, min_size), feature_mode=feature_mode, crop_size=crop_size)


def extract_features(
    encoder: nn.Module,
    images: Sequence[torch.Tensor] | Any,
    *,
    feature_mode: str = "whole",
    crop_size: int = 224,
    min_size: int = DEFAULT_MIN_SIZE,
    device: str | torch.device = "cpu",
) -> NDArray[np.float32]:
    """Features of a sequence of images of any sizes, one image at a time, without autograd.

    Args:
        encoder: Encoder (moved to ``device`` by the caller), eval mode.
        images: Iterable of (C, H, W) or (1, C, H, W) float tensors in [0, 1].
        feature_mode, crop_size, min_size: See :func:`head_features`.
        device: Where to run the encoder.

    Returns:
        (N, K, 2 * D) float32.
    """
    out: list[NDArray[np.float32]] = []
    with torch.inference_mode():
        for image in images:
            feats = head_features(encoder, image.to(device), feature_mode, crop_size, min_size)
            out.append(feats.float().cpu().numpy())
    if not out:
        raise ValueError("no images to extract features from")
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit_head` chooses alpha.

    Attributes:
        alphas: The grid; None = 100 geometric values in [1e-3, 1e3] (ARNIQA's).
        n_splits: Random train/validation splits (median validation SRCC over them).
        val_fraction: Share of images (or reference groups) in each validation part.
        seed: Seed of the splits (``np.random.default_rng``).
        standardize: Scale features to unit variance before the ridge fit (off by default:
            the L2-normalised features and ARNIQA's alpha grid are used as they are;
            :func:`fit_head` turns it on for the ``multilevel`` feature mode).
    """

    alphas: tuple[float, ...] | None = None
    n_splits: int = 10
    val_fraction: float = 0.125
    seed: int = 0
    standardize: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.n_splits, int) or isinstance(self.n_splits, bool) or self.n_splits < 1:
            raise ValueError(f"n_splits must be a positive int, got {self.n_splits!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.alphas is not None and (
            len(self.alphas) == 0 or not all(math.isfinite(a) and a > 0 for a in self.alphas)
        ):
            raise ValueError(f"alphas must be a non-empty tuple of positive numbers, got {self.alphas}")

    def alpha_grid(self) -> NDArray[np.float64]:
        """The alphas to try, (A,)."""
        if self.alphas is None:
            return geometric_alphas(1e-3, 1e3, 100)
        return np.asarray(self.alphas, dtype=np.float64)


def validation_splits(
    n: int,
    n_splits: int,
    val_fraction: float,
    seed: int,
    groups: Sequence[Hashable] | None = None,
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Random train/validation index splits, group-disjoint when ``groups`` is given.

    Args:
        n: Number of images.
        n_splits: Number of splits.
        val_fraction: Share of groups (images when ``groups`` is None) in validation,
            rounded, at least one group, and at least one group left for training.
        seed: ``np.random.default_rng`` seed; same seed, same splits.
        groups: (n,) reference key per image (synthetic datasets), or None.

    Returns:
        ``n_splits`` pairs ``(train_idx, val_idx)`` of sorted image indices.

    Raises:
        ValueError: Fewer than two groups, or ``groups`` of the wrong length.
    """
    keys = list(range(n)) if groups is None else list(groups)
    if len(keys) != n:
        raise ValueError(f"groups has {len(keys)} entries for {n} images")
    unique = sorted(set(keys), key=repr)
    if len(unique) < 2:
        raise ValueError(f"need at least 2 images/reference groups to make validation splits, got {len(unique)}")
    code = {key: i for i, key in enumerate(unique)}
    group_of = np.array([code[key] for key in keys], dtype=np.int64)
    n_val = min(max(round(val_fraction * len(unique)), 1), len(unique) - 1)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(n_splits):
        val, train = permuted_group_parts(group_of, len(unique), (n_val,), rng)
        splits.append((train, val))
    return splits


def _feature_stats(rows: NDArray[np.float64], standardize: bool) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    mean = rows.mean(axis=0)
    if not standardize:
        return mean, np.ones_like(mean)
    std = np.sqrt(((rows - mean) ** 2).mean(axis=0))
    std[~(std > np.finfo(np.float64).tiny * 1e3)] = 1.0  # as shamisa_bench.iqa.ridge does
    return mean, std


def select_alpha(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    config: FitConfig = FitConfig(),
    groups: Sequence[Hashable] | None = None,
) -> tuple[int, float, NDArray[np.float64], int]:
    """Ridge alpha by median validation SRCC over random train/validation splits.

    For each split the whole alpha path is fit on the training images' crop rows (MOS
    repeated for each crop) and the validation images are predicted (crop predictions
    averaged) and scored by SRCC.

    Args:
        x: (N, K, F) features, finite.
        y: (N,) labels, finite.
        config: alpha grid and splits.
        groups: (N,) reference keys for group-disjoint splits, or None.

    Returns:
        ``(index, alpha, medians, n_splits)``: the chosen alpha's index and value, the median
        validation SRCC of every alpha, shape (A,), and the number of splits.

    Raises:
        ValueError: no split could be scored.
    """
    n, k, dim = x.shape
    alphas = config.alpha_grid()
    splits = validation_splits(n, config.n_splits, config.val_fraction, config.seed, groups)
    val_srcc = np.full((len(splits), alphas.size), np.nan)
    for s, (tr, va) in enumerate(splits):
        if tr.size < 2 or va.size < 2:
            continue  # too small to score: counts as NaN (worst) in the median
        weights, biases = fit_ridge_path(
            x[tr].reshape(-1, dim), np.repeat(y[tr], k), alphas, standardize=config.standardize
        )
        pred = predict_path(x[va].reshape(-1, dim), weights, biases).reshape(alphas.size, va.size, k).mean(axis=2)
        if np.ptp(y[va]) > 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                val_srcc[s] = srcc_many(pred, y[va])
    if not np.isfinite(val_srcc).any():
        raise ValueError(
            f"no validation split could be scored ({n} images, {config.n_splits} splits); "
            "use more images or a larger val_fraction"
        )
    index, alpha, medians = select_alpha_by_val(val_srcc, alphas)
    return index, alpha, medians, len(splits)


def check_fit_inputs(
    features: ArrayLike, mos: ArrayLike, feature_mode: str, *, items: str = "images", head: str = "a head"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The checks every head fit makes first: (N, K, F) or (N, F) finite features, N finite,
    not all equal labels, at least 5 items, a known feature mode.

    Args:
        features, mos: As :func:`fit_head`.
        feature_mode: The features' mode.
        items: What a row is, for messages (``images``, ``pairs``).
        head: The head being fit, for messages.

    Returns:
        ``(x, y)``: features (N, K, F) and labels (N,), float64.

    Raises:
        ValueError: Bad shapes, non-finite values, too few items, constant labels.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3:
        raise ValueError(f"features must have shape (N, K, F) or (N, F), got {x.shape}")
    y = np.asarray(mos, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    if y.size != n:
        raise ValueError(f"features have {n} {items} but mos has {y.size} values")
    if n < 5:
        raise ValueError(f"fitting {head} needs at least 5 labelled {items}, got {n}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("features and mos must be finite")
    if np.ptp(y) == 0:
        raise ValueError("all mos values are equal; a quality head cannot be fit")
    check_feature_mode(feature_mode)
    return x, y


def fit_head(
    features: ArrayLike,
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
) -> QualityHead:
    """Fit a ridge head, alpha chosen by median validation SRCC.

    For each split the whole alpha path is fit on the training images' crop rows (MOS
    repeated for each crop), the validation images are predicted (crop predictions
    averaged) and their SRCC taken; the alpha with the best median SRCC wins, and the head
    is refit on every image with it.

    Args:
        features: (N, K, F) two-scale features (K = 5 for crops5, 1 otherwise), or (N, F).
        mos: (N,) labels, finite.
        mos_range: (lo, hi) of the label scale (for the [0, 1] mapping).
        lower_better: True for DMOS-like labels.
        dataset: Training-set name recorded in the head.
        feature_mode: Feature mode the features were extracted with.
        crop_size, min_size: Preprocessing the features were extracted with.
        encoder_sha256, backbone: Identity of the encoder, recorded for checking.
        groups: (N,) reference keys for reference-disjoint splits, or None (random).
        config: Alpha grid and splits. ``standardize`` is forced on for the modes of
            :data:`~shamisa_bench.model.features.STANDARDIZED_MODES` (``multilevel``).

    Returns:
        The fitted :class:`QualityHead`.

    Raises:
        ValueError: Bad shapes, non-finite values, too few images, constant labels.
    """
    x, y = check_fit_inputs(features, mos, feature_mode)
    n, k, dim = x.shape
    if feature_mode in STANDARDIZED_MODES and not config.standardize:
        config = replace(config, standardize=True)

    index, alpha, medians, n_splits = select_alpha(x, y, config, groups)

    rows = x.reshape(-1, dim)
    weights, biases = fit_ridge_path(rows, np.repeat(y, k), [alpha], standardize=config.standardize)
    w_raw, b_raw = weights[0].astype(np.float64), float(biases[0])
    mean, std = _feature_stats(rows, config.standardize)
    # Same predictions, stored in standardised space: ((f - mean) / std) @ (w * std) + b + mean @ w.
    return QualityHead(
        weight=torch.from_numpy(w_raw * std).float(),
        bias=b_raw + float(mean @ w_raw),
        feature_mean=torch.from_numpy(mean).float(),
        feature_std=torch.from_numpy(std).float(),
        mos_range=(float(mos_range[0]), float(mos_range[1])),
        lower_better=bool(lower_better),
        dataset=dataset,
        feature_mode=feature_mode,
        crop_size=int(crop_size),
        min_size=int(min_size),
        alpha=float(alpha),
        n_train=int(n),
        n_splits=n_splits,
        val_srcc=float(medians[index]) if math.isfinite(medians[index]) else None,
        standardize=config.standardize,
        encoder_sha256=encoder_sha256,
        backbone=backbone,
    )
