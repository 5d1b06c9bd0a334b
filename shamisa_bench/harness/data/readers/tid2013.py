"""TID2013.

Official layout: ``mos_with_names.txt`` (one ``<mos> <name>`` per line, 3000 lines),
``distorted_images/`` (``i01_01_1.bmp`` ...: reference, distortion type, level) and
``reference_images/`` (``I01.BMP`` ...). File-name case varies between copies, so names are
matched case-insensitively. Identity: the lower-case file name.
"""

from __future__ import annotations

from pathlib import Path

from shamisa_bench.harness.data.errors import LabelFileError
from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import Row, canonical_name, parse_mos
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["official_files", "read_official", "read_pyiqa_layout"]


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return ("mos_with_names.txt",)


def _dist(name: str) -> str | None:
    parts = name.rsplit("/", 1)[-1].split("_")
    return parts[1] if len(parts) >= 3 else None


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    rows = []
    for line, text in enumerate(label_file.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        cells = text.split()
        if len(cells) != 2:
            raise LabelFileError(label_file, line, f"expected '<mos> <name>', got {text.strip()!r}")
        mos = parse_mos(cells[0], label_file, line)
        name = canonical_name(cells[1]).lower()
        rows.append(Row(name=name, mos=mos, ref=name[:3], line=line, extra={"distortion": _dist(name)}))
    dirs = [root / d for d in layout.images] if layout.images else [root / "distorted_images"]
    return ReadResult(rows=rows, image_dirs=dirs)


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=True, fix_name=str.lower, distortion=_dist)
