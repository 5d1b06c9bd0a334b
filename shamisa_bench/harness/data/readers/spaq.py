"""SPAQ.

Official layout: ``Annotations/MOS and Image attribute scores.xlsx`` (columns Image name, MOS,
Brightness, Colorfulness, Contrast, Noisiness, Sharpness; reading it needs openpyxl) or the
sheet exported as ``Annotations/MOS and Image attribute scores.csv``; images in ``TestImage/``.
The authors' download unpacks to ``SPAQ zip/`` (``SPAQ zip/Annotations/``, ``SPAQ zip/TestImage/``):
that tree is read too, and an image not in ``TestImage/`` is found by its file name anywhere
under the dataset folder (``data ls`` says which folder the images came from).
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
#: The folder the authors' download unpacks to, holding Annotations/ and TestImage/.
ZIP_FOLDER = "SPAQ zip"


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return (XLSX, CSV, f"{ZIP_FOLDER}/{XLSX}", f"{ZIP_FOLDER}/{CSV}")


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
    # TestImage/ next to the labels' Annotations/ first (the root, or "SPAQ zip/"), then the
    # layout's folders, then the whole dataset folder (images found by file name below it)
    beside = label_file.parent.parent / "TestImage"
    dirs = [beside] + [root / d for d in (layout.images or ("TestImage", f"{ZIP_FOLDER}/TestImage"))] + [root]
    unique = list(dict.fromkeys(dirs))
    return ReadResult(rows=rows, image_dirs=unique, by_basename=True)


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=False)
