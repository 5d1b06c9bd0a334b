"""Shared plumbing of the distortion functions.

Every distortion type is a :class:`DistortionOp`: an optional ``draw`` that takes all of
the operation's randomness from a generator, and a pure ``apply`` that uses those draws.

- ``draw(generator, n, h, w, vmax) -> Draws`` returns a tuple of tensors whose first
  dimension is ``n`` (one slice per image), on the generator's device. The draws do not
  depend on the values except through ``vmax`` (the largest value of the call, used only
  to size count-like draws, never below the type's largest anchor), so one set of draws
  can be shared by the same image at several severities.
- ``apply(x, values, draws) -> Tensor`` maps ``(N, 3, H, W)`` in [0, 1] plus per-image
  ``values`` (``(N,)`` float64 on the CPU) to the distorted batch (clamped by the caller).

Splitting the randomness out this way is what lets a composition group share its prefix
across levels and still be bitwise equal to applying every level from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DistortionOp",
    "Draws",
    "apply_grouped",
    "per_image",
    "tile_draws",
]

Draws = tuple[Tensor, ...]
ApplyFn = Callable[[Tensor, Tensor, Draws], Tensor]
DrawFn = Callable[[torch.Generator, int, int, int, float], Draws]


@dataclass(frozen=True)
class DistortionOp:
    """The implementation of one catalog type.

    Attributes:
        apply: ``apply(x, values, draws)``, pure.
        draw: ``draw(generator, n, h, w, vmax)``, or None for deterministic types.
    """

    apply: ApplyFn
    draw: DrawFn | None = None


def per_image(values: Tensor, x: Tensor) -> Tensor:
    """``(N,)`` values as ``(N, 1, 1, 1)`` on ``x``'s device and dtype."""
    return values.to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)


def apply_grouped(x: Tensor, values: Tensor, fn: Callable[[Tensor, float, Tensor], Tensor]) -> Tensor:
    """Apply ``fn(x_sub, value, index)`` once per distinct value (for value-shaped kernels).

    Args:
        x: ``(N, C, H, W)``.
        values: ``(N,)`` float64 CPU.
        fn: gets the images sharing one value, the value, and their ``(n_sub,)`` indices.

    Returns:
        ``(N, C, H, W)`` with every image processed by the call of its value.
    """
    uniq = torch.unique(values)
    if uniq.numel() == 1:
        return fn(x, float(uniq[0]), torch.arange(x.shape[0]))
    out = torch.empty_like(x)
    for u in uniq.tolist():
        idx = torch.nonzero(values == u).flatten()
        dev_idx = idx.to(x.device)
        out[dev_idx] = fn(x[dev_idx], float(u), idx)
    return out


def tile_draws(draws: Draws, reps: int) -> Draws:
    """Repeat every draw ``reps`` times along the batch (``[d, d, ..., d]``, level-major)."""
    if reps == 1:
        return draws
    return tuple(d.repeat(reps, *([1] * (d.dim() - 1))) for d in draws)
