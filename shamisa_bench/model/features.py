"""Two-scale quality features for the frozen encoder.

The feature of an image is ``[h(full scale), h(half scale)]`` (2 * D wide). Two feature
modes (how an image's features are extracted; not to be confused with the evaluation
protocols intra/cross):

* ``"whole"``: the whole image at its native size and downscaled by 0.5 (K = 1). This
  is what CONTRIQUE and pyiqa's ARNIQA do.
* ``"crops5"``: five ``crop_size`` crops per scale, in the order of :data:`CROP_NAMES`
  (centre, top-left, top-right, bottom-left, bottom-right); crop k of the full-scale
  image is paired with crop k of the half-scale image (K = 5). This is the paper's
  reference mode: fit the regressor on crop features (score repeated), average predictions.
* ``"multilevel"``: the whole image at both scales, as ``whole``, but each scale is read
  out by :meth:`~shamisa_bench.model.backbones.Encoder.multilevel`: ``h`` followed by the
  spatial mean and standard deviation of every channel of every encoder stage (K = 1,
  ``2 * multilevel_dim`` wide: 5,696 values for EfficientNet-Lite0, 19,456 for
  ResNet-50). One forward pass per scale, as ``whole``. Not the paper's read-out: it adds
  the low- and mid-level statistics (noise, blur, blocking, contrast) that the last pooled
  vector averages away, in the spirit of multi-level spatially pooled features (Hosu et
  al., CVPR 2019; Gao et al., Pattern Recognition 2018).

Downscaling is bilinear with antialiasing (``align_corners=False``) to
``(H // 2, W // 2)``. Where an image is smaller than ``crop_size`` along a side at some
scale, it is zero-padded (black, in [0, 1] pixel space, before the encoder's
normalisation) at the bottom/right up to ``crop_size``; the five crops then coincide
along that side. Both scales must be at least 32 pixels on each side, i.e. the input at
least 64 x 64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shamisa_bench.model.backbones import MIN_INPUT_SIZE, _check_images, backbone_spec

__all__ = [
    "CROP_NAMES",
    "FEATURE_MODES",
    "SCALES",
    "STANDARDIZED_MODES",
    "check_feature_mode",
    "downscale_half",
    "encode_two_scale",
    "feature_width",
    "five_crop_boxes",
    "five_crops",
    "half_scale",
]

FEATURE_MODES: tuple[str, ...] = ("whole", "crops5", "multilevel")
"""Feature modes accepted by :func:`encode_two_scale`, the one list of them: ``whole`` (one
pass on the whole image per scale), ``crops5`` (five crops per scale) or ``multilevel``
(one pass per scale, every stage's channel statistics next to ``h``)."""

STANDARDIZED_MODES: frozenset[str] = frozenset({"multilevel"})
"""Feature modes whose features differ in scale (raw stage statistics next to the unit-norm
``h``): a ridge head on them always standardises each feature."""

SCALES: tuple[float, ...] = (1.0, 0.5)
"""Image scales whose features are concatenated, in order."""

CROP_NAMES: tuple[str, ...] = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
"""Order of the crops of the ``crops5`` feature mode."""


def check_feature_mode(feature_mode: object) -> str:
    """Return ``feature_mode`` if it is one of :data:`FEATURE_MODES`.

    Args:
        feature_mode: The value to check.

    Returns:
        The feature mode, unchanged.

    Raises:
        ValueError: If it is not one of :data:`FEATURE_MODES`.
    """
    if feature_mode not in FEATURE_MODES:
        raise ValueError(f"unknown feature mode {feature_mode!r}; choose one of {', '.join(FEATURE_MODES)}")
    return str(feature_mode)


def feature_width(encoder: nn.Module, feature_mode: str) -> int:
    """Width of one feature row of ``encoder`` in ``feature_mode`` (both scales).

    Args:
        encoder: An :class:`~shamisa_bench.model.backbones.Encoder`.
        feature_mode: One of :data:`FEATURE_MODES`.

    Returns:
        ``2 * feature_dim`` for ``whole`` and ``crops5``; ``2 * multilevel_dim`` for ``multilevel``.
    """
    check_feature_mode(feature_mode)
    spec = backbone_spec(encoder.backbone)  # type: ignore[arg-type]
    return 2 * (spec.multilevel_dim if feature_mode == "multilevel" else spec.feature_dim)


def downscale_half(x: torch.Tensor) -> torch.Tensor:
    """The one 0.5 downscale: bilinear, antialiased, ``align_corners=False``, to
    ``(max(1, H // 2), max(1, W // 2))``.

    No checks and no clamping: :func:`half_scale` adds both for the encoder's input; the
    pretraining views (:func:`shamisa_bench.train.steps.crop_views`) use it as it is.

    Args:
        x: Images (N, C, H, W) or one image (C, H, W), float.

    Returns:
        The downscaled images, same number of dimensions.
    """
    if x.dim() == 3:
        return downscale_half(x[None])[0]
    size = (max(1, x.shape[-2] // 2), max(1, x.shape[-1] // 2))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def half_scale(x: torch.Tensor) -> torch.Tensor:
    """Downscale images by 0.5 (:func:`downscale_half`) for the encoder: checked, clamped.

    Args:
        x: Images (N, 3, H, W), float in [0, 1].

    Returns:
        Tensor (N, 3, H // 2, W // 2), clamped to [0, 1].

    Raises:
        ValueError: If the halved image would be smaller than 32 pixels on a side.
    """
    _check_images(x)
    height, width = x.shape[-2] // 2, x.shape[-1] // 2
    if height < MIN_INPUT_SIZE or width < MIN_INPUT_SIZE:
        raise ValueError(
            f"two-scale features need images of at least {2 * MIN_INPUT_SIZE}x{2 * MIN_INPUT_SIZE} "
            f"pixels (>= {MIN_INPUT_SIZE} after halving), got {x.shape[-2]}x{x.shape[-1]}"
        )
    return downscale_half(x).clamp(0.0, 1.0)


def five_crop_boxes(height: int, width: int, crop_size: int) -> tuple[tuple[int, int], ...]:
    """Top-left corners of the five crops of an image (after padding to ``crop_size``).

    Args:
        height, width: Image size in pixels.
        crop_size: Side of the square crops.

    Returns:
        Five ``(top, left)`` pairs in :data:`CROP_NAMES` order, valid for an image padded
        to ``(max(height, crop_size), max(width, crop_size))``; the centre crop uses
        floor division, ``top = (H - c) // 2``.
    """
    for name, value in (("height", height), ("width", width), ("crop_size", crop_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    h, w = max(height, crop_size), max(width, crop_size)
    bottom, right = h - crop_size, w - crop_size
    return ((bottom // 2, right // 2), (0, 0), (0, right), (bottom, 0), (bottom, right))


def five_crops(x: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Centre + four corner crops of every image, zero-padding images that are too small.

    Args:
        x: Images (N, C, H, W).
        crop_size: Side of the square crops.

    Returns:
        Tensor (N, 5, C, crop_size, crop_size), crops in :data:`CROP_NAMES` order.
        Differentiable with respect to ``x``.
    """
    if x.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)}")
    height, width = x.shape[-2], x.shape[-1]
    pad_h, pad_w = max(crop_size - height, 0), max(crop_size - width, 0)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=0.0)
    crops = [
        x[:, :, top : top + crop_size, left : left + crop_size]
        for top, left in five_crop_boxes(height, width, crop_size)
    ]
    return torch.stack(crops, dim=1)


def encode_two_scale(
    encoder: nn.Module, x: torch.Tensor, feature_mode: str = "whole", crop_size: int = 224
) -> torch.Tensor:
    """Two-scale features ``[h(x), h(x at 0.5)]`` of a batch of images.

    The encoder's mode is not changed: call ``encoder.eval()`` for feature extraction.
    Works under ``torch.no_grad()`` and with autograd (gradients flow to ``x`` and to
    the encoder).

    Args:
        encoder: A module mapping (M, 3, h, w) in [0, 1] to (M, D), normally an
            :class:`~shamisa_bench.model.backbones.Encoder`.
        x: Images (N, 3, H, W), float RGB in [0, 1], H and W >= 64.
        feature_mode: ``"whole"``, ``"crops5"`` or ``"multilevel"`` (see the module
            docstring). ``multilevel`` needs an encoder with a ``multilevel`` method.
        crop_size: Crop side for ``"crops5"`` (ignored otherwise), >= 32.

    Returns:
        Tensor (N, K, 2 * W), K = 5 for ``"crops5"`` and 1 otherwise; W = D (the width
        of ``h``), or ``multilevel_dim`` for ``"multilevel"``. ``[..., :W]`` is the
        full-scale feature, ``[..., W:]`` the half-scale feature.

    Raises:
        ValueError: Unknown feature mode, bad ``crop_size``, or images too small.
        TypeError: If ``x`` is not a floating-point tensor.
    """
    check_feature_mode(feature_mode)
    half = half_scale(x)  # also validates x
    n = x.shape[0]
    if feature_mode == "whole":
        return torch.cat([encoder(x), encoder(half)], dim=1).unsqueeze(1)
    if feature_mode == "multilevel":
        read_out = getattr(encoder, "multilevel", None)
        if not callable(read_out):
            raise TypeError(f"feature mode 'multilevel' needs an Encoder, got {type(encoder).__name__}")
        return torch.cat([read_out(x), read_out(half)], dim=1).unsqueeze(1)
    if not isinstance(crop_size, int) or isinstance(crop_size, bool) or crop_size < MIN_INPUT_SIZE:
        raise ValueError(f"crop_size must be an int >= {MIN_INPUT_SIZE}, got {crop_size!r}")
    k = len(CROP_NAMES)
    per_scale = []
    for images in (x, half):
        crops = five_crops(images, crop_size).flatten(0, 1)  # (N*5, 3, c, c)
        per_scale.append(encoder(crops).reshape(n, k, -1))
    return torch.cat(per_scale, dim=2)
