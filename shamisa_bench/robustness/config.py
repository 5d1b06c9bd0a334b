"""Parameters of the robustness protocol, read from ``registry/protocols/robustness.yaml``.

The protocol's ``params`` block (all keys optional; defaults in brackets)::

    types: all | [catalog type names]            [all 26]
    severities: {lo, hi, n} | [s1, s2, ...]      [{lo: 0, hi: 4, n: 9}]
    compositions: {n, min_distortions, max_distortions, sampler}
                                                 [{n: 6, min 2, max 5, sampler: uniform}]
    invariance: {transforms: [hflip, shift1, rescale], rescale_factor: 0.9}
    images: {max_images, size}                   [{max_images: 8, size: 256}]
    head: {dataset}                              [{dataset: demo}]
    blind_srcc: -0.5

Unknown keys and bad values raise ValueError naming the key, so a typo in the registry
fails before anything is computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shamisa_bench.distortions import CATALOG, GROUPS, SEVERITY_SAMPLERS

__all__ = [
    "INVARIANCE_TRANSFORMS",
    "CompositionParams",
    "RobustnessParams",
    "severity_grid",
]

#: Quality-preserving transforms the invariance measurement knows.
INVARIANCE_TRANSFORMS: tuple[str, ...] = ("hflip", "shift1", "rescale")


def severity_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    """``n`` evenly spaced severities from ``lo`` to ``hi`` inclusive, inside [0, 4].

    Raises:
        ValueError: for ``n < 2``, ``lo >= hi`` or a bound outside [0, 4].
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"severities: n must be an int >= 2, got {n!r}")
    if not 0.0 <= float(lo) < float(hi) <= 4.0:
        raise ValueError(f"severities: need 0 <= lo < hi <= 4, got lo={lo!r}, hi={hi!r}")
    step = (float(hi) - float(lo)) / (n - 1)
    return tuple(round(float(lo) + i * step, 10) for i in range(n))


@dataclass(frozen=True)
class CompositionParams:
    """Random compositions used to test that adding a distortion lowers quality.

    Attributes:
        n: compositions drawn (each is applied to every source image).
        min_distortions: fewest distortions in a composition (>= 2).
        max_distortions: most distortions (<= 7, one per group).
        sampler: severity sampler of the engine (``uniform``, ``gaussian``, ``discrete``).
    """

    n: int = 6
    min_distortions: int = 2
    max_distortions: int = 5
    sampler: str = "uniform"

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"compositions.n must be an int >= 0, got {self.n!r}")
        if not 2 <= self.min_distortions <= self.max_distortions <= len(GROUPS):
            raise ValueError(
                "compositions: need 2 <= min_distortions <= max_distortions <= "
                f"{len(GROUPS)}, got {self.min_distortions}..{self.max_distortions}"
            )
        if self.sampler not in SEVERITY_SAMPLERS:
            raise ValueError(f"compositions.sampler must be one of {SEVERITY_SAMPLERS}, "
                             f"got {self.sampler!r}")


@dataclass(frozen=True)
class RobustnessParams:
    """Everything that defines the distorted set and the measurements.

    Attributes:
        types: catalog types measured one at a time.
        severities: the severity grid (indices in [0, 4]); for integer types, grid points
            that round to the same value are measured once.
        compositions: the composition test.
        invariance: quality-preserving transforms (see :data:`INVARIANCE_TRANSFORMS`).
        rescale_factor: scale of the ``rescale`` transform (antialiased bicubic).
        max_images: source images used at most (per image folder or dataset).
        image_size: sources are centre-cropped to a square and resized to this side.
        head_dataset: labelled dataset the ridge head of a feature-probe metric is fit on.
        seed: seed of every random draw of the set (noise fields, compositions).
        blind_srcc: a type whose mean SRCC(severity, quality) is above this is "blind".
    """

    types: tuple[str, ...] = ()
    severities: tuple[float, ...] = field(default_factory=lambda: severity_grid(0.0, 4.0, 9))
    compositions: CompositionParams = field(default_factory=CompositionParams)
    invariance: tuple[str, ...] = INVARIANCE_TRANSFORMS
    rescale_factor: float = 0.9
    max_images: int = 8
    image_size: int = 256
    head_dataset: str = "demo"
    seed: int = 0
    blind_srcc: float = -0.5

    def __post_init__(self) -> None:
        if not self.types:
            object.__setattr__(self, "types", tuple(CATALOG))
        bad = [t for t in self.types if t not in CATALOG]
        if bad:
            raise ValueError(f"unknown distortion type(s) {bad}; valid types: {', '.join(CATALOG)}")
        if len(set(self.types)) != len(self.types):
            raise ValueError(f"types lists a distortion twice: {list(self.types)}")
        sev = tuple(float(s) for s in self.severities)
        if len(sev) < 2 or any(not 0.0 <= s <= 4.0 for s in sev) or list(sev) != sorted(set(sev)):
            raise ValueError(f"severities must be >= 2 increasing values in [0, 4], got {list(sev)}")
        object.__setattr__(self, "severities", sev)
        unknown = [t for t in self.invariance if t not in INVARIANCE_TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown invariance transform(s) {unknown}; valid: {INVARIANCE_TRANSFORMS}")
        if not 0.5 <= float(self.rescale_factor) <= 2.0 or float(self.rescale_factor) == 1.0:
            raise ValueError(f"rescale_factor must be in [0.5, 2] and not 1, got {self.rescale_factor!r}")
        if not isinstance(self.max_images, int) or self.max_images < 1:
            raise ValueError(f"max_images must be an int >= 1, got {self.max_images!r}")
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= 4096:
            raise ValueError(f"image size must be an int in [16, 4096], got {self.image_size!r}")
        if not -1.0 <= float(self.blind_srcc) <= 1.0:
            raise ValueError(f"blind_srcc must be in [-1, 1], got {self.blind_srcc!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, seed: int = 0) -> RobustnessParams:
        """Parse a protocol's ``params`` block (see the module docstring).

        Args:
            params: the mapping from the registry.
            seed: the protocol's ``base_seed`` (the set's seed).

        Raises:
            ValueError: naming the unknown key or the bad value.
        """
        p = dict(params or {})
        allowed = {"types", "severities", "compositions", "invariance", "images", "head",
                   "blind_srcc"}
        extra = sorted(set(p) - allowed)
        if extra:
            raise ValueError(f"robustness params: unknown key(s) {extra}; valid: {sorted(allowed)}")
        kw: dict[str, Any] = {"seed": int(seed)}
        types = p.get("types", "all")
        if types != "all":
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise ValueError(f"robustness params: types must be 'all' or a list of names, got {types!r}")
            kw["types"] = tuple(types)
        sev = p.get("severities")
        if isinstance(sev, Mapping):
            _only(sev, {"lo", "hi", "n"}, "severities")
            kw["severities"] = severity_grid(sev.get("lo", 0.0), sev.get("hi", 4.0), sev.get("n", 9))
        elif isinstance(sev, list):
            kw["severities"] = tuple(float(s) for s in sev)
        elif sev is not None:
            raise ValueError(f"robustness params: severities must be {{lo, hi, n}} or a list, got {sev!r}")
        comp = p.get("compositions") or {}
        _only(comp, {"n", "min_distortions", "max_distortions", "sampler"}, "compositions")
        kw["compositions"] = CompositionParams(**comp)
        inv = p.get("invariance") or {}
        _only(inv, {"transforms", "rescale_factor"}, "invariance")
        if "transforms" in inv:
            kw["invariance"] = tuple(inv["transforms"])
        if "rescale_factor" in inv:
            kw["rescale_factor"] = float(inv["rescale_factor"])
        img = p.get("images") or {}
        _only(img, {"max_images", "size"}, "images")
        if "max_images" in img:
            kw["max_images"] = img["max_images"]
        if "size" in img:
            kw["image_size"] = img["size"]
        head = p.get("head") or {}
        _only(head, {"dataset"}, "head")
        if "dataset" in head:
            kw["head_dataset"] = str(head["dataset"])
        if "blind_srcc" in p:
            kw["blind_srcc"] = float(p["blind_srcc"])
        return cls(**kw)

    def override(self, **changes: Any) -> RobustnessParams:
        """A copy with the non-None ``changes`` applied (CLI options)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready copy for results."""
        return {
            "types": list(self.types),
            "severities": list(self.severities),
            "compositions": {"n": self.compositions.n,
                             "min_distortions": self.compositions.min_distortions,
                             "max_distortions": self.compositions.max_distortions,
                             "sampler": self.compositions.sampler},
            "invariance": list(self.invariance),
            "rescale_factor": self.rescale_factor,
            "max_images": self.max_images,
            "image_size": self.image_size,
            "head_dataset": self.head_dataset,
            "seed": self.seed,
            "blind_srcc": self.blind_srcc,
        }


def _only(block: Any, keys: set[str], what: str) -> None:
    if not isinstance(block, Mapping):
        raise ValueError(f"robustness params: {what} must be a mapping, got {block!r}")
    extra = sorted(set(block) - keys)
    if extra:
        raise ValueError(f"robustness params: {what}: unknown key(s) {extra}; valid: {sorted(keys)}")
