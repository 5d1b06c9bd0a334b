"""Colour-space conversions on batches, written in torch so they run on CPU and CUDA.

All functions take and return ``(N, 3, H, W)`` tensors. RGB is sRGB in [0, 1] (true RGB
channel order). Channel mixing is written as explicit per-channel sums rather than a
matrix product (only exactly rounded operations). The three non-integer powers (sRGB
gamma decoding and encoding, the Lab cube root) go through :func:`blocked_pow`: torch's
SIMD and scalar code paths for ``pow`` can differ in the last bit, and which path an
element takes depends on where the thread chunks of the whole tensor fall, i.e. on the
batch size. Inside :func:`pow_blocks` (which the composition engine uses) ``pow`` runs on
fixed blocks of images, so an image gets the same bits in a batch of ``V`` views and in a
batch of ``n_levels * V`` crops, which prefix sharing relies on.

- Lab: CIE L*a*b* (D65 white, sRGB primaries); L in [0, 100], a* and b* roughly [-128, 127].
- HSV: hue in [0, 1) (fraction of a turn), saturation and value in [0, 1].
- YCbCr: full-range ITU-R BT.601 (as in JPEG), all three channels in [0, 1] for RGB input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

__all__ = [
    "blocked_pow",
    "floor_mod",
    "hsv_to_rgb",
    "lab_to_rgb",
    "linear_to_srgb",
    "pow_blocks",
    "rgb_to_hsv",
    "rgb_to_lab",
    "rgb_to_ycbcr",
    "srgb_to_linear",
    "ycbcr_to_rgb",
]

# sRGB (linear) -> XYZ, D65.
_RGB2XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
# Its exact inverse (not the rounded published one), so Lab round trips are tight.
_XYZ2RGB = tuple(tuple(row) for row in torch.linalg.inv(torch.tensor(_RGB2XYZ, dtype=torch.float64)).tolist())
_WHITE = (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0

_RGB2YCC = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
_YCC2RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136, -0.714136),
    (1.0, 1.772, 0.0),
)


_POW_BLOCK: ContextVar[int] = ContextVar("shamisa_pow_block", default=0)


@contextmanager
def pow_blocks(images: int) -> Iterator[None]:
    """Within this context, :func:`blocked_pow` works on blocks of ``images`` images.

    Batches whose size is a multiple of ``images`` then give every image the same bits as
    a batch of exactly ``images``.
    """
    token = _POW_BLOCK.set(max(0, int(images)))
    try:
        yield
    finally:
        _POW_BLOCK.reset(token)


def blocked_pow(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent``; blockwise along the batch inside :func:`pow_blocks`."""
    block = _POW_BLOCK.get()
    n = x.shape[0]
    if block <= 0 or block >= n:
        return x.pow(exponent)
    out = torch.empty_like(x)
    for start in range(0, n, block):
        torch.pow(x[start : start + block], exponent, out=out[start : start + block])
    return out


def floor_mod(a: Tensor, b: float) -> Tensor:
    """``a mod b`` (result in [0, b)) from exact elementwise steps (floor, multiply, subtract)."""
    return a - torch.floor(a / b) * b


def _mix(x: Tensor, m: tuple[tuple[float, float, float], ...]) -> Tensor:
    c0, c1, c2 = x[:, 0], x[:, 1], x[:, 2]
    return torch.stack([r[0] * c0 + r[1] * c1 + r[2] * c2 for r in m], dim=1)


def srgb_to_linear(x: Tensor) -> Tensor:
    """sRGB gamma decoding; input clamped to [0, 1]."""
    x = x.clamp(0.0, 1.0)
    curve = blocked_pow(x.add(0.055).div_(1.055), 2.4)
    return torch.where(x <= 0.04045, x.div(12.92), curve)


def linear_to_srgb(x: Tensor) -> Tensor:
    """sRGB gamma encoding; input clamped to [0, 1]."""
    x = x.clamp(0.0, 1.0)
    curve = blocked_pow(x.clamp_min(1e-12), 1.0 / 2.4).mul_(1.055).sub_(0.055)
    return torch.where(x <= 0.0031308, x.mul(12.92), curve)


# The white point is folded into the matrices: rows of RGB->XYZ divided by it, columns
# of XYZ->RGB multiplied by it.
_RGB2XYZN = tuple(tuple(v / _WHITE[i] for v in row) for i, row in enumerate(_RGB2XYZ))
_XYZN2RGB = tuple(tuple(v * _WHITE[j] for j, v in enumerate(row)) for row in _XYZ2RGB)


def rgb_to_lab(x: Tensor) -> Tensor:
    """sRGB ``(N, 3, H, W)`` in [0, 1] -> CIE Lab (L in [0, 100])."""
    t = _mix(srgb_to_linear(x), _RGB2XYZN)
    cube = blocked_pow(t.clamp_min(_DELTA**3), 1.0 / 3.0)
    f = torch.where(t > _DELTA**3, cube, t.mul_(1.0 / (3 * _DELTA**2)).add_(4.0 / 29.0))
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([fy * 116.0 - 16.0, (fx - fy).mul_(500.0), (fy - fz).mul_(200.0)], dim=1)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab -> sRGB in [0, 1]; out-of-gamut colours are clipped in linear RGB."""
    fy = (lab[:, 0] + 16.0) / 116.0
    f = torch.stack([lab[:, 1] / 500.0 + fy, fy, fy - lab[:, 2] / 200.0], dim=1)
    cube = f * f * f
    t = torch.where(f > _DELTA, cube, f.sub_(4.0 / 29.0).mul_(3 * _DELTA**2))
    return linear_to_srgb(_mix(t, _XYZN2RGB))


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB ``(N, 3, H, W)`` in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    c = v - mn
    safe_c = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(
        v == r,
        floor_mod((g - b) / safe_c, 6.0),
        torch.where(v == g, (b - r) / safe_c + 2.0, (r - g) / safe_c + 4.0),
    )
    h = floor_mod(torch.where(c > 0, h / 6.0, torch.zeros_like(h)), 1.0)
    s = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV (hue in [0, 1)) -> RGB, not clamped.

    Uses ``c_n = V - V S clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 H) mod 6``, which is
    defined for any saturation: a negative S gives the complementary chroma (values may
    leave [0, 1]; callers clamp).
    """
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    out = []
    for n in (5.0, 3.0, 1.0):
        k = floor_mod(h * 6.0 + n, 6.0)
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """RGB in [0, 1] -> full-range BT.601 YCbCr (Cb, Cr centred on 0.5)."""
    y = _mix(x, _RGB2YCC)
    return torch.stack([y[:, 0], y[:, 1] + 0.5, y[:, 2] + 0.5], dim=1)


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    """Full-range BT.601 YCbCr -> RGB, not clamped."""
    centred = torch.stack([ycc[:, 0], ycc[:, 1] - 0.5, ycc[:, 2] - 0.5], dim=1)
    return _mix(centred, _YCC2RGB)
