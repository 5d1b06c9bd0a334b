"""The 26 distortion types of SHAMISA's engine, their anchors and continuous severity.

Seven groups, each type with the five KADID-10k "anchor" values of its own parameter
(as SHAMISA defines them). A severity index ``s`` in [0, 4] (0 = level 1, 4 = level 5)
maps to a value by linear interpolation between the two neighbouring anchors.

Integer types round the interpolated value half-up (``floor(v + 0.5)``, never banker's
rounding) and report the severity recomputed from the rounded value by inverse
interpolation *on the segment the severity came from*. Interpolated values stay inside
their segment and integer anchors bound every segment, so the rounded value is still on
it and the recomputed index maps back to exactly the applied value. This works for
increasing, decreasing and non-monotone anchors alike. A flat segment (two equal
neighbouring anchors) maps every severity on it to the same value, so there the severity
is kept unchanged. :func:`value_to_severity`, the inverse from a bare value, returns the
smallest severity that gives the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CATALOG",
    "GROUPS",
    "SEVERITY_SAMPLERS",
    "DistortionType",
    "check_type",
    "parse_type_names",
    "sample_severities",
    "severity_to_value",
    "types_in_group",
    "value_to_severity",
]

GROUPS: tuple[str, ...] = (
    "blur",
    "color",
    "compression",
    "noise",
    "brightness",
    "spatial",
    "sharpness_contrast",
)

SEVERITY_SAMPLERS: tuple[str, ...] = ("gaussian", "uniform", "discrete")

MAX_SEVERITY = 4.0


@dataclass(frozen=True)
class DistortionType:
    """One distortion type of the catalog.

    Attributes:
        name: the type's name, e.g. ``gaussian_blur``.
        group: one of :data:`GROUPS`.
        anchors: the parameter values at the five levels (severity 0, 1, 2, 3, 4).
        integer: True when the parameter is an integer (values are rounded).
        description: one line saying what the type does and what its value means.
        domain: inclusive ``(low, high)`` range of values :func:`apply_distortion` accepts.
    """

    name: str
    group: str
    anchors: tuple[float, float, float, float, float]
    integer: bool
    description: str
    domain: tuple[float, float] = (-math.inf, math.inf)

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: unknown group {self.group!r}; choose one of {GROUPS}")
        if len(self.anchors) != 5:
            raise ValueError(f"{self.name}: needs 5 anchors, got {len(self.anchors)}")
        if self.integer and any(a != math.floor(a) for a in self.anchors):
            raise ValueError(f"{self.name}: an integer type needs integer anchors, got {self.anchors}")
        lo, hi = self.domain
        if not all(lo <= a <= hi for a in self.anchors):
            raise ValueError(f"{self.name}: anchors {self.anchors} fall outside the domain {self.domain}")


_INF = math.inf
_ENTRIES = (
    # blur
    DistortionType(
        "gaussian_blur",
        "blur",
        (0.1, 0.5, 1.0, 2.0, 5.0),
        False,
        "Gaussian filter of sigma = value, kernel 2*ceil(2 sigma)+1, replicate borders",
        (0.0, 50.0),
    ),
    DistortionType(
        "lens_blur", "blur", (1, 2, 4, 6, 8), True, "anti-aliased disk filter of radius = value pixels", (0, 64)
    ),
    DistortionType(
        "motion_blur",
        "blur",
        (1, 2, 4, 6, 10),
        True,
        "anti-aliased line filter of length = value pixels (1 = none) at a random angle in [0, 180)",
        (0, 64),
    ),
    # color
    DistortionType(
        "color_diffusion",
        "color",
        (1, 3, 6, 8, 12),
        True,
        "Lab a*b* (of the R/B-exchanged image, as the reference) blurred with sigma 1.5*value+2, scaled by value",
        (0, 24),
    ),
    DistortionType(
        "color_shift",
        "color",
        (1, 3, 6, 8, 12),
        True,
        "green channel shifted by value pixels (rounded per axis) in a random direction, blended on edges",
        (0, 64),
    ),
    DistortionType(
        "color_saturation_hsv",
        "color",
        (0.4, 0.2, 0.1, 0.0, -0.4),
        False,
        "HSV saturation multiplied by value (negative values invert the chroma)",
        (-2.0, 2.0),
    ),
    DistortionType(
        "color_saturation_lab",
        "color",
        (1, 2, 3, 6, 9),
        True,
        "Lab a*b* (of the R/B-exchanged image, as the reference) multiplied by value",
        (0, 20),
    ),
    # compression
    DistortionType(
        "jpeg2000",
        "compression",
        (16, 32, 45, 120, 170),
        True,
        "JPEG 2000 encode/decode (OpenJPEG) at compression ratio = value",
        (1, 1000),
    ),
    DistortionType("jpeg", "compression", (43, 36, 24, 7, 4), True, "JPEG encode/decode at quality = value", (1, 100)),
    # noise
    DistortionType(
        "white_noise",
        "noise",
        (0.001, 0.002, 0.003, 0.005, 0.01),
        False,
        "additive Gaussian noise in RGB of variance = value",
        (0.0, 1.0),
    ),
    DistortionType(
        "white_noise_cc",
        "noise",
        (0.0001, 0.0005, 0.001, 0.002, 0.003),
        False,
        "additive Gaussian noise in YCbCr of variance = value",
        (0.0, 1.0),
    ),
    DistortionType(
        "impulse_noise",
        "noise",
        (0.001, 0.005, 0.01, 0.02, 0.03),
        False,
        "salt and pepper: a fraction = value of samples hit, half set to 0, half to 1",
        (0.0, 1.0),
    ),
    DistortionType(
        "multiplicative_noise",
        "noise",
        (0.001, 0.005, 0.01, 0.02, 0.05),
        False,
        "speckle x + x*n, n Gaussian of variance = value",
        (0.0, 1.0),
    ),
    # brightness
    DistortionType(
        "brighten",
        "brightness",
        (0.1, 0.2, 0.4, 0.7, 1.1),
        False,
        "tone curve through (0.5, 0.5+value/2), mixed 2:1 between RGB and Lab-L",
        (0.0, 2.0),
    ),
    DistortionType(
        "darken",
        "brightness",
        (0.05, 0.1, 0.2, 0.4, 0.8),
        False,
        "tone curve through (0.5, 0.5-value/2), mixed 2:1 between RGB and Lab-L",
        (0.0, 2.0),
    ),
    DistortionType(
        "mean_shift_down",
        "brightness",
        (0.0, -0.08, -0.115, -0.15, -0.185),
        False,
        "adds value (negative) to every sample",
        (-1.0, 1.0),
    ),
    DistortionType(
        "mean_shift_up", "brightness", (0.0, 0.08, 0.115, 0.15, 0.185), False, "adds value to every sample", (-1.0, 1.0)
    ),
    # spatial
    DistortionType(
        "jitter",
        "spatial",
        (0.05, 0.1, 0.2, 0.5, 1.0),
        False,
        "5 iterations of bilinear resampling at Gaussian random offsets of std = value pixels",
        (0.0, 16.0),
    ),
    DistortionType(
        "non_eccentricity_patch",
        "spatial",
        (20, 40, 60, 80, 100),
        True,
        "value 16x16 patches copied to random offsets within 8 pixels per axis",
        (0, 1000),
    ),
    DistortionType(
        "pixelate",
        "spatial",
        (0.01, 0.05, 0.1, 0.2, 0.5),
        False,
        "nearest down-scale by 0.95 - value^0.6, nearest up-scale back",
        (0.0, 0.9),
    ),
    DistortionType(
        "quantization",
        "spatial",
        (20, 16, 13, 10, 7),
        True,
        "intensities binned into value equal-width levels, bin indices stretched onto [0, 1]",
        (2, 256),
    ),
    DistortionType(
        "color_block",
        "spatial",
        (2, 4, 6, 8, 10),
        True,
        "value random-colour 32x32 blocks pasted at random places",
        (0, 1000),
    ),
    # sharpness and contrast
    DistortionType(
        "high_sharpen",
        "sharpness_contrast",
        (1, 2, 3, 6, 12),
        True,
        "unsharp mask of amount = value on Lab-L (13x13 Gaussian of sigma 6)",
        (0, 50),
    ),
    DistortionType(
        "contrast_down",
        "sharpness_contrast",
        (0.0, -0.15, -0.3, -0.4, -0.6),
        False,
        "spline contrast curve, lower contrast for value < 0 (0 = none; see sharpness.contrast_offset)",
        (-0.99, 4.0),
    ),
    DistortionType(
        "contrast_up",
        "sharpness_contrast",
        (0.0, 0.15, 0.3, 0.4, 0.6),
        False,
        "spline contrast curve, higher contrast for value > 0 (0 = none; see sharpness.contrast_offset)",
        (-0.99, 4.0),
    ),
    DistortionType(
        "nonlinear_contrast",
        "sharpness_contrast",
        (0.4, 0.3, 0.2, 0.1, 0.05),
        False,
        "map [0, 1] linearly onto [0.5-value, 0.5+value] (lower contrast)",
        (0.001, 0.5),
    ),
)

CATALOG: dict[str, DistortionType] = {entry.name: entry for entry in _ENTRIES}


def types_in_group(group: str) -> tuple[str, ...]:
    """Names of the catalog types of ``group``, in catalog order.

    Raises:
        ValueError: if ``group`` is not one of :data:`GROUPS`.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown distortion group {group!r}; choose one of {', '.join(GROUPS)}")
    return tuple(entry.name for entry in _ENTRIES if entry.group == group)


def parse_type_names(text: str) -> tuple[str, ...]:
    """Catalog types named by a comma-separated list of type and group names.

    A group name stands for all its types (``blur`` = the three blurs). The result is in
    catalog order, each type once.

    Raises:
        ValueError: for an empty list or a name that is neither a type nor a group.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"no distortion type or group named in {text!r}")
    chosen: set[str] = set()
    for name in names:
        if name in GROUPS:
            chosen.update(types_in_group(name))
        elif name in CATALOG:
            chosen.add(name)
        else:
            raise ValueError(f"{name!r} is neither a distortion type nor a group; groups: {', '.join(GROUPS)}; "
                             f"types: {', '.join(CATALOG)}")
    return tuple(entry.name for entry in _ENTRIES if entry.name in chosen)


def check_type(name: str) -> DistortionType:
    """The catalog entry of ``name``.

    Raises:
        ValueError: if ``name`` is not a catalog type; the message lists the valid names.
    """
    entry = CATALOG.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"unknown distortion type {name!r}; valid types: {', '.join(CATALOG)}")
    return entry


def _round_half_up(value: float) -> float:
    return float(math.floor(value + 0.5))


def severity_to_value(name: str, severity: float) -> tuple[float, float]:
    """Map a severity index to the type's parameter value.

    Args:
        name: a catalog type name.
        severity: severity index in [0, 4] (0 = first anchor, 4 = last anchor).

    Returns:
        ``(value, actual_severity)``: the interpolated value (rounded half-up for integer
        types) and the severity index that gives exactly that value (equal to
        ``severity`` for continuous types).

    Raises:
        ValueError: for an unknown type or a severity outside [0, 4] (or not a number).
    """
    entry = check_type(name)
    try:
        s = float(severity)
    except (TypeError, ValueError):
        raise ValueError(f"severity must be a number in [0, 4], got {severity!r}") from None
    if not 0.0 <= s <= MAX_SEVERITY:  # also rejects NaN
        raise ValueError(f"severity must be in [0, 4], got {severity!r} for {name}")
    seg = min(math.floor(s), 3)
    lo, hi = entry.anchors[seg], entry.anchors[seg + 1]
    value = lo + (s - seg) * (hi - lo)
    if not entry.integer:
        return float(value), s
    value = _round_half_up(value)
    if hi == lo:  # flat segment: every severity on it gives this value
        return value, s
    actual = seg + (value - lo) / (hi - lo)
    return value, float(min(max(actual, float(seg)), float(seg + 1)))


def value_to_severity(name: str, value: float) -> float:
    """Inverse of the anchor interpolation: the smallest severity that gives ``value``.

    Raises:
        ValueError: for an unknown type or a value outside the anchors' range.
    """
    entry = check_type(name)
    v = float(value)
    a = entry.anchors
    for seg in range(4):
        lo, hi = a[seg], a[seg + 1]
        if min(lo, hi) <= v <= max(lo, hi):
            return float(seg) if hi == lo else seg + (v - lo) / (hi - lo)
    raise ValueError(f"value {value!r} is outside the anchor range {a} of {name}")


def sample_severities(n: int, sampler: str = "gaussian", *, generator: torch.Generator) -> Tensor:
    """Draw ``n`` severity indices in [0, 4].

    Args:
        n: how many to draw (>= 0).
        sampler: ``gaussian`` (clip(|N(0, 2.5)|, 0, 4), the reference default),
            ``uniform`` (U[0, 4]) or ``discrete`` (integers 0..4, uniformly).
        generator: the only source of randomness.

    Returns:
        ``(n,)`` float32 tensor on the generator's device.

    Raises:
        ValueError: for an unknown sampler or a negative ``n``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    device = generator.device
    if sampler == "gaussian":
        return (torch.randn(n, generator=generator, device=device) * 2.5).abs().clamp(0.0, MAX_SEVERITY)
    if sampler == "uniform":
        return torch.rand(n, generator=generator, device=device) * MAX_SEVERITY
    if sampler == "discrete":
        return torch.randint(0, 5, (n,), generator=generator, device=device).to(torch.float32)
    raise ValueError(f"unknown severity sampler {sampler!r}; choose one of {', '.join(SEVERITY_SAMPLERS)}")
