"""Blur group: Gaussian, lens (disk) and motion (line) blur."""

from __future__ import annotations

import torch
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, apply_grouped
from shamisa_bench.distortions.filters import (
    box_disk_kernel,
    fft_filter,
    motion_kernels,
)
from shamisa_bench.distortions.filters import gaussian_blur as _gaussian_filter

__all__ = ["OPS", "gaussian_blur", "lens_blur", "motion_blur"]


def gaussian_blur(x: Tensor, sigma: Tensor, draws: Draws = ()) -> Tensor:
    """Gaussian blur, ``sigma`` ``(N,)`` per image; kernel ``2 ceil(2 sigma) + 1``."""
    return apply_grouped(x, sigma, lambda xs, s, _: _gaussian_filter(xs, s))


def lens_blur(x: Tensor, radius: Tensor, draws: Draws = ()) -> Tensor:
    """Disk (defocus) blur of integer ``radius`` ``(N,)`` pixels."""
    return apply_grouped(x, radius, lambda xs, r, _: fft_filter(xs, box_disk_kernel(round(r))[None, None]))


def draw_motion_blur(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """One angle in [0, 180) degrees per image."""
    return (torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) * 180.0,)


def motion_blur(x: Tensor, length: Tensor, draws: Draws) -> Tensor:
    """Line blur of ``length`` ``(N,)`` pixels (1 = identity) at the drawn per-image angles ``(N,)``."""
    angles = draws[0].cpu()
    return apply_grouped(x, length, lambda xs, r, idx: fft_filter(xs, motion_kernels(round(r), angles[idx])))


OPS: dict[str, DistortionOp] = {
    "gaussian_blur": DistortionOp(gaussian_blur),
    "lens_blur": DistortionOp(lens_blur),
    "motion_blur": DistortionOp(motion_blur, draw_motion_blur),
}
