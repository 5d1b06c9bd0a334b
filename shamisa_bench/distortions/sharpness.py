"""Sharpness and contrast group: unsharp mask, spline contrast curves and contrast compression."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws, per_image
from shamisa_bench.distortions.colorspace import lab_to_rgb, rgb_to_lab
from shamisa_bench.distortions.filters import fft_filter, gaussian_kernel

__all__ = [
    "CONTRAST_KNOTS",
    "OPS",
    "SHARPEN_RADIUS",
    "SHARPEN_SIGMA",
    "contrast_curve",
    "contrast_down",
    "contrast_offset",
    "contrast_up",
    "high_sharpen",
    "nonlinear_contrast",
]

SHARPEN_SIGMA = 6.0
"""Gaussian sigma of the unsharp mask (pixels); the reference's "radius 3" doubled."""
SHARPEN_RADIUS = 6
"""Half-size of the unsharp mask's Gaussian (a 13 x 13 kernel, truncated at one sigma)."""


def high_sharpen(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Unsharp mask on Lab L: ``L + amount (L - G * L)``, ``amount`` ``(N,)``.

    ``G`` is a 13 x 13 Gaussian of sigma 6 (replicate borders). L is not clipped; colours
    pushed out of gamut are clipped in linear RGB by the conversion back.
    """
    lab = rgb_to_lab(x)
    lum = lab[:, :1]
    blurred = fft_filter(lum, gaussian_kernel(SHARPEN_SIGMA, SHARPEN_RADIUS)[None, None])
    sharp = lum + per_image(amount, x) * (lum - blurred)
    return lab_to_rgb(torch.cat([sharp, lab[:, 1:]], dim=1))


CONTRAST_KNOTS = (0.0, 0.3, 0.5, 0.7, 1.0)
"""Abscissae of the contrast curve's control points."""


@lru_cache(maxsize=1)
def _bump_spline() -> Tensor:
    """Cubic coefficients ``(4 pieces, 4)`` of the not-a-knot spline through the knots with
    ordinates (0, -1, 0, 1, 0); piece ``j`` is ``c0 + c1 t + c2 t^2 + c3 t^3``, ``t = x - knot_j``."""
    k = CONTRAST_KNOTS
    y = (0.0, -1.0, 0.0, 1.0, 0.0)
    rows, rhs = [], []

    def row(piece: int, values: tuple[float, float, float, float]) -> list[float]:
        r = [0.0] * 16
        r[4 * piece : 4 * piece + 4] = values
        return r

    for j in range(4):
        d = k[j + 1] - k[j]
        rows += [row(j, (1.0, 0.0, 0.0, 0.0)), row(j, (1.0, d, d * d, d**3))]
        rhs += [y[j], y[j + 1]]
    for j in range(3):  # continuity of the first and second derivatives at the inner knots
        d = k[j + 1] - k[j]
        a = row(j, (0.0, 1.0, 2 * d, 3 * d * d))
        a[4 * (j + 1) + 1] = -1.0
        b = row(j, (0.0, 0.0, 2.0, 6 * d))
        b[4 * (j + 1) + 2] = -2.0
        rows += [a, b]
        rhs += [0.0, 0.0]
    for j in (0, 2):  # not-a-knot: the third derivative is continuous at the second and fourth knots
        c = row(j, (0.0, 0.0, 0.0, 6.0))
        c[4 * (j + 1) + 3] = -6.0
        rows.append(c)
        rhs.append(0.0)
    a_mat = torch.tensor(rows, dtype=torch.float64)
    sol = torch.linalg.solve(a_mat, torch.tensor(rhs, dtype=torch.float64))
    return sol.reshape(4, 4)


def contrast_curve(x: Tensor, offset: Tensor) -> Tensor:
    """The spline tone curve through (0, 0), (0.3, 0.3 - d), (0.5, 0.5), (0.7, 0.7 + d), (1, 1).

    A not-a-knot cubic spline (MATLAB's ``spline``); it is linear in its ordinates, so it is
    ``x + d B(x)`` with ``B`` the spline through (0, -1, 0, 1, 0). ``d > 0`` raises the
    contrast, ``d < 0`` lowers it, ``d = 0`` is the identity. ``B`` is odd about 0.5
    (``B(1 - x) = -B(x)``), so it is evaluated from its two pieces on [0.5, 1].

    Args:
        x: ``(N, C, H, W)`` in [0, 1].
        offset: ``d``, broadcastable against ``x`` (``(N, 1, 1, 1)``).

    Returns:
        The curve's values, not clipped.
    """
    (_, a1, a2, a3), (b0, b1, b2, b3) = _bump_spline()[2:].tolist()  # pieces from 0.5 and from 0.7
    s = x - 0.5
    u = s.abs()
    inner = (u * a3).add_(a2).mul_(u).add_(a1).mul_(u)
    v = u - 0.2
    outer = (v * b3).add_(b2).mul_(v).add_(b1).mul_(v).add_(b0)
    bump = torch.where(v < 0, inner, outer).copysign_(s)
    return bump.mul_(offset).add_(x)


def contrast_offset(amount: Tensor) -> Tensor:
    """The curve offset ``d`` of a linear-contrast ``amount`` (elementwise, float64).

    The reference moves its control points to ``0.25 - a/4`` and ``0.75 + a/4`` over the
    abscissae 0.3 and 0.7, i.e. ``d = 0.05 + a/4``; that curve is not the identity at
    ``a = 0`` (about 28.3 dB) and raises the contrast at ``a = -0.15``. Here ``d`` follows the
    reference for ``a >= 0.15`` and ``a <= -0.3`` (levels 2-5 of both types) and is linear
    from 0 in between: ``d = a * 0.0875 / 0.15`` for ``0 <= a < 0.15`` (up to the reference's
    value at 0.15) and ``d = a / 12`` for ``-0.3 < a < 0`` (the reference's ``|d|`` at -0.15, as
    a contrast decrease). So ``a = 0`` is the identity and ``d`` grows with ``a``.
    """
    a = amount.to(torch.float64)
    ref = 0.05 + a / 4.0
    return torch.where(a >= 0.15, ref, torch.where(a >= 0.0, a * (0.0875 / 0.15), torch.where(a > -0.3, a / 12.0, ref)))


def contrast_down(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Spline contrast curve of offset :func:`contrast_offset` ``(amount)``, ``amount`` ``(N,)`` <= 0."""
    return contrast_curve(x, per_image(contrast_offset(amount), x))


def contrast_up(x: Tensor, amount: Tensor, draws: Draws = ()) -> Tensor:
    """Spline contrast curve of offset :func:`contrast_offset` ``(amount)``, ``amount`` ``(N,)`` >= 0."""
    return contrast_curve(x, per_image(contrast_offset(amount), x))


def nonlinear_contrast(x: Tensor, half_width: Tensor, draws: Draws = ()) -> Tensor:
    """Map [0, 1] linearly onto ``[0.5 - v, 0.5 + v]`` (``v = half_width`` ``(N,)``): less contrast."""
    v = per_image(half_width, x)
    return 0.5 + (2.0 * v) * (x - 0.5)


OPS: dict[str, DistortionOp] = {
    "high_sharpen": DistortionOp(high_sharpen),
    "contrast_down": DistortionOp(contrast_down),
    "contrast_up": DistortionOp(contrast_up),
    "nonlinear_contrast": DistortionOp(nonlinear_contrast),
}
