"""The pyiqa layout: ``meta_info/meta_info_<Name>Dataset.csv`` plus image folders.

pyiqa reads full-reference meta files by position (``ref, dist, mos``: its
``GeneralFRDataset``) and no-reference ones as ``name, mos`` (``GeneralNRDataset``); a column
named ``official_split`` (or ``split``) holds train/val/test (or 0/1/2). We read them the
same way, so any release of pyiqa's meta files parses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shamisa_bench.harness.data.errors import LabelFileError
from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import (
    Row,
    canonical_name,
    find_column,
    parse_mos,
    read_delimited,
    ref_key,
    split_value,
)
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["read_pyiqa"]


def read_pyiqa(
    spec: DatasetSpec,
    layout: DatasetLayout,
    root: Path,
    meta_path: Path,
    *,
    full_reference: bool,
    fix_name: Callable[[str], str | None] = lambda n: n,
    distortion: Callable[[str], str | None] = lambda n: None,
    by_basename: bool = False,
) -> ReadResult:
    """Read a pyiqa meta-info CSV.

    Args:
        spec: the dataset.
        layout: its pyiqa layout (``images`` are the candidate image folders).
        root: the layout root (pyiqa's ``datasets`` folder).
        meta_path: the meta-info CSV.
        full_reference: rows are ``ref, dist, mos`` (else ``name, mos``).
        fix_name: maps a name cell to the image identity, or ``None`` to skip the row
            (e.g. FLIVE patches, CLIVE training images).
        distortion: distortion label of a name, when the name encodes it.
        by_basename: see :class:`ImageFinder`.

    Raises:
        LabelFileError: a row does not parse, or a name is missing or duplicated.
    """
    header, body = read_delimited(meta_path, delimiter=",")
    need = 3 if full_reference else 2
    if len(header) < need:
        raise LabelFileError(meta_path, 1, f"expected at least {need} columns, header is {header}")
    split_col = find_column(header, ["official_split"], meta_path, required=False)
    if split_col is None:
        split_col = find_column(header, ["split"], meta_path, required=False)
    rows = []
    for line, cells in body:
        if len(cells) < need:
            raise LabelFileError(meta_path, line, f"expected at least {need} columns, got {len(cells)}")
        if full_reference:
            ref_cell, name_cell, mos_cell = cells[0], cells[1], cells[2]
        else:
            name_cell, mos_cell = cells[0], cells[1]
        raw_name = canonical_name(name_cell)
        if not raw_name:
            raise LabelFileError(meta_path, line, "missing image name")
        name = fix_name(raw_name)
        if name is None:
            continue
        mos = parse_mos(mos_cell, meta_path, line)
        if full_reference:
            if not canonical_name(ref_cell):
                raise LabelFileError(meta_path, line, "missing reference name")
            ref = ref_key(ref_cell)
        else:
            ref = name
        split = (
            split_value(cells[split_col], meta_path, line) if split_col is not None and split_col < len(cells) else None
        )
        extra = {}
        dist = distortion(name)
        if dist is not None:
            extra["distortion"] = dist
        rows.append(Row(name=name, mos=mos, ref=ref, line=line, split=split, extra=extra))
    dirs = [root / d for d in layout.images] or [root]
    has_split = any(r.split for r in rows)
    return ReadResult(
        rows=rows, image_dirs=dirs, by_basename=by_basename, split_source=meta_path if has_split else None
    )
