"""Colour group: colour diffusion, colour shift, saturation in HSV and in Lab."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, apply_grouped, per_image
from shamisa_bench.distortions.colorspace import hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab
from shamisa_bench.distortions.filters import gaussian_blur

__all__ = ["EDGE_SIGMA", "OPS", "color_diffusion", "color_saturation_hsv", "color_saturation_lab", "color_shift"]

EDGE_SIGMA = 2.0
"""Sigma of the Gaussian that smooths the colour-shift edge map (pixels)."""


def color_diffusion(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Blur Lab a*b* with sigma ``1.5 amount + 2`` and scale them by ``amount`` ``(N,)``."""
    lab = rgb_to_lab(x)

    def diffuse(ab: Tensor, a: float, _: Tensor) -> Tensor:
        return gaussian_blur(ab, 1.5 * a + 2.0) * a

    ab = apply_grouped(lab[:, 1:], amount, diffuse)
    return lab_to_rgb(torch.cat([lab[:, :1], ab], dim=1))


def _sobel_magnitude(y: Tensor) -> Tensor:
    """Gradient magnitude of ``(N, 1, H, W)`` with 3x3 Sobel, replicate borders."""
    p = F.pad(y, (1, 1, 1, 1), mode="replicate")
    h, w = y.shape[-2:]

    def sl(dy: int, dx: int) -> Tensor:
        return p[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = (sl(-1, 1) + 2 * sl(0, 1) + sl(1, 1)) - (sl(-1, -1) + 2 * sl(0, -1) + sl(1, -1))
    gy = (sl(1, -1) + 2 * sl(1, 0) + sl(1, 1)) - (sl(-1, -1) + 2 * sl(-1, 0) + sl(-1, 1))
    return torch.sqrt(gx * gx + gy * gy)


def shift_images(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Translate each image by ``(dy, dx)`` ``(N,)`` pixels (bilinear, border replicate)."""
    n, _, h, w = x.shape
    ys = (2 * torch.arange(h, dtype=x.dtype, device=x.device) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=x.dtype, device=x.device) + 1) / w - 1
    gy = ys[None, :, None] - (2.0 * dy / h).to(x)[:, None, None]
    gx = xs[None, None, :] - (2.0 * dx / w).to(x)[:, None, None]
    grid = torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def draw_color_shift(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """One direction (radians in [0, 2 pi)) per image."""
    return (torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64) * (2 * math.pi),)


def color_shift(x: Tensor, amount: Tensor, draws: Draws) -> Tensor:
    """Shift green by ``amount`` ``(N,)`` pixels along the drawn direction, blended on edges.

    The blend weight is the Sobel gradient magnitude of the luma, smoothed with a Gaussian
    of sigma :data:`EDGE_SIGMA` and divided by its per-image maximum, so flat regions keep
    their green channel and edges take the shifted one (colour fringes).
    """
    # Python trigonometry per image: the same bits whatever the batch size.
    pairs = list(zip(amount.tolist(), draws[0].cpu().tolist()))
    dy = torch.tensor([a * math.sin(d) for a, d in pairs], dtype=torch.float64)
    dx = torch.tensor([a * math.cos(d) for a, d in pairs], dtype=torch.float64)
    luma = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    edges = gaussian_blur(_sobel_magnitude(luma), EDGE_SIGMA)
    peak = edges.amax(dim=(1, 2, 3), keepdim=True)
    edges = torch.where(peak > 0, edges / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(edges))
    green = x[:, 1:2]
    shifted = shift_images(green, dy, dx)
    green = green * (1 - edges) + shifted * edges
    return torch.cat([x[:, 0:1], green, x[:, 2:3]], dim=1)


def color_saturation_hsv(x: Tensor, factor: Tensor, draws: Draws = ()) -> Tensor:
    """Multiply HSV saturation by ``factor`` ``(N,)``; negative factors invert the chroma."""
    hsv = rgb_to_hsv(x)
    s = hsv[:, 1:2] * per_image(factor, x)
    return hsv_to_rgb(torch.cat([hsv[:, :1], s, hsv[:, 2:]], dim=1))


def color_saturation_lab(x: Tensor, factor: Tensor, draws: Draws = ()) -> Tensor:
    """Multiply Lab a*b* by ``factor`` ``(N,)``."""
    lab = rgb_to_lab(x)
    ab = lab[:, 1:] * per_image(factor, x)
    return lab_to_rgb(torch.cat([lab[:, :1], ab], dim=1))


OPS: dict[str, DistortionOp] = {
    "color_diffusion": DistortionOp(color_diffusion),
    "color_shift": DistortionOp(color_shift, draw_color_shift),
    "color_saturation_hsv": DistortionOp(color_saturation_hsv),
    "color_saturation_lab": DistortionOp(color_saturation_lab),
}
