"""Spatial group: jitter, non-eccentricity patches, pixelate, quantisation, colour blocks."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, apply_grouped

__all__ = [
    "BLOCK_SIZE",
    "JITTER_ITERATIONS",
    "OPS",
    "PATCH_MARGIN",
    "PATCH_OFFSET",
    "PATCH_SIZE",
    "color_block",
    "jitter",
    "non_eccentricity_patch",
    "pixelate",
    "quantization",
]

JITTER_ITERATIONS = 5
PATCH_SIZE = 16
PATCH_OFFSET = 8
"""Largest displacement of a non-eccentricity patch, per axis (pixels)."""
PATCH_MARGIN = 16
"""Distance of the patch sources from the image border (pixels), smaller images permitting."""
BLOCK_SIZE = 32
_MAX_PATCHES = 100  # largest non_eccentricity_patch anchor
_MAX_BLOCKS = 10  # largest color_block anchor


def draw_jitter(generator: torch.Generator, n: int, h: int, w: int, vmax: float) -> Draws:
    """Per-pixel standard normal offsets ``(n, iterations, h, w, 2)`` (x, y), scaled by the amount."""
    return (torch.randn(n, JITTER_ITERATIONS, h, w, 2, generator=generator, device=generator.device),)


def jitter(x: Tensor, amount: Tensor, draws: Draws) -> Tensor:
    """Resample every pixel at a Gaussian random offset of std ``amount`` ``(N,)`` pixels, 5 times.

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
    """Copy ``count`` ``(N,)`` 16x16 patches of the input to random offsets within 8 px per axis.

    Sources lie at least :data:`PATCH_MARGIN` pixels inside the border (less when the image
    is too small for that); displacements are uniform integers in [-8, 8] per axis.
    A patch moved down overlaps its own source rows and is copied as the reference's in-place
    row-by-row paste does: rows already pasted are read again, so the patch content repeats
    every ``(dy, dx)`` inside the destination. Patches are otherwise read from the
    undistorted input; where pasted patches overlap, the later one wins. Destinations are
    clamped inside the image; images smaller than a patch are kept.
    """
    n, c, h, w = x.shape
    p = PATCH_SIZE
    if h < p or w < p:
        return x.clone()
    u = draws[0].to(x.device)
    k = u.shape[1]
    my, mx = min(PATCH_MARGIN, (h - p) // 2), min(PATCH_MARGIN, (w - p) // 2)
    sy = (u[..., 0] * (h - p - 2 * my + 1)).floor().long().clamp(0, h - p - 2 * my) + my
    sx = (u[..., 1] * (w - p - 2 * mx + 1)).floor().long().clamp(0, w - p - 2 * mx) + mx
    oy = (u[..., 2] * (2 * PATCH_OFFSET + 1)).floor().long() - PATCH_OFFSET
    ox = (u[..., 3] * (2 * PATCH_OFFSET + 1)).floor().long() - PATCH_OFFSET
    dy = (sy + oy).clamp(0, h - p)
    dx = (sx + ox).clamp(0, w - p)
    ids = torch.arange(k, device=x.device).expand(n, k)
    active = ids < count.round().long().to(x.device)[:, None]
    ids = torch.where(active, ids, torch.full_like(ids, -1))
    a = torch.arange(p, device=x.device)
    lin = (dy[..., None, None] + a[:, None]) * w + (dx[..., None, None] + a[None, :])  # (n, k, p, p)
    # One scatter finds, per output pixel, the last patch covering it and the pixel's place in
    # that patch: the key patch * p^2 + place is largest for the last patch.
    place = torch.arange(p * p, device=x.device)
    keys = ids[..., None] * (p * p) + place  # (n, k, p * p); -p^2.. for inactive patches
    best = torch.full((n, h * w), -1, dtype=torch.long, device=x.device)
    best = best.scatter_reduce(1, lin.reshape(n, -1), keys.reshape(n, -1), reduce="amax")
    covered = best >= 0
    owner = torch.where(covered, best.div(p * p, rounding_mode="floor"), torch.zeros_like(best))
    spot = torch.where(covered, best - owner * (p * p), torch.zeros_like(best))
    ey, ex = dy - sy, dx - sx  # (n, k): destination minus source
    case = ((ey + PATCH_OFFSET) * (2 * PATCH_OFFSET + 1) + (ex + PATCH_OFFSET)).gather(1, owner)
    steps = _paste_steps(p, PATCH_OFFSET, x.device).reshape(-1)[case * (p * p) + spot]
    shift = (ey * w + ex).gather(1, owner)
    pix = torch.arange(h * w, device=x.device).expand(n, h * w)
    src = pix - torch.where(covered, steps * shift, torch.zeros_like(shift))
    return x.reshape(n, c, h * w).gather(2, src[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)


@lru_cache(maxsize=4)
def _paste_steps(p: int, reach: int, device: torch.device) -> Tensor:
    """How far back a pasted pixel reads: ``(2 reach + 1, 2 reach + 1, p * p)`` over (ey, ex, place).

    The reference pastes each patch from a view of the image it is writing, row by row; a
    patch moved down (ey > 0) whose source rows overlap its destination therefore re-reads
    rows it has already pasted, and the copy repeats with period (ey, ex). Its pixel at
    place q takes the input at q - k (ey, ex), with k >= 1 the first step that leaves the
    destination square; patches moved up or sideways read the input directly (k = 1).
    """
    e = torch.arange(-reach, reach + 1)
    r = torch.arange(p)
    ey, ex = e[:, None, None, None], e[None, :, None, None]
    ry, rx = r[None, None, :, None], r[None, None, None, :]
    never = torch.full((), p + 1)
    ky = torch.where(ey > 0, ry // ey.clamp_min(1) + 1, never)
    kx = torch.where(
        ex > 0, rx // ex.clamp_min(1) + 1, torch.where(ex < 0, (p - 1 - rx) // (-ex).clamp_min(1) + 1, never)
    )
    steps = torch.where(ey > 0, torch.minimum(ky, kx), torch.ones((), dtype=torch.long))
    return steps.reshape(2 * reach + 1, 2 * reach + 1, p * p).to(device)


def pixelate(x: Tensor, strength: Tensor, draws: Draws = ()) -> Tensor:
    """Nearest down-scale by ``z = 0.95 - strength^0.6`` and nearest up-scale back."""
    h, w = x.shape[-2:]

    def pix(xs: Tensor, s: float, _: Tensor) -> Tensor:
        z = 0.95 - s**0.6
        small = (max(1, int(h * z)), max(1, int(w * z)))  # truncated, as the reference
        down = F.interpolate(xs, size=small, mode="nearest")
        return F.interpolate(down, size=(h, w), mode="nearest")

    return apply_grouped(x, strength, pix)


def quantization(x: Tensor, levels: Tensor, draws: Draws = ()) -> Tensor:
    """Quantise each image to ``levels`` ``(N,)`` intensity levels with histogram-bin thresholds.

    The thresholds are the inner edges of a ``levels``-bin histogram of [0, 255], truncated
    to integers: ``t_k = floor(255 k / levels)``, ``k = 1 .. levels - 1``. Every sample
    ``v = 255 x`` (each channel on its own) gets its bin index (the number of the
    boundaries ``0, t_1, ..., t_{levels-1}`` strictly below it, so 0 only for black), and
    the indices are stretched linearly onto [0, 1] per image (minimum to 0, maximum to 1).
    An image whose samples all fall in one bin is returned unchanged.
    """

    def quant(xs: Tensor, lv: float, _: Tensor) -> Tensor:
        n_lv = max(2, int(lv))
        edges = [0.0] + [float((255 * k) // n_lv) for k in range(1, n_lv)]
        bounds = torch.tensor(edges, dtype=xs.dtype, device=xs.device)
        idx = torch.bucketize(xs * 255.0, bounds).to(xs.dtype)
        lo = idx.amin(dim=(1, 2, 3), keepdim=True)
        span = idx.amax(dim=(1, 2, 3), keepdim=True) - lo
        stretched = (idx - lo) / torch.where(span > 0, span, torch.ones_like(span))
        return torch.where(span > 0, stretched, xs)

    return apply_grouped(x, levels, quant)


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
