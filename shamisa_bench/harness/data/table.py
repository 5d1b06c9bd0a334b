"""Locate a registered dataset on disk and read it into a :class:`DatasetTable`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from shamisa_bench.common.imageio import load_image
from shamisa_bench.harness.data.demo import (
    demo_cached,
    demo_layout,
    demo_root,
    read_demo,
)
from shamisa_bench.harness.data.errors import (
    DatasetNotFoundError,
    LabelFileError,
    PartialDatasetError,
    SplitUnavailableError,
)
from shamisa_bench.harness.data.partition import select_part
from shamisa_bench.harness.data.ranges import check_label_range
from shamisa_bench.harness.data.readers import READERS, ImageFinder, ReadResult
from shamisa_bench.harness.data.readers._common import check_unique
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = [
    "FETCHABLE",
    "DatasetStatus",
    "DatasetTable",
    "default_cache_dir",
    "default_data_root",
    "dataset_status",
    "exclude",
    "fetch_hint",
    "load_dataset",
    "verify_images",
]

FRAME_COLUMNS = ("image", "name", "mos", "ref")


#: Environment variable naming the default data root for every command.
DATA_ROOT_ENV = "SHAMISA_BENCH_DATA"


def default_data_root() -> Path:
    """``$SHAMISA_BENCH_DATA`` when set, else ``./datasets`` (where pyiqa's ``load_dataset``
    puts datasets by default). Every command that takes ``--data-root`` defaults to it."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env) if env else Path("datasets")


def default_cache_dir() -> Path:
    """``$SHAMISA_BENCH_CACHE``, else ``$XDG_CACHE_HOME/shamisa-bench``, else ``~/.cache/shamisa-bench``.

    Read only by callers at the edge (CLI, ``load_dataset`` when no cache folder is given).
    """
    env = os.environ.get("SHAMISA_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "shamisa-bench"


@dataclass(frozen=True)
class DatasetTable:
    """A dataset as read from disk: one row per image present.

    Attributes:
        spec: the registry entry.
        frame: pandas DataFrame, one row per image present, in label-file order, with columns
            ``image`` (absolute path, str), ``name`` (identity: path relative to the image
            folder as the label file writes it), ``mos`` (float, as published), ``ref``
            (reference group key; the name itself for authentic datasets), and when known
            ``official_split`` (train/val/test) and ``distortion``.
        root: the layout root it was read from.
        layout: ``official``, ``pyiqa``, ``csv`` or ``demo``.
        label_file: the label file read.
        label_sha256: sha256 of that file (provenance).
        missing: names the label file lists whose image is absent.
        partial: True when images are missing or the count differs from ``spec.n_images``.
        partial_reason: why it is partial (``None`` when complete).
        n_listed: rows in the label file (after documented filtering, e.g. CLIVE's training
            images).
        excluded: (name, reason) pairs removed by :func:`exclude` (e.g. undecodable images).
        mos_range: the range every label was checked to lie in (the registry's, or the
            label file's own, :mod:`~shamisa_bench.harness.data.ranges`); None when the file
            has no fixed scale.
        image_dirs: the folders the images were found in, in the reader's order.
    """

    spec: DatasetSpec
    frame: pd.DataFrame
    root: Path
    layout: str
    label_file: Path
    label_sha256: str
    missing: tuple[str, ...] = ()
    partial: bool = False
    partial_reason: str | None = None
    n_listed: int = 0
    excluded: tuple[tuple[str, str], ...] = ()
    mos_range: tuple[float, float] | None = None
    image_dirs: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        """The dataset's registry name."""
        return self.spec.name

    @property
    def pseudo_mos(self) -> bool:
        """True when the labels are pseudo-MOS (a full-reference metric), not human opinion."""
        return self.spec.pseudo_mos

    @property
    def n_images(self) -> int:
        """Images in the table (present and not excluded)."""
        return len(self.frame)

    @property
    def has_official_split(self) -> bool:
        """True when every row has an official train/val/test assignment."""
        return "official_split" in self.frame.columns and bool(self.frame["official_split"].notna().all())

    @cached_property
    def images_sha256(self) -> str:
        """sha256 over the sorted ``name<TAB>file size`` lines of the images in the table.

        Recorded with results so that a run notices an image added, removed, renamed or
        replaced by a file of another size (a file rewritten with the same size is not seen;
        reading every image to hash its content would cost a full pass over the dataset).
        Moving the dataset to another folder keeps the digest.

        Raises:
            OSError: an image listed in the table can no longer be read (names the file).
        """
        digest = hashlib.sha256()
        for name, image in sorted(zip(self.frame["name"], self.frame["image"])):
            digest.update(f"{name}\t{Path(image).stat().st_size}\n".encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record of what was read (for results provenance)."""
        return {
            "dataset": self.spec.name,
            "dataset_version": self.spec.version,
            "label_type": self.spec.label_type,
            "pseudo_mos": self.pseudo_mos,
            "layout": self.layout,
            "label_file": self.label_file.name,
            "label_sha256": self.label_sha256,
            "images_sha256": self.images_sha256,
            "image_dirs": [os.path.relpath(d, self.root).replace(os.sep, "/") for d in self.image_dirs],
            "n_expected": self.spec.n_images,
            "n_listed": self.n_listed,
            "n_images": self.n_images,
            "n_missing": len(self.missing),
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "n_excluded": len(self.excluded),
            "excluded": [list(e) for e in self.excluded],
        }


#: Registry datasets that pyiqa's downloader knows (pyiqa.data.dataset_api.dataset_download_name);
#: ``shamisa-bench data fetch`` (:mod:`~shamisa_bench.harness.data.fetch`) downloads these.
FETCHABLE: tuple[str, ...] = ("live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq", "flive")


def fetch_hint(spec: DatasetSpec, data_root: Path) -> str:
    """How to get the dataset: the ``data fetch`` command when pyiqa can download it."""
    if spec.name in FETCHABLE:
        return f"Fetch it with: shamisa-bench data fetch {spec.name} --data-root {data_root}"
    if spec.reader == "demo":
        return "The demo set is built locally; check the cache folder is writable."
    where = spec.homepage or "its release notes"
    return f"It cannot be fetched automatically; place it under {data_root} as above (see {where})."


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _label_candidates(spec: DatasetSpec, layout: DatasetLayout) -> tuple[str, ...]:
    if layout.type == "pyiqa":
        return (str(layout.meta_info),)
    return READERS[spec.reader].official_files(spec)


def locate(spec: DatasetSpec, data_root: Path) -> tuple[DatasetLayout, Path, Path] | None:
    """The first (layout, root, label file) of ``spec`` found under ``data_root``, or ``None``."""
    for layout in spec.layouts:
        if layout.type == "demo":
            continue
        for cand in layout.root:
            root = data_root / cand
            for rel in _label_candidates(spec, layout):
                path = root / rel
                if path.is_file():
                    return layout, root, path
    return None


def _expected_paths(spec: DatasetSpec, data_root: Path) -> list[Path]:
    out = []
    for layout in spec.layouts:
        if layout.type == "demo":
            continue
        for cand in layout.root:
            for rel in _label_candidates(spec, layout):
                out.append(data_root / cand / rel)
    return out


def _read(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    if spec.reader == "demo":
        return read_demo(spec, layout, root, label_file)
    module = READERS[spec.reader]
    if layout.type == "pyiqa":
        return module.read_pyiqa_layout(spec, layout, root, label_file)
    if spec.reader == "csv":
        return module.read_csv_dataset(spec, layout, root, label_file)
    return module.read_official(spec, layout, root, label_file)


def load_dataset(
    spec: DatasetSpec,
    data_root: Path | str | None = None,
    *,
    allow_partial: bool = False,
    cache_dir: Path | str | None = None,
) -> DatasetTable:
    """Read a registered dataset from the first of its layouts found under ``data_root``.

    Args:
        spec: the registry entry (``load_registry().dataset(name)``).
        data_root: folder holding the datasets (``None``: :func:`default_data_root`).
            Ignored by ``demo``, which is built in ``cache_dir``.
        allow_partial: return a partial table (images missing, or a count different from
            ``spec.n_images``) instead of raising; the table records it.
        cache_dir: cache folder for built datasets (``None``: :func:`default_cache_dir`).

    Returns:
        The :class:`DatasetTable`.

    Raises:
        DatasetNotFoundError: no layout found; names the paths looked for and the fetch command.
        SplitUnavailableError: (a DatasetNotFoundError) a dataset evaluated on its official
            split whose split files are missing; names them.
        PartialDatasetError: the dataset is incomplete and ``allow_partial`` is False.
        LabelFileError: the label file does not parse, has duplicate or missing names, or
            labels outside its range (:func:`~shamisa_bench.harness.data.ranges.check_label_range`).
    """
    if spec.reader == "demo":
        layout, root, label_file = demo_layout(spec, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    else:
        data_root = Path(data_root) if data_root is not None else default_data_root()
        found = locate(spec, data_root)
        if found is None:
            raise DatasetNotFoundError(spec.name, _expected_paths(spec, data_root), fetch_hint(spec, data_root))
        layout, root, label_file = found
    result = _read(spec, layout, root, label_file)
    check_unique(result.rows, label_file)
    mos_range = check_label_range(spec, label_file, result.rows)
    if spec.split == "official" and (result.split_source is None or any(r.split is None for r in result.rows)):
        reason = result.split_problem or f"{label_file.name} gives no train/val/test part for some images"
        raise SplitUnavailableError(spec.name, [label_file], reason, "Add the split files and run again.")
    if spec.partition is not None:  # one part of the labelled images, by a fixed rule
        part = select_part([row.name for row in result.rows], spec.partition)
        result = replace(result, rows=[row for row in result.rows if row.name in part])
    digest = _sha256(label_file)
    rel = os.path.relpath(label_file, root).replace(os.sep, "/")
    want = spec.checksums.get(rel)
    if want is not None and want.lower() != digest:
        raise LabelFileError(label_file, None, f"sha256 {digest} does not match the registry's {want}")

    finder = ImageFinder(result.image_dirs, by_basename=result.by_basename)
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    used: dict[Path, int] = {}  # image folder -> images found there (said by data ls)
    for row in result.rows:
        path = finder.find(row.name)
        if path is None:
            missing.append(row.name)
            continue
        folder = next((d for d in result.image_dirs if path.is_relative_to(d)), path.parent)
        used[folder] = used.get(folder, 0) + 1
        rec: dict[str, Any] = {
            "image": str(path.resolve()),
            "name": row.name,
            "mos": float(row.mos),
            "ref": str(row.ref),
        }
        if result.split_source is not None:
            rec["official_split"] = row.split
        rec.update(row.extra)
        records.append(rec)
    columns = list(FRAME_COLUMNS) + (["official_split"] if result.split_source is not None else [])
    frame = pd.DataFrame.from_records(records, columns=columns + sorted({k for r in records for k in r} - set(columns)))
    frame["mos"] = frame["mos"].astype(float)

    reasons = []
    if missing:
        dirs = ", ".join(str(d) for d in result.image_dirs)
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        reasons.append(f"{len(missing)} listed image(s) missing under {dirs} (e.g. {shown})")
    if len(result.rows) != spec.n_images:
        reasons.append(f"{label_file.name} lists {len(result.rows)} images, the registry expects {spec.n_images}")
    partial = bool(reasons)
    reason = "; ".join(reasons) if reasons else None
    if partial and not allow_partial:
        raise PartialDatasetError(spec.name, len(frame), spec.n_images, missing, reason or "")
    return DatasetTable(
        spec=spec,
        frame=frame,
        root=root,
        layout=layout.type,
        label_file=label_file,
        label_sha256=digest,
        missing=tuple(missing),
        partial=partial,
        partial_reason=reason,
        n_listed=len(result.rows),
        mos_range=mos_range,
        image_dirs=tuple(d for d in result.image_dirs if d in used),
    )


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset is usable at a data root (for ``shamisa-bench data ls``).

    Attributes:
        spec: the registry entry.
        found: a layout's label file exists.
        complete: found, parsed, and every expected image present.
        layout: the layout found (``None`` when not found).
        root: its root.
        n_present: images present.
        n_listed: images the label file lists.
        missing: names of absent images.
        problem: why it is unusable or incomplete (``None`` when complete).
        looked_for: the label files looked for when not found.
        no_split: found, but its official split cannot be read (unusable for a run).
        image_dirs: the folders its images were found in.
    """

    spec: DatasetSpec
    found: bool
    complete: bool
    layout: str | None = None
    root: Path | None = None
    n_present: int = 0
    n_listed: int = 0
    missing: tuple[str, ...] = ()
    problem: str | None = None
    looked_for: tuple[Path, ...] = field(default_factory=tuple)
    no_split: bool = False
    image_dirs: tuple[Path, ...] = ()


def dataset_status(
    spec: DatasetSpec, data_root: Path | str | None = None, *, cache_dir: Path | str | None = None
) -> DatasetStatus:
    """Check a dataset without raising: found, complete, counts and what is missing where."""
    data_root = Path(data_root) if data_root is not None else default_data_root()
    if spec.reader == "demo":
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            built = demo_cached(spec, cache)
        except ValueError as err:
            return DatasetStatus(spec=spec, found=False, complete=False, problem=str(err))
        if not built:
            return DatasetStatus(
                spec=spec,
                found=False,
                complete=False,
                problem="not built yet: built offline on first use (a few seconds) and cached",
                looked_for=(demo_root(spec, cache) / "meta.csv",),
            )
    try:
        table = load_dataset(spec, data_root, allow_partial=True, cache_dir=cache_dir)
    except SplitUnavailableError as err:
        found = locate(spec, data_root)
        return DatasetStatus(spec=spec, found=True, complete=False, layout=found[0].type if found else None,
                             root=found[1] if found else None, problem=str(err).splitlines()[0], no_split=True)
    except DatasetNotFoundError as err:
        return DatasetStatus(
            spec=spec, found=False, complete=False, problem="not found", looked_for=tuple(err.expected)
        )
    except (LabelFileError, ValueError, OSError, ImportError) as err:
        found = locate(spec, data_root) if spec.reader != "demo" else None
        return DatasetStatus(
            spec=spec,
            found=True,
            complete=False,
            layout=found[0].type if found else None,
            root=found[1] if found else None,
            problem=str(err),
        )
    return DatasetStatus(
        spec=spec,
        found=True,
        complete=not table.partial,
        layout=table.layout,
        root=table.root,
        n_present=table.n_images,
        n_listed=table.n_listed,
        missing=table.missing,
        problem=table.partial_reason,
        image_dirs=table.image_dirs,
    )


def _decode(path: str) -> None:
    load_image(path)


def verify_images(table: DatasetTable, *, progress: Any = None) -> list[tuple[str, str]]:
    """Decode every image of ``table``; return ``(name, reason)`` for those that fail.

    Uses ``shamisa_bench.common.imageio.load_image``.

    Args:
        table: the dataset.
        progress: optional callable ``progress(n_done, n_total)``.
    """
    bad: list[tuple[str, str]] = []
    total = len(table.frame)
    for i, (name, image) in enumerate(zip(table.frame["name"], table.frame["image"]), start=1):
        try:
            _decode(image)
        except Exception as err:  # any decoder failure is a reason to exclude
            bad.append((str(name), f"{type(err).__name__}: {err}".strip()))
        if progress is not None:
            progress(i, total)
    return bad


def exclude(table: DatasetTable, names: Iterable[str], reason: str | Sequence[str] = "excluded") -> DatasetTable:
    """A copy of ``table`` without ``names``, recorded in ``.excluded`` with ``reason``.

    Args:
        table: the dataset.
        names: identities to drop (each must be in the table).
        reason: one reason for all, or one per name.

    Raises:
        ValueError: a name is not in the table, or reasons and names differ in number.
    """
    names = list(names)
    reasons = [reason] * len(names) if isinstance(reason, str) else list(reason)
    if len(reasons) != len(names):
        raise ValueError(f"exclude: {len(names)} names but {len(reasons)} reasons")
    present = set(table.frame["name"])
    unknown = [n for n in names if n not in present]
    if unknown:
        raise ValueError(f"exclude: not in dataset {table.spec.name!r}: {unknown[:5]}")
    drop = set(names)
    frame = table.frame[~table.frame["name"].isin(drop)].reset_index(drop=True)
    return replace(table, frame=frame, excluded=table.excluded + tuple(zip(names, reasons)))
