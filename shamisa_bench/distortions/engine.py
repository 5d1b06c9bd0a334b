"""Apply one distortion type to a batch: value checks, randomness, dtype and clamping."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

from shamisa_bench.distortions import (
    blur,
    brightness,
    color,
    compression,
    noise,
    sharpness,
    spatial,
)
from shamisa_bench.distortions.base import DistortionOp, Draws
from shamisa_bench.distortions.catalog import CATALOG, check_type, severity_to_value

__all__ = [
    "OPS",
    "TypeTimes",
    "apply_distortion",
    "apply_with_draws",
    "check_images",
    "distort",
    "draw_randomness",
    "record_type_times",
    "values_for",
]

TypeTimes = dict[str, list[float]]
"""Per type: ``[seconds, crops]`` accumulated by :func:`record_type_times`."""

_TIMES: ContextVar[TypeTimes | None] = ContextVar("shamisa_type_times", default=None)


@contextmanager
def record_type_times() -> Iterator[TypeTimes]:
    """Accumulate, per distortion type, wall time and crops of every apply in this context.

    For profiling (``shamisa-bench perf engine``). On CUDA each apply synchronises the
    device so the time is the type's own.

    Yields:
        A dict ``type -> [seconds, crops]``, filled as distortions are applied.
    """
    times: TypeTimes = {}
    token = _TIMES.set(times)
    try:
        yield times
    finally:
        _TIMES.reset(token)


OPS: dict[str, DistortionOp] = {
    **blur.OPS,
    **color.OPS,
    **compression.OPS,
    **noise.OPS,
    **brightness.OPS,
    **spatial.OPS,
    **sharpness.OPS,
}
if set(OPS) != set(CATALOG):  # pragma: no cover - a programming error, caught by the tests too
    raise RuntimeError(f"engine and catalog disagree: {sorted(set(OPS) ^ set(CATALOG))}")


def check_images(x: object, what: str = "x") -> Tensor:
    """Check that ``x`` is an ``(N, 3, H, W)`` floating tensor and return it.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.
        ValueError: if its shape is not ``(N, 3, H, W)`` with N, H, W >= 1.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3 or min(x.shape) < 1:
        raise ValueError(f"{what} must have shape (N, 3, H, W), got {tuple(x.shape)}")
    return x


def values_for(name: str, value: float | Sequence[float] | Tensor, n: int) -> Tensor:
    """Per-image values ``(n,)`` float64 on the CPU, checked against the type's domain.

    Integer types are rounded half-up. A scalar is shared by all ``n`` images.

    Raises:
        ValueError: for an unknown type, a wrong number of values, or a value that is not
            finite or lies outside the type's domain.
    """
    entry = check_type(name)
    v = torch.as_tensor(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=torch.float64)
    if v.dim() == 0:
        v = v.expand(n)
    if v.dim() != 1 or v.shape[0] != n:
        raise ValueError(f"{name}: expected a scalar value or {n} per-image values, got shape {tuple(v.shape)}")
    lo, hi = entry.domain
    bad = ~torch.isfinite(v) | (v < lo) | (v > hi)
    if bool(bad.any()):
        raise ValueError(f"{name}: value {v[bad][0].item()!r} is outside its domain [{lo}, {hi}]")
    if entry.integer:
        v = torch.floor(v + 0.5)
    return v.contiguous()


def draw_randomness(name: str, generator: torch.Generator | None, n: int, h: int, w: int, vmax: float) -> Draws:
    """The random draws ``name`` needs for ``n`` images of ``h x w`` (empty if none).

    Raises:
        ValueError: if the type is random and no generator was given.
    """
    op = OPS[check_type(name).name]
    if op.draw is None:
        return ()
    if generator is None:
        raise ValueError(f"{name} is random: pass an explicit generator (a torch.Generator)")
    anchors_max = max(abs(a) for a in CATALOG[name].anchors)
    return op.draw(generator, n, h, w, max(float(vmax), anchors_max))


def apply_with_draws(x: Tensor, name: str, values: Tensor, draws: Draws) -> Tensor:
    """Apply ``name`` with checked per-image ``values`` and pre-drawn randomness.

    Half-precision inputs are computed in float32; the output has ``x``'s dtype and
    device and is clamped to [0, 1].
    """
    times = _TIMES.get()
    if times is not None:
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
    # Contiguous first: strided views (crops of a larger image) are orders of magnitude
    # slower in the elementwise kernels.
    work = (x if x.dtype in (torch.float32, torch.float64) else x.float()).contiguous()
    out = OPS[name].apply(work, values, draws).clamp(0.0, 1.0).to(x.dtype)
    if times is not None:
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        entry = times.setdefault(name, [0.0, 0.0])
        entry[0] += time.perf_counter() - start
        entry[1] += x.shape[0]
    return out


def apply_distortion(
    x: Tensor,
    name: str,
    value: float | Sequence[float] | Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply distortion ``name`` with parameter ``value`` to a batch.

    Args:
        x: ``(N, 3, H, W)`` float in [0, 1], on CPU or CUDA.
        name: a catalog type (see ``shamisa-bench distortions ls``).
        value: the type's own parameter (e.g. sigma, JPEG quality), a scalar or ``(N,)``
            per-image values; integer types are rounded half-up.
        generator: source of all randomness; required for the random types (motion_blur,
            color_shift, noise, jitter, non_eccentricity_patch, color_block). Draws are
            made on the generator's device and moved to ``x``'s.

    Returns:
        ``(N, 3, H, W)``, same dtype and device as ``x``, clamped to [0, 1].

    Raises:
        TypeError: if ``x`` is not a floating tensor.
        ValueError: for a bad shape, an unknown type (the message lists the valid ones),
            a value outside the type's domain, or a random type without a generator.
    """
    x = check_images(x)
    values = values_for(name, value, x.shape[0])
    n, _, h, w = x.shape
    draws = draw_randomness(name, generator, n, h, w, float(values.max()) if n else 0.0)
    return apply_with_draws(x, name, values, draws)


def distort(
    x: Tensor,
    name: str,
    severity: float | Sequence[float] | Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply ``name`` at severity index ``severity`` in [0, 4] (scalar or ``(N,)``).

    The severity maps to a value with :func:`severity_to_value` (integer types rounded).

    Raises:
        ValueError: as :func:`apply_distortion`, and for a severity outside [0, 4].
    """
    x = check_images(x)
    s = torch.as_tensor(severity.detach().cpu() if isinstance(severity, Tensor) else severity, dtype=torch.float64)
    flat = s.reshape(-1).tolist()
    vals = [severity_to_value(name, v)[0] for v in flat]
    value: float | list[float] = vals[0] if s.dim() == 0 else vals
    return apply_distortion(x, name, value, generator=generator)
