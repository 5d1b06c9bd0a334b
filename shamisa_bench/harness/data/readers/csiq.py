"""CSIQ.

Official layout: ``csiq.DMOS.xlsx`` (sheet ``all_by_image`` with columns image, dst_idx,
dst_type, dst_lev, dmos_std, dmos; needs openpyxl) or the same six columns exported as
``csiq.DMOS.csv`` / ``csiq.DMOS.txt`` (comma, tab or whitespace separated, header optional);
``csiq_label.txt`` (one ``<dist_name> <dmos>`` line per image, as hyperIQA ships it and pyiqa's
preparation script reads it); ``src_imgs/<image>.png`` and
``dst_imgs/<folder>/<image>.<TAG>.<lev>.png`` (or the flat ``dst_imgs_all/``; found by file
name) with (dst_type ->
folder, TAG): noise -> awgn, AWGN; jpeg -> jpeg, JPEG; jpeg 2000 -> jpeg2000, jpeg2000;
fnoise -> fnoise, fnoise; blur -> blur, BLUR; contrast -> contrast, contrast.
Identity: the file name ``<image>.<TAG>.<lev>.png`` (pyiqa's meta files use the same).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from shamisa_bench.harness.data.errors import LabelFileError
from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import (
    Row,
    find_column,
    parse_mos,
    read_delimited,
    read_sheet,
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["TYPES", "official_files", "read_official", "read_pyiqa_layout"]

TYPES: dict[str, tuple[str, str]] = {
    "noise": ("awgn", "AWGN"),
    "awgn": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}
_LINE = re.compile(r"^\s*(\S+)\s+(\d+)\s+(.+?)\s+(\d+)\s+(\S+)\s+(\S+)\s*$")


LABEL_TXT = "csiq_label.txt"
_TAGS = {tag.lower(): key for key, (_folder, tag) in TYPES.items() if key != "noise"}


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return ("csiq.DMOS.xlsx", "csiq.DMOS.csv", "csiq.DMOS.txt", LABEL_TXT)


def _read_label_txt(label_file: Path) -> list[Row]:
    """``csiq_label.txt``: one ``<dist_name> <dmos>`` line per image (866), as hyperIQA ships it
    and pyiqa's preparation script reads it; ``dist_name`` is ``<image>.<TAG>.<lev>.png``."""
    _header, body = read_delimited(label_file, delimiter=" ", header=False)
    rows = []
    for line, cells in body:
        if len(cells) != 2:
            raise LabelFileError(label_file, line, f"expected '<dist_name> <dmos>', got {' '.join(cells)!r}")
        name, value = cells
        if name.split(".")[-1].lower() != "png":
            name += ".png"  # some copies write <image>.<TAG>.<level> without the suffix
        parts = name.split(".")
        key = _TAGS.get(parts[-3].lower()) if len(parts) >= 4 else None
        if key is None or not parts[-2].isdigit():
            raise LabelFileError(label_file, line, f"image name {name!r} is not <image>.<TYPE>.<level>.png "
                                 f"with TYPE one of {sorted({tag for _f, tag in TYPES.values()})}")
        rows.append(Row(name=name, mos=parse_mos(value, label_file, line), ref=".".join(parts[:-3]).lower(),
                        line=line, extra={"distortion": TYPES[key][0]}))
    return rows


def _cell_str(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if value is not None else ""


def _table(label_file: Path) -> list[tuple[int, list[Any]]]:
    if label_file.suffix.lower() == ".xlsx":
        header, body, _ = read_sheet(label_file, sheet="all_by_image")
        idx = [
            find_column(header, [c], label_file)
            for c in ("image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos")
        ]
        return [(line, [cells[i] if i < len(cells) else None for i in idx]) for line, cells in body]
    text_rows: list[tuple[int, list[Any]]] = []
    first = next((ln for ln in label_file.read_text(encoding="utf-8-sig").splitlines() if ln.strip()), "")
    if "," in first or "\t" in first:
        header, body = read_delimited(label_file, header=False)
        for line, cells in body:
            text_rows.append((line, cells))
    else:
        for line, ln in enumerate(label_file.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not ln.strip():
                continue
            m = _LINE.match(ln)
            if m is None:
                if ln.split()[0].lower() == "image":
                    continue  # header line
                raise LabelFileError(
                    label_file, line, f"expected 'image dst_idx dst_type dst_lev dmos_std dmos', got {ln.strip()!r}"
                )
            text_rows.append((line, list(m.groups())))
    if text_rows and str(text_rows[0][1][0]).strip().lower() == "image":
        text_rows = text_rows[1:]
    return text_rows


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    # dst_imgs/<folder>/ as released; dst_imgs_all/ (one flat folder) as hyperIQA's copies have it
    dirs = [root / d for d in layout.images] if layout.images else [root / "dst_imgs", root / "dst_imgs_all"]
    if label_file.name == LABEL_TXT:
        return ReadResult(rows=_read_label_txt(label_file), image_dirs=dirs, by_basename=True)
    rows = []
    for line, cells in _table(label_file):
        if len(cells) < 6:
            raise LabelFileError(label_file, line, f"expected 6 columns, got {len(cells)}")
        image, _idx, dtype, lev, _std, dmos = cells[:6]
        image = _cell_str(image)
        if not image:
            raise LabelFileError(label_file, line, "missing image name")
        key = re.sub(r"\s+", "", _cell_str(dtype)).lower()
        if key not in TYPES:
            raise LabelFileError(label_file, line, f"unknown dst_type {dtype!r}; expected one of {sorted(set(TYPES))}")
        try:
            level = int(float(_cell_str(lev)))
        except ValueError:
            raise LabelFileError(label_file, line, f"dst_lev {lev!r} is not an integer") from None
        _folder, tag = TYPES[key]
        name = f"{image}.{tag}.{level}.png"
        rows.append(
            Row(
                name=name,
                mos=parse_mos(dmos, label_file, line),
                ref=image.lower(),
                line=line,
                extra={"distortion": TYPES[key][0]},
            )
        )
    return ReadResult(rows=rows, image_dirs=dirs, by_basename=True)


def _dist(name: str) -> str | None:
    parts = name.rsplit("/", 1)[-1].split(".")
    return parts[-3].lower() if len(parts) >= 4 else None


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=True, distortion=_dist, by_basename=True)
