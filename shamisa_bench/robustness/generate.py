"""The distorted set of a robustness run: what is generated, under which cache keys.

Three kinds of batches, each generated at most once per run (and only when some metric's
cache misses one of its images):

* **grid** (one batch per type): every source at every distinct value of the severity grid.
  Built with the engine's composition path (a one-type composition whose varying factor
  is the severity), so one call per source gives all levels and the levels share their
  random draws (the same noise field, angle, patch positions): levels differ only in
  severity. Integer types whose grid points round to the same value keep one of them.
* **compositions**: ``n`` random compositions of ``min..max`` distortions (one type per
  group, engine sampler); for each source every prefix (1, 2, ..., n distortions) is an
  image, so adding one distortion at a time can be followed.
* **invariance**: each source as it is (``pristine``) and under the quality-preserving
  transforms (``hflip``, ``shift1``: one pixel right and down with replicated borders,
  ``rescale``: antialiased bicubic by ``rescale_factor``).

Every image is rounded to 8 bits. Its cache key is a sha256 of the source's content
identity, the operation (types, applied values, operation seeds), the image size and the
engine fingerprint (a hash of what every type does to a fixed probe image, see
:func:`engine_fingerprint`), so a change of any of them misses the cache, and adding or
removing a source leaves the others' entries valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from shamisa_bench.distortions import (
    CATALOG,
    apply_composition_group,
    make_composition,
    sample_composition,
    severity_to_value,
)
from shamisa_bench.harness.cache import canonical_json
from shamisa_bench.robustness.config import RobustnessParams
from shamisa_bench.robustness.sources import SourceSet, quantize8

__all__ = [
    "Batch",
    "DistortedSet",
    "GridType",
    "build_set",
    "engine_fingerprint",
    "grid_name",
    "invariance_name",
]


@lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """What the engine does, hashed: sha256 (first 16 hex) of every catalog type.

    Each type (its name, group and anchors) is applied at severities 0, 2 and 4 to a fixed
    48 x 48 probe image with a fixed seed, through the same composition path the grid uses,
    and the 8-bit results are hashed. A change of the engine's numbers changes the
    fingerprint (and misses the cache); reformatting or moving code does not.
    """
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    checker = ((torch.arange(48)[:, None] // 6 + torch.arange(48)[None, :] // 6) % 2).float()
    probe = torch.stack([0.15 + 0.7 * xx, 0.15 + 0.7 * yy, 0.2 + 0.6 * checker])[None]
    h = hashlib.sha256()
    with torch.inference_mode():
        for name, entry in CATALOG.items():
            plan = make_composition([name], [0.0], [0.0, 2.0, 4.0], 0, [12345])
            y, _ = apply_composition_group(probe, plan)
            h.update(canonical_json([name, entry.group, list(entry.anchors), entry.integer]).encode())
            h.update((quantize8(y) * 255).round().to(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _seed(*parts: object) -> int:
    """A 60-bit seed derived from ``parts`` (stable across machines and runs)."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def grid_name(source: str, dtype: str, severity: float) -> str:
    """Name of a grid image, e.g. ``demo/camera/gaussian_blur@s2.5``."""
    return f"{source}/{dtype}@s{severity:.4g}"


def invariance_name(source: str, transform: str) -> str:
    """Name of an invariance image, e.g. ``demo/camera/inv:hflip``."""
    return f"{source}/inv:{transform}"


@dataclass(frozen=True)
class GridType:
    """The severity levels measured for one type.

    Attributes:
        type: catalog name.
        severities: ``(L,)`` applied severity indices, increasing, one per distinct value.
        values: ``(L,)`` the type's parameter values actually applied.
        op_seed: seed of the type's random draws (shared by every source and level).
    """

    type: str
    severities: tuple[float, ...]
    values: tuple[float, ...]
    op_seed: int


@dataclass(frozen=True)
class Batch:
    """Images generated together.

    Attributes:
        kind: ``grid``, ``composition`` or ``invariance``.
        label: the type name, ``composition <i>`` or ``invariance``.
        names: ``(B,)`` image names.
        keys: ``(B,)`` cache keys.
        make: generates the images: a list of B ``(3, H, W)`` tensors in [0, 1].
    """

    kind: str
    label: str
    names: tuple[str, ...]
    keys: tuple[str, ...]
    make: Callable[[], list[Any]]


@dataclass(frozen=True)
class DistortedSet:
    """The whole set: sources, grid, compositions, invariance, and their batches.

    Attributes:
        sources: the source images.
        params: the protocol parameters.
        grid: one entry per measured type.
        compositions: the composition plans (``n_levels == 1``).
        batches: all batches (invariance first, then grid types, then compositions).
        engine: :func:`engine_fingerprint`.
        sha256: hash of every image key: two runs with equal sha256 scored the same images.
    """

    sources: SourceSet
    params: RobustnessParams
    grid: tuple[GridType, ...]
    compositions: tuple[Any, ...]
    batches: tuple[Batch, ...]
    engine: str
    sha256: str

    @property
    def n_images(self) -> int:
        """Images in the set."""
        return sum(len(b.names) for b in self.batches)

    def record(self) -> dict[str, Any]:
        """A JSON-ready description (stored with every metric's measurements)."""
        return {
            "sha256": self.sha256,
            "engine": self.engine,
            "n_images": self.n_images,
            "sources": [{"name": n, "identity": i}
                        for n, i in zip(self.sources.names, self.sources.identities)],
            "origins": list(self.sources.origins),
            "skipped_sources": [{"name": n, "reason": r} for n, r in self.sources.skipped],
            "params": self.params.as_record(),
            "grid": [{"type": g.type, "severities": list(g.severities), "values": list(g.values)}
                     for g in self.grid],
            "compositions": [{"types": list(p.types),
                              "severities": [float(s) for s in p.severities[0].tolist()],
                              "values": [float(v) for v in p.values[0].tolist()]}
                             for p in self.compositions],
        }


def _key(identity: str, size: int, engine: str, op: dict[str, Any]) -> str:
    payload = canonical_json({"source": identity, "size": size, "engine": engine, "op": op})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _grid_type(name: str, severities: tuple[float, ...], seed: int) -> GridType:
    sev: list[float] = []
    val: list[float] = []
    for s in severities:
        v, actual = severity_to_value(name, s)
        if v not in val:
            val.append(v)
            sev.append(actual)
    return GridType(name, tuple(sev), tuple(val), _seed(seed, "grid", name))


def _transform(x: Any, name: str, factor: float) -> Any:
    """A quality-preserving transform of ``(1, 3, H, W)``."""
    if name == "hflip":
        return x.flip(-1)
    if name == "shift1":
        h, w = x.shape[-2:]
        return F.pad(x, (1, 0, 1, 0), mode="replicate")[..., :h, :w]
    if name == "rescale":
        return F.interpolate(x, scale_factor=factor, mode="bicubic", antialias=True,
                             align_corners=False, recompute_scale_factor=False)
    raise ValueError(f"unknown invariance transform {name!r}")


def _sample_compositions(cp: Any, seed: int) -> tuple[Any, ...]:
    """``cp.n`` plans with ``min..max`` distortions, drawn from one seeded generator."""
    gen = torch.Generator().manual_seed(_seed(seed, "compositions"))
    plans = []
    while len(plans) < cp.n:  # rejection keeps the engine's sampler; n is uniform on min..max
        plan = sample_composition(cp.max_distortions, 1, cp.sampler, generator=gen)
        if len(plan.types) >= cp.min_distortions:
            plans.append(plan)
    return tuple(plans)


def _prefix(plan: Any, k: int) -> Any:
    """The plan of the first ``k`` distortions of ``plan`` (same values and seeds)."""
    sev = [float(s) for s in plan.severities[0, :k].tolist()]
    return make_composition(plan.types[:k], sev, [sev[0]], 0, plan.op_seeds[:k])


def build_set(sources: SourceSet, params: RobustnessParams) -> DistortedSet:
    """Plan the distorted set (nothing is generated until a batch's ``make`` is called).

    Raises:
        ValueError: for inconsistent parameters.
    """
    engine = engine_fingerprint()
    size = params.image_size
    x = sources.pixels
    src = list(zip(sources.names, sources.identities))
    batches: list[Batch] = []

    inv = ("pristine", *params.invariance)
    names, keys = [], []
    for s, ident in src:
        for t in inv:
            names.append(f"{s}/pristine" if t == "pristine" else invariance_name(s, t))
            op = {"pristine": True} if t == "pristine" else {"transform": t, "factor": (
                params.rescale_factor if t == "rescale" else None)}
            keys.append(_key(ident, size, engine, op))

    def make_inv() -> list[Any]:
        out = []
        for i in range(len(src)):
            for t in inv:
                xi = x[i:i + 1]
                out.append(xi[0] if t == "pristine" else
                           quantize8(_transform(xi, t, params.rescale_factor))[0])
        return out

    batches.append(Batch("invariance", "invariance", tuple(names), tuple(keys), make_inv))

    grid = tuple(_grid_type(t, params.severities, params.seed) for t in params.types)
    for g in grid:
        names, keys = [], []
        for s, ident in src:
            for sev, val in zip(g.severities, g.values):
                names.append(grid_name(s, g.type, sev))
                keys.append(_key(ident, size, engine, {"type": g.type, "value": val,
                                                       "seed": g.op_seed}))

        def make_grid(g: GridType = g) -> list[Any]:
            plan = make_composition([g.type], [g.severities[0]], list(g.severities), 0, [g.op_seed])
            out = []
            for i in range(len(src)):
                y, _ = apply_composition_group(x[i:i + 1], plan)  # (L, 3, H, W)
                out += list(quantize8(y))
            return out

        batches.append(Batch("grid", g.type, tuple(names), tuple(keys), make_grid))

    plans = _sample_compositions(params.compositions, params.seed)
    for c, plan in enumerate(plans):
        n = len(plan.types)
        names, keys = [], []
        for s, ident in src:
            for k in range(1, n + 1):
                names.append(f"{s}/comp{c}:k{k}")
                keys.append(_key(ident, size, engine, {
                    "types": list(plan.types[:k]),
                    "values": [float(v) for v in plan.values[0, :k].tolist()],
                    "seeds": list(plan.op_seeds[:k])}))

        def make_comp(plan: Any = plan, n: int = n) -> list[Any]:
            prefixes = [_prefix(plan, k) for k in range(1, n + 1)]
            out = []
            for i in range(len(src)):
                for p in prefixes:
                    y, _ = apply_composition_group(x[i:i + 1], p)
                    out.append(quantize8(y)[0])
            return out

        batches.append(Batch("composition", f"composition {c}", tuple(names), tuple(keys), make_comp))

    all_keys = [k for b in batches for k in b.keys]
    if len(set(all_keys)) != len(all_keys):
        raise ValueError("two generated images share a cache key (duplicate sources?)")
    digest = hashlib.sha256("\n".join(all_keys).encode()).hexdigest()[:32]
    return DistortedSet(sources, params, grid, plans, tuple(batches), engine, digest)
