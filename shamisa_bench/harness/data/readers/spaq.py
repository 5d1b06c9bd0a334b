"""SPAQ.

Official layout: ``Annotations/MOS and Image attribute scores.xlsx`` (columns Image name, MOS,
Brightness, Colorfulness, Contrast, Noisiness, Sharpness; reading it needs openpyxl) or the
sheet exported as ``Annotations/MOS and Image attribute scores.csv``; images in ``TestImage/``.
Identity: ``Image name``.
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
    read_sheet,
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["official_files", "read_official", "read_pyiqa_layout"]

XLSX = "Annotations/MOS and Image attribute scores.xlsx"
CSV = "Annotations/MOS and Image attribute scores.csv"


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return (XLSX, CSV)


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    header, body, _ = read_sheet(label_file)
    c_name = find_column(header, ["Image name", "image_name", "img_name"], label_file)
    c_mos = find_column(header, ["MOS"], label_file)
    rows = []
    for line, cells in body:
        cell = cells[c_name] if c_name < len(cells) else None
        name = canonical_name(cell) if cell is not None else ""
        if not name:
            raise LabelFileError(label_file, line, "missing image name")
        value = cells[c_mos] if c_mos < len(cells) else None
        rows.append(Row(name=name, mos=parse_mos(value, label_file, line), ref=name, line=line))
    dirs = [root / d for d in layout.images] if layout.images else [root / "TestImage"]
    return ReadResult(rows=rows, image_dirs=dirs)


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=False)
