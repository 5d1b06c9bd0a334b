"""Spatial group: jitter, non-eccentricity patches, pixelate, quantisation, colour blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, apply_grouped

__all__ = [
    "BLOCK_SIZE",
    "JITTER_ITERATIONS",
    "OPS",
    "PATCH_OFFSET",
    "PATCH_SIZE",
    "QUANT_BINS",
    "color_block",
    "jitter",
    "non_eccentricity_patch",
    "pixelate",
    "quantization",
]

JITTER_ITERATIONS = 5
PATCH_SIZE = 16
PATCH_OFFSET = 16
BLOCK_SIZE = 32
_MAX_PATCHES = 100  # largest non_eccentricity_patch anchor
_MAX_BLOCKS = 10  # largest color_block anchor


def draw_jitter(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """Per-pixel offsets in U[-1, 1), ``(n, iterations, h, w, 2)`` (x, y), scaled by the amount."""
    u = torch.rand(n, JITTER_ITERATIONS, h, w, 2, generator=generator, device=generator.device)
    return (u * 2.0 - 1.0,)


def jitter(x: Tensor, amount: Tensor, draws: Draws) -> Tensor:
    """Resample every pixel at a random offset of up to ``amount`` ``(N,)`` pixels, 5 times.

    Each iteration reads the previous one bilinearly (border replicate); offsets are
    independent per pixel, per axis and per iteration.
    """
    n, _, h, w = x.shape
    offsets = draws[0].to(x)
    ys = (2 * torch.arange(h, dtype=x.dtype, device=x.device) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=x.dtype, device=x.device) + 1) / w - 1
    base = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=x.dtype, device=x.device)
    amt = amount.to(x).reshape(n, 1, 1, 1)
    out = x
    for it in range(JITTER_ITERATIONS):
        grid = base + offsets[:, it] * amt * scale
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out


def draw_patches(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """``(n, K, 4)`` uniforms (source y, source x, offset y, offset x), K >= 100 patches."""
    k = max(_MAX_PATCHES, math.ceil(vmax))
    return (torch.rand(n, k, 4, generator=generator, device=generator.device, dtype=torch.float64),)


def non_eccentricity_patch(x: Tensor, count: Tensor, draws: Draws) -> Tensor:
    """Copy ``count`` ``(N,)`` 16x16 patches of the input to random offsets within 16 px.

    Patches are read from the undistorted input; where pasted patches overlap, the later one
    wins. Destinations are clamped inside the image; images smaller than a patch are kept.
    """
    n, c, h, w = x.shape
    p = PATCH_SIZE
    if h < p or w < p:
        return x.clone()
    u = draws[0].to(x.device)
    k = u.shape[1]
    sy = (u[..., 0] * (h - p + 1)).floor().long().clamp(0, h - p)
    sx = (u[..., 1] * (w - p + 1)).floor().long().clamp(0, w - p)
    oy = (u[..., 2] * (2 * PATCH_OFFSET + 1)).floor().long() - PATCH_OFFSET
    ox = (u[..., 3] * (2 * PATCH_OFFSET + 1)).floor().long() - PATCH_OFFSET
    dy = (sy + oy).clamp(0, h - p)
    dx = (sx + ox).clamp(0, w - p)
    ids = torch.arange(k, device=x.device).expand(n, k)
    active = ids < count.round().long().to(x.device)[:, None]
    ids = torch.where(active, ids, torch.full_like(ids, -1))
    a = torch.arange(p, device=x.device)
    lin = (dy[..., None, None] + a[:, None]) * w + (dx[..., None, None] + a[None, :])  # (n, k, p, p)
    owner = torch.full((n, h * w), -1, dtype=torch.long, device=x.device)
    owner = owner.scatter_reduce(
        1, lin.reshape(n, -1), ids[..., None].expand(n, k, p * p).reshape(n, -1), reduce="amax"
    )
    shift = (sy - dy) * w + (sx - dx)  # (n, k): source minus destination, linear
    pix = torch.arange(h * w, device=x.device).expand(n, h * w)
    src = pix + torch.where(owner >= 0, shift.gather(1, owner.clamp_min(0)), torch.zeros_like(owner))
    return x.reshape(n, c, h * w).gather(2, src[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


def pixelate(x: Tensor, strength: Tensor, draws: Draws = ()) -> Tensor:
    """Nearest down-scale by ``z = 0.95 - strength^0.6`` and nearest up-scale back."""
    h, w = x.shape[-2:]

    def pix(xs: Tensor, s: float, _: Tensor) -> Tensor:
        z = 0.95 - s**0.6
        small = (max(1, round(h * z)), max(1, round(w * z)))
        down = F.interpolate(xs, size=small, mode="nearest")
        return F.interpolate(down, size=(h, w), mode="nearest")

    return apply_grouped(x, strength, pix)


QUANT_BINS = 1024
"""Histogram bins of :func:`quantization` (thresholds are placed at bin resolution)."""


def quantization(x: Tensor, levels: Tensor, draws: Draws = ()) -> Tensor:
    """Quantise each image to ``levels`` ``(N,)`` intensity levels with histogram thresholds.

    From each image's 1024-bin histogram (all three channels pooled), whole bins are
    assigned to levels so that every level holds about the same number of samples (the
    thresholds are the ``k / levels`` quantiles, at bin resolution). Every sample becomes
    its level's mean intensity (computed from integer bin counts and bin centres, exact
    integer sums, so the result is deterministic on every device).
    """
    n, c, h, w = x.shape
    nb = QUANT_BINS
    m = c * h * w
    bins = (x.reshape(n, m).clamp(0.0, 1.0) * (nb - 1)).round().long()
    rows = torch.arange(n, device=x.device)[:, None]
    counts = torch.bincount((bins + rows * nb).reshape(-1), minlength=n * nb).reshape(n, nb)
    before = counts.cumsum(1) - counts  # samples in lower bins
    lv = levels.round().clamp_min(2).to(device=x.device, dtype=torch.long)[:, None]
    level_of_bin = torch.div(before * lv, m, rounding_mode="floor").clamp_max(lv - 1)  # (n, nb)
    n_lv = int(lv.max())
    # Integer sums (count * bin index): exact, so atomics on CUDA cannot reorder them.
    index_sum = torch.zeros(n, n_lv, dtype=torch.long, device=x.device)
    index_sum.scatter_add_(1, level_of_bin, counts * torch.arange(nb, device=x.device))
    total = torch.zeros(n, n_lv, dtype=torch.long, device=x.device).scatter_add_(1, level_of_bin, counts)
    means = (index_sum.double() / (total.clamp_min(1).double() * (nb - 1))).to(x.dtype)  # (n, n_lv)
    return means.gather(1, level_of_bin.gather(1, bins)).reshape(n, c, h, w)


def draw_blocks(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """``(n, K, 5)`` uniforms (y, x, r, g, b), K >= 10 blocks."""
    k = max(_MAX_BLOCKS, math.ceil(vmax))
    return (torch.rand(n, k, 5, generator=generator, device=generator.device, dtype=torch.float64),)


def color_block(x: Tensor, count: Tensor, draws: Draws) -> Tensor:
    """Paste ``count`` ``(N,)`` uniformly coloured 32x32 blocks at random places (later on top)."""
    _n, _, h, w = x.shape
    bh, bw = min(BLOCK_SIZE, h), min(BLOCK_SIZE, w)
    u = draws[0].cpu()
    y0 = (u[..., 0] * (h - bh + 1)).floor().long().clamp(0, h - bh).tolist()
    x0 = (u[..., 1] * (w - bw + 1)).floor().long().clamp(0, w - bw).tolist()
    colours = u[..., 2:].to(device=x.device, dtype=x.dtype)
    out = x.clone()
    for i, c in enumerate(count.round().long().tolist()):
        for k in range(c):
            out[i, :, y0[i][k] : y0[i][k] + bh, x0[i][k] : x0[i][k] + bw] = colours[i, k][:, None, None]
    return out


OPS: dict[str, DistortionOp] = {
    "jitter": DistortionOp(jitter, draw_jitter),
    "non_eccentricity_patch": DistortionOp(non_eccentricity_patch, draw_patches),
    "pixelate": DistortionOp(pixelate),
    "quantization": DistortionOp(quantization),
    "color_block": DistortionOp(color_block, draw_blocks),
}
