"""The image pool of a gMAD competition or an embedding map.

Two kinds of pool:

* **synthetic** (the default): pristine source images under every distortion type of the
  engine over the robustness protocol's severity grid, plus the sources themselves. It is
  the robustness set's grid and pristine images (:func:`~shamisa_bench.robustness.generate.build_set`
  with no compositions and no invariance transforms), so with the same sources, size and
  seed every pool image has the cache key of the robustness image it equals: a metric
  already measured by the robustness report scores the pool from its cache, and the other
  way round. Each image's reference (its source) is known.
* **folder**: a user's folder of images, as they are. Cache keys are the harness's file keys
  (path, size, modification time), shared with ``run`` on the same files. No reference is
  known.

Default sources: ``<data root>/pristine/bsds500/test`` (the held-out BSDS500 test images),
24 of them chosen evenly over the sorted file list, centre-cropped and resized to 224 px,
the sources of the committed robustness report ``pristine-bsds500-test``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.common.imageio import IMAGE_SUFFIXES, list_images, load_image
from shamisa_bench.distortions import CATALOG
from shamisa_bench.harness.cache import image_key
from shamisa_bench.harness.data import default_data_root
from shamisa_bench.robustness.config import CompositionParams, RobustnessParams
from shamisa_bench.robustness.generate import build_set
from shamisa_bench.robustness.sources import load_sources

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_SOURCES",
    "DEFAULT_SOURCES",
    "PRISTINE",
    "Pool",
    "PoolBatch",
    "folder_pool",
    "synthetic_pool",
]

#: Default source folder of the synthetic pool, relative to the data root.
DEFAULT_SOURCES = Path("pristine") / "bsds500" / "test"
#: Default number of source images (those of the robustness report ``pristine-bsds500-test``).
DEFAULT_MAX_SOURCES = 24
#: Default side of the square source images.
DEFAULT_IMAGE_SIZE = 224
#: Distortion type (and group) label of a source image in a synthetic pool.
PRISTINE = "pristine"
#: Images per generation batch of a folder pool.
_FOLDER_BATCH = 64


@dataclass(frozen=True)
class PoolBatch:
    """Pool images generated (or decoded) together.

    Attributes:
        label: what the batch holds (a type name, ``pristine``, ``files 0-63``).
        index: ``(B,)`` positions of its images in the pool.
        make: returns the B images, ``(3, H, W)`` float tensors in [0, 1] (an exception
            instead of an image that could not be decoded).
    """

    label: str
    index: tuple[int, ...]
    make: Callable[[], list[Any]]


@dataclass(frozen=True)
class Pool:
    """The pool: one entry per image, plus how to make the images.

    Attributes:
        name: a short name for results (``bsds500-test-224px-24src`` or the folder's name).
        kind: ``synthetic`` or ``folder``.
        names: ``(N,)`` image names (``<source>/<type>@s<severity>`` or ``<source>/pristine``).
        keys: ``(N,)`` cache keys.
        reference: ``(N,)`` index of the image's source in ``sources`` (-1: unknown).
        types: ``(N,)`` distortion type (``pristine`` for a source; empty: unknown).
        groups: ``(N,)`` distortion group (``pristine`` for a source; empty: unknown).
        severity: ``(N,)`` severity index in [0, 4] (NaN: a source, or unknown).
        batches: how to make the images.
        sources: ``(S, 3, H, W)`` the reference images of a synthetic pool, else None.
        record: a JSON-ready description for results (origin, parameters, sha256 of the keys).
    """

    name: str
    kind: str
    names: tuple[str, ...]
    keys: tuple[str, ...]
    reference: NDArray[np.intp]
    types: tuple[str, ...]
    groups: tuple[str, ...]
    severity: NDArray[np.float64]
    batches: tuple[PoolBatch, ...]
    sources: Any = None
    record: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        sizes = {len(self.keys), len(self.types), len(self.groups), int(self.reference.shape[0]),
                 int(self.severity.shape[0]), sum(len(b.index) for b in self.batches)}
        if sizes != {n}:
            raise ValueError(f"pool {self.name}: {n} names but fields of sizes {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_references(self) -> bool:
        """Whether every image's reference is known (a synthetic pool)."""
        return self.sources is not None and bool((self.reference >= 0).all())

    def images(self, index: Sequence[int]) -> dict[int, Any]:
        """The images at ``index`` (their batches are made once each): position -> tensor."""
        want = {int(i) for i in index}
        out: dict[int, Any] = {}
        for batch in self.batches:
            if want.isdisjoint(batch.index):
                continue
            made = batch.make()
            for pos, img in zip(batch.index, made):
                if pos in want:
                    out[pos] = img
        return out


def _digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]


def synthetic_pool(
    sources: str | Path | None = None,
    *,
    data_root: Path | None = None,
    max_sources: int = DEFAULT_MAX_SOURCES,
    image_size: int = DEFAULT_IMAGE_SIZE,
    params: RobustnessParams | None = None,
) -> Pool:
    """The synthetic pool (see the module docstring).

    Args:
        sources: folder of pristine images (default: ``<data root>/pristine/bsds500/test``).
        data_root: the data root (default: ``$SHAMISA_BENCH_DATA`` or ``./datasets``).
        max_sources: source images used, chosen evenly over the folder's sorted files.
        image_size: side of the square sources.
        params: the robustness parameters giving types, severities and seed (default: the
            robustness protocol's defaults); compositions and invariance are dropped.

    Raises:
        FileNotFoundError: the source folder does not exist (the message says how to give one).
        ValueError: the folder holds no readable image, or bad parameters.
    """
    folder = Path(sources) if sources is not None else (data_root or default_data_root()) / DEFAULT_SOURCES
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: source folder of the synthetic pool not found; pass --sources DIR (pristine "
            f"images) or --data-root holding {DEFAULT_SOURCES.as_posix()}, or --pool DIR to use a folder "
            "of images as the pool")
    base = params if params is not None else RobustnessParams()
    params = replace(base, compositions=CompositionParams(n=0), invariance=(),
                     max_images=max_sources, image_size=image_size)
    src = load_sources(folders=[folder], max_images=max_sources, size=image_size)
    dset = build_set(src, params)
    names: list[str] = []
    keys: list[str] = []
    ref: list[int] = []
    types: list[str] = []
    sev: list[float] = []
    batches: list[PoolBatch] = []
    for b in dset.batches:
        start = len(names)
        names += b.names
        keys += b.keys
        if b.kind == "invariance":  # the pristine sources, one per source (no transforms)
            ref += range(len(b.names))
            types += [PRISTINE] * len(b.names)
            sev += [float("nan")] * len(b.names)
            label = PRISTINE
        else:
            grid = next(g for g in dset.grid if g.type == b.label)
            n_lev = len(grid.severities)
            ref += [i // n_lev for i in range(len(b.names))]
            types += [grid.type] * len(b.names)
            sev += [grid.severities[i % n_lev] for i in range(len(b.names))]
            label = grid.type
        batches.append(PoolBatch(label, tuple(range(start, len(names))), b.make))
    groups = [PRISTINE if t == PRISTINE else CATALOG[t].group for t in types]
    record = {
        "kind": "synthetic",
        "n_images": len(names),
        "sha256": _digest(keys),
        "sources": {"folder": folder.name, "n": len(src.names), "names": list(src.names),
                    "skipped": [{"name": n, "reason": r} for n, r in src.skipped]},
        "image_size": image_size,
        "types": list(params.types),
        "severities": list(params.severities),
        "seed": params.seed,
        "engine": dset.engine,
        "shared_with": "the robustness set of the same sources, size and seed (same cache keys)",
    }
    name = f"{folder.parent.name}-{folder.name}" if folder.parent.name else folder.name
    return Pool(name=name, kind="synthetic", names=tuple(names), keys=tuple(keys),
                reference=np.asarray(ref, dtype=np.intp), types=tuple(types), groups=tuple(groups),
                severity=np.asarray(sev, dtype=np.float64), batches=tuple(batches),
                sources=src.pixels, record=record)


def _decode(path: Path, folder: Path) -> Any:
    """The image, or the decoding error (naming the file relative to the pool folder)."""
    try:
        return load_image(path)
    except ValueError as err:  # ImageReadError: recorded per image by the scorer
        return ValueError(str(err).replace(str(path), path.relative_to(folder).as_posix()))


def folder_pool(folder: str | Path) -> Pool:
    """A folder of images used as the pool, as they are (searched recursively).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: pool folder not found")
    files = list_images(folder)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder or below it")
    names = tuple(p.relative_to(folder).as_posix() for p in files)
    keys = tuple(image_key(p) for p in files)
    batches = []
    for start in range(0, len(files), _FOLDER_BATCH):
        chunk = files[start:start + _FOLDER_BATCH]

        def make(chunk: list[Path] = chunk) -> list[Any]:
            return [_decode(p, folder) for p in chunk]

        batches.append(PoolBatch(f"files {start}-{start + len(chunk) - 1}",
                                 tuple(range(start, start + len(chunk))), make))
    n = len(files)
    record = {"kind": "folder", "n_images": n, "sha256": _digest(keys), "folder": folder.name}
    return Pool(name=folder.name or "pool", kind="folder", names=names, keys=keys,
                reference=np.full(n, -1, dtype=np.intp), types=("",) * n, groups=("",) * n,
                severity=np.full(n, np.nan), batches=tuple(batches), record=record)
