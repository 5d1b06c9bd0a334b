"""Linear filters for the engine: kernels and an FFT convolution with replicate borders.

Convolution is done in the Fourier domain: on 2 CPU cores it is several times faster than
``conv2d`` for the kernel sizes the engine uses (up to 81 x 81), its cost does not grow
with the kernel, and it handles per-image kernels (motion blur at a random angle per
image) in one batched call. The image is padded by the kernel radius with replicate
borders, so the circular convolution is exact on the kept region. Every image is
transformed on its own, so results do not depend on the batch size.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "box_disk_kernel",
    "fast_fft_size",
    "fft_filter",
    "gaussian_blur",
    "gaussian_kernel",
    "motion_kernels",
]


def gaussian_kernel(sigma: float, radius: int | None = None) -> Tensor:
    """2-D Gaussian kernel of size ``2 r + 1``, normalised, float64 CPU.

    ``r`` is ``radius`` when given, else ``ceil(2 sigma)``.
    """
    if sigma <= 0:
        return torch.ones(1, 1, dtype=torch.float64)
    r = math.ceil(2.0 * sigma) if radius is None else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(t**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


@lru_cache(maxsize=64)
def box_disk_kernel(radius: int) -> Tensor:
    """Anti-aliased disk of ``radius`` pixels, size ``2 r + 1``, normalised, float64 CPU.

    Each tap is the fraction of its pixel square inside the disk (16 x 16 supersampling).
    """
    if radius <= 0:
        return torch.ones(1, 1, dtype=torch.float64)
    sub = 16
    offs = (torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    pos = (t[:, None] + offs[None, :]).reshape(-1)  # (K * sub,)
    inside = (pos[:, None] ** 2 + pos[None, :] ** 2) <= radius**2
    k = 2 * radius + 1
    cover = inside.to(torch.float64).reshape(k, sub, k, sub).mean(dim=(1, 3))
    return cover / cover.sum()


def _motion_kernel(length: int, angle: float) -> Tensor:
    theta = math.radians(angle)
    c, s = math.cos(theta), math.sin(theta)  # Python floats: same bits for any batch
    half = (length - 1) / 2.0
    r = math.floor(half) + 1
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = t[:, None], t[None, :]  # image rows grow downwards
    along = xx * c - yy * s
    perp = xx * s + yy * c
    beyond = (along.abs() - half).clamp_min(0.0)  # past the segment's end, along the line
    w = (1.0 - torch.sqrt(perp * perp + beyond * beyond)).clamp_min(0.0)
    return w / w.sum()


def motion_kernels(length: int, angles: Tensor) -> Tensor:
    """Anti-aliased line kernels of ``length`` pixels centred on the origin, one per angle.

    Args:
        length: length of the line in pixels (the reference's ``len``; 0 or 1 is the
            identity); the segment runs from ``-(length - 1) / 2`` to ``+(length - 1) / 2``.
        angles: ``(N,)`` angles in degrees, 0 = horizontal, counter-clockwise.

    Returns:
        ``(N, 1, K, K)`` float64 CPU kernels (``K = 2 floor((length - 1) / 2) + 3``, or 1 for
        the identity), each summing to 1. A tap's weight is ``max(0, 1 - d)`` with ``d`` its
        distance to the segment. Each kernel is built on its own, so it does not depend on
        the batch.
    """
    n = angles.shape[0]
    if length <= 1:
        return torch.ones(n, 1, 1, 1, dtype=torch.float64)
    return torch.stack([_motion_kernel(int(length), float(a)) for a in angles.tolist()])[:, None]


def fast_fft_size(n: int) -> int:
    """Smallest ``m >= n`` whose prime factors are all 2, 3, 5 or 7 (fast FFT lengths)."""
    m = max(1, n)
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fft_filter(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel of ``x`` with ``kernel``, replicate borders, same size out.

    Args:
        x: ``(N, C, H, W)`` float.
        kernel: ``(1 or N, 1, kh, kw)`` with odd ``kh`` and ``kw``; a single kernel is
            shared by all images, otherwise image ``i`` uses ``kernel[i]``.

    Returns:
        ``(N, C, H, W)``, same dtype and device as ``x``. For centrosymmetric kernels (all
        the engine's: Gaussian, disk, line through the centre) every image's result is
        bitwise independent of the batch it is in.
    """
    kh, kw = kernel.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {(kh, kw)}")
    symmetric = bool(torch.equal(kernel, kernel.flip(-2, -1)))
    if kh == 1 and kw == 1:
        return x * kernel.reshape(-1, 1, 1, 1).to(x)
    _n, _c, h, w = x.shape
    ry, rx = kh // 2, kw // 2
    padded = F.pad(x, (rx, rx, ry, ry), mode="replicate")
    # Circular convolution on a grid of at least (h + 2 ry, w + 2 rx): the kept region only
    # reads the replicate-padded image, never the zeros or the wrap-around beyond it.
    ph, pw = fast_fft_size(h + 2 * ry), fast_fft_size(w + 2 * rx)
    # Place the kernel's centre at (0, 0) of the grid.
    k = torch.zeros(kernel.shape[0], 1, ph, pw, dtype=x.dtype, device=x.device)
    k[:, :, :kh, :kw] = kernel.to(device=x.device, dtype=x.dtype)
    k = torch.roll(k, shifts=(-ry, -rx), dims=(2, 3))
    kspec = torch.fft.rfft2(k)
    if symmetric:
        # A centrosymmetric kernel has a real spectrum: multiply re and im by it with one
        # real, exactly rounded multiply (torch's fused complex multiply rounds differently
        # in its SIMD and scalar paths, which would make results depend on the batch size).
        spec = torch.view_as_complex(torch.view_as_real(torch.fft.rfft2(padded, s=(ph, pw))) * kspec.real[..., None])
    else:
        spec = torch.fft.rfft2(padded, s=(ph, pw)) * kspec
    out = torch.fft.irfft2(spec, s=(ph, pw))
    return out[:, :, ry : ry + h, rx : rx + w]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of every channel (kernel ``2 ceil(2 sigma) + 1``, replicate borders)."""
    if sigma <= 0:
        return x.clone()
    return fft_filter(x, gaussian_kernel(float(sigma))[None, None])
