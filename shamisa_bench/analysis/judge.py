"""A full-reference judge for gMAD pairs of a synthetic pool: MS-SSIM.

This is an automated proxy a reader can weigh, not a human study. For a pair (a, b) the
attacker rates a better than b:

* **same reference** (both images made from the same source): the image with the higher
  MS-SSIM against that source is judged better. This is the classic FR verdict.
* **different references**: each image's MS-SSIM against its own source is compared. A
  weaker rule (MS-SSIM values are not calibrated across contents), so its agreement is
  reported apart from the same-reference one.
* equal MS-SSIM (e.g. two pristine images, both 1): a tie, counted as neither agreement nor
  disagreement.

MS-SSIM (Wang, Simoncelli and Bovik, 2003) on the BT.601 luma in [0, 255]: 11-tap Gaussian
window (sigma 1.5), 5 scales with the published weights, 2 x 2 average pooling between
scales, contrast-structure terms clamped at 0 so that the product is defined.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["MIN_SIDE", "MS_SSIM_WEIGHTS", "judge_pair", "ms_ssim"]

#: The published weights of the five scales.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN, _SIGMA = 11, 1.5
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
#: The shortest side MS-SSIM accepts: the window must fit the fifth scale.
MIN_SIDE = _WIN * 2 ** (len(MS_SSIM_WEIGHTS) - 1)


def _luma(x: Any) -> Any:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 1, H, W)`` BT.601 luma in [0, 255]."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True) + 16.0


def _window(dtype: torch.dtype) -> Any:
    t = torch.arange(_WIN, dtype=dtype) - (_WIN - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * _SIGMA ** 2))
    g = g / g.sum()
    return g


def _blur(x: Any, g: Any) -> Any:
    x = F.conv2d(x, g.view(1, 1, 1, -1))
    return F.conv2d(x, g.view(1, 1, -1, 1))


def _ssim_terms(x: Any, y: Any, g: Any) -> tuple[Any, Any]:
    """Mean luminance term and mean contrast-structure term per image, ``(B,)`` each."""
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx * mx
    syy = _blur(y * y, g) - my * my
    sxy = _blur(x * y, g) - mx * my
    cs = (2 * sxy + _C2) / (sxx + syy + _C2)
    lum = (2 * mx * my + _C1) / (mx * mx + my * my + _C1)
    return lum.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ms_ssim(x: Any, y: Any) -> Any:
    """MS-SSIM of ``x`` against the reference ``y``.

    Args:
        x, y: ``(3, H, W)`` or ``(B, 3, H, W)`` RGB in [0, 1], the same shape.

    Returns:
        a float tensor of shape ``(B,)`` (or ``()`` for single images), 1 for equal images.

    Raises:
        ValueError: different shapes, or a side too short for five scales
            (``11 * 2**4 = 176`` pixels: the window must fit the fifth scale).
    """
    single = x.dim() == 3
    if single:
        x, y = x[None], y[None]
    if x.shape != y.shape:
        raise ValueError(f"MS-SSIM needs images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"MS-SSIM needs sides of at least {MIN_SIDE} px, got {tuple(x.shape[-2:])}")
    x, y = _luma(x.float()), _luma(y.float())  # float32: ample for 8-bit images, and fast
    g = _window(torch.float32)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float32)
    out = torch.ones(x.shape[0], dtype=torch.float32)
    for level, w in enumerate(weights):
        lum, cs = _ssim_terms(x, y, g)
        if level == len(weights) - 1:
            out = out * (lum * cs).clamp_min(0) ** w
        else:
            out = out * cs.clamp_min(0) ** w
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out[0] if single else out


def judge_pair(better: Any, worse: Any, ref_better: Any, ref_worse: Any, same_reference: bool
               ) -> dict[str, Any]:
    """The judge's verdict on a pair the attacker orders as ``better`` > ``worse``.

    Args:
        better, worse: the two images, ``(3, H, W)`` in [0, 1].
        ref_better, ref_worse: their references.
        same_reference: whether both come from the same source (see the module docstring).

    Returns:
        ``{"rule", "ms_ssim_better", "ms_ssim_worse", "verdict"}``: the rule
        (``same-reference`` or ``different-reference``), both MS-SSIM values and
        ``agrees`` / ``disagrees`` / ``tie`` (with the attacker).
    """
    a = float(ms_ssim(better, ref_better))
    b = float(ms_ssim(worse, ref_worse))
    if math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9):
        verdict = "tie"
    else:
        verdict = "agrees" if a > b else "disagrees"
    return {"rule": "same-reference" if same_reference else "different-reference",
            "ms_ssim_better": a, "ms_ssim_worse": b, "verdict": verdict}
