"""KADID-10k.

Official layout: ``dmos.csv`` with columns dist_img, ref_img, dmos, var (the ``dmos`` column is
a MOS in 1..5, higher is better) and ``images/`` holding distorted (``I01_01_01.png``:
reference, distortion type, level) and reference (``I01.png``) images.
Identity: the ``dist_img`` file name.
"""

from __future__ import annotations

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
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["official_files", "read_official", "read_pyiqa_layout"]


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return ("dmos.csv",)


def _dist(name: str) -> str | None:
    parts = name.rsplit("/", 1)[-1].split("_")
    return parts[1] if len(parts) >= 3 else None


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    header, body = read_delimited(label_file, delimiter=",")
    c_dist = find_column(header, ["dist_img"], label_file)
    c_ref = find_column(header, ["ref_img"], label_file)
    c_mos = find_column(header, ["dmos", "mos"], label_file)
    rows = []
    for line, cells in body:
        if len(cells) <= max(c_dist, c_ref, c_mos):
            raise LabelFileError(label_file, line, f"expected {len(header)} columns, got {len(cells)}")
        name = canonical_name(cells[c_dist])
        if not name:
            raise LabelFileError(label_file, line, "missing image name")
        if not cells[c_ref].strip():
            raise LabelFileError(label_file, line, "missing reference name")
        rows.append(
            Row(
                name=name,
                mos=parse_mos(cells[c_mos], label_file, line),
                ref=ref_key(cells[c_ref]),
                line=line,
                extra={"distortion": _dist(name)},
            )
        )
    dirs = [root / d for d in layout.images] if layout.images else [root / "images"]
    return ReadResult(rows=rows, image_dirs=dirs)


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=True, distortion=_dist)
