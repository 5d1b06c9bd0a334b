"""Noise group: white noise in RGB and in YCbCr, salt and pepper, multiplicative noise."""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, per_image
from shamisa_bench.distortions.colorspace import rgb_to_ycbcr, ycbcr_to_rgb

__all__ = ["OPS", "impulse_noise", "multiplicative_noise", "white_noise", "white_noise_cc"]


def draw_normal(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """Standard normal samples ``(n, 3, h, w)``."""
    return (torch.randn(n, 3, h, w, generator=generator, device=generator.device),)


def draw_uniform(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """U[0, 1) samples ``(n, 3, h, w)``."""
    return (torch.rand(n, 3, h, w, generator=generator, device=generator.device),)


def white_noise(x: Tensor, variance: Tensor, draws: Draws) -> Tensor:
    """``x + sqrt(variance) z`` in RGB, ``variance`` ``(N,)``."""
    return x + per_image(variance, x).sqrt() * draws[0].to(x)


def white_noise_cc(x: Tensor, variance: Tensor, draws: Draws) -> Tensor:
    """Gaussian noise of ``variance`` ``(N,)`` added to Y, Cb and Cr (full-range BT.601)."""
    ycc = rgb_to_ycbcr(x) + per_image(variance, x).sqrt() * draws[0].to(x)
    return ycbcr_to_rgb(ycc)


def impulse_noise(x: Tensor, density: Tensor, draws: Draws) -> Tensor:
    """Salt and pepper on every sample: with ``u`` ~ U[0, 1), ``u < d/2`` -> 0, ``d/2 <= u < d`` -> 1."""
    u = draws[0].to(x)
    d = per_image(density, x)
    out = torch.where(u < d * 0.5, torch.zeros_like(x), x)
    return torch.where((u >= d * 0.5) & (u < d), torch.ones_like(x), out)


def multiplicative_noise(x: Tensor, variance: Tensor, draws: Draws) -> Tensor:
    """Speckle ``x + x n`` with ``n = sqrt(variance) z``."""
    return x + x * (per_image(variance, x).sqrt() * draws[0].to(x))


OPS: dict[str, DistortionOp] = {
    "white_noise": DistortionOp(white_noise, draw_normal),
    "white_noise_cc": DistortionOp(white_noise_cc, draw_normal),
    "impulse_noise": DistortionOp(impulse_noise, draw_uniform),
    "multiplicative_noise": DistortionOp(multiplicative_noise, draw_normal),
}
