"""Sharpness and contrast group: unsharp mask, linear and clipped-stretch contrast."""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, per_image
from shamisa_bench.distortions.colorspace import lab_to_rgb, rgb_to_lab
from shamisa_bench.distortions.filters import gaussian_blur

__all__ = ["OPS", "SHARPEN_SIGMA", "contrast_down", "contrast_up", "high_sharpen", "nonlinear_contrast"]

SHARPEN_SIGMA = 3.0
"""Gaussian sigma of the unsharp mask (kernel radius 2 sigma = 6)."""


def high_sharpen(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Unsharp mask on Lab L: ``L + amount (L - G_3 * L)``, L clipped to [0, 100]."""
    lab = rgb_to_lab(x)
    lum = lab[:, :1]
    sharp = (lum + per_image(amount, x) * (lum - gaussian_blur(lum, SHARPEN_SIGMA))).clamp(0.0, 100.0)
    return lab_to_rgb(torch.cat([sharp, lab[:, 1:]], dim=1))


def _linear_contrast(x: Tensor, amount: Tensor) -> Tensor:
    # Through (0.25, 0.25 - a/4) and (0.75, 0.75 + a/4): slope 1 + a about 0.5.
    return 0.5 + (1.0 + per_image(amount, x)) * (x - 0.5)


def contrast_down(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Linear contrast curve of slope ``1 + amount`` about 0.5 (amount <= 0)."""
    return _linear_contrast(x, amount)


def contrast_up(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Linear contrast curve of slope ``1 + amount`` about 0.5 (amount >= 0)."""
    return _linear_contrast(x, amount)


def nonlinear_contrast(x: Tensor, half_width: Tensor, draws: Draws = ()) -> Tensor:
    """Stretch ``[0.5 - v, 0.5 + v]`` linearly onto [0, 1]; the caller clips the rest."""
    v = per_image(half_width, x)
    return (x - (0.5 - v)) / (2.0 * v)


OPS: dict[str, DistortionOp] = {
    "high_sharpen": DistortionOp(high_sharpen),
    "contrast_down": DistortionOp(contrast_down),
    "contrast_up": DistortionOp(contrast_up),
    "nonlinear_contrast": DistortionOp(nonlinear_contrast),
}
