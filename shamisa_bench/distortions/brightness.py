"""Brightness group: brighten, darken (tone curves) and mean shifts."""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, per_image
from shamisa_bench.distortions.colorspace import lab_to_rgb, rgb_to_lab

__all__ = ["OPS", "brighten", "darken", "mean_shift_down", "mean_shift_up", "tone_curve"]


def tone_curve(t: Tensor, amount: Tensor) -> Tensor:
    """Quadratic through (0, 0), (0.5, 0.5 + amount/2) and (1, 1), clipped to [0, 1].

    ``f(t) = t + 2 a t (1 - t)``; ``amount`` broadcasts against ``t``. For ``a > 0.5`` the
    curve passes above 1 before returning; after clipping it stays non-decreasing.
    """
    return (t + 2.0 * amount * t * (1.0 - t)).clamp(0.0, 1.0)


def _mixed_curve(x: Tensor, amount: Tensor) -> Tensor:
    """2 parts the curve on every RGB channel, 1 part the curve on Lab L (colour kept)."""
    rgb = tone_curve(x, amount)
    lab = rgb_to_lab(x)
    lum = tone_curve(lab[:, :1] / 100.0, amount) * 100.0
    via_lab = lab_to_rgb(torch.cat([lum, lab[:, 1:]], dim=1))
    return (2.0 * rgb + via_lab) / 3.0


def brighten(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Tone curve through (0.5, 0.5 + amount/2), ``amount`` ``(N,)``, mixed 2:1 RGB : Lab-L."""
    return _mixed_curve(x, per_image(amount, x))


def darken(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Tone curve through (0.5, 0.5 - amount/2), ``amount`` ``(N,)``, mixed 2:1 RGB : Lab-L."""
    return _mixed_curve(x, -per_image(amount, x))


def mean_shift_down(x: Tensor, shift: Tensor, draws: Draws = ()) -> Tensor:
    """``x + shift`` (the anchors are negative)."""
    return x + per_image(shift, x)


def mean_shift_up(x: Tensor, shift: Tensor, draws: Draws = ()) -> Tensor:
    """``x + shift``."""
    return x + per_image(shift, x)


OPS: dict[str, DistortionOp] = {
    "brighten": DistortionOp(brighten),
    "darken": DistortionOp(darken),
    "mean_shift_down": DistortionOp(mean_shift_down),
    "mean_shift_up": DistortionOp(mean_shift_up),
}
