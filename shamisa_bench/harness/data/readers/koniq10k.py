"""KonIQ-10k.

Official layout: ``koniq10k_scores_and_distributions.csv`` (image_name, c1..c5, c_total, MOS,
SD, MOS_zscore), images in ``1024x768/`` (or ``512x384/``). ``options.mos_column`` picks the
label (default ``MOS_zscore``, the 0-100 score). When ``koniq10k_distributions_sets.csv``
(image_name, ..., set = training/validation/test) is present, its ``set`` column gives the
official split; it can also serve as the label file on its own.
Identity: ``image_name``.
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
    split_value,
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["official_files", "read_official", "read_pyiqa_layout"]

SCORES = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return (SCORES, SETS)


def _read(path: Path, mos_column: str) -> tuple[list[Row], bool]:
    header, body = read_delimited(path, delimiter=",")
    c_name = find_column(header, ["image_name"], path)
    c_mos = find_column(header, [mos_column, "MOS"], path)
    c_set = find_column(header, ["set"], path, required=False)
    rows = []
    for line, cells in body:
        if len(cells) <= max(c_name, c_mos):
            raise LabelFileError(path, line, f"expected {len(header)} columns, got {len(cells)}")
        name = canonical_name(cells[c_name])
        if not name:
            raise LabelFileError(path, line, "missing image name")
        split = split_value(cells[c_set], path, line) if c_set is not None and c_set < len(cells) else None
        rows.append(Row(name=name, mos=parse_mos(cells[c_mos], path, line), ref=name, line=line, split=split))
    return rows, c_set is not None


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    mos_column = str(spec.options.get("mos_column", "MOS_zscore"))
    rows, _ = _read(label_file, mos_column)
    split_source = None
    sets = label_file.parent / SETS
    if label_file.name == SETS:
        split_source = label_file
    elif sets.is_file():
        header, body = read_delimited(sets, delimiter=",")
        c_name = find_column(header, ["image_name"], sets)
        c_set = find_column(header, ["set"], sets)
        split_of = {}
        for line, cells in body:
            if len(cells) > max(c_name, c_set):
                split_of[canonical_name(cells[c_name])] = split_value(cells[c_set], sets, line)
        rows = [Row(r.name, r.mos, r.ref, r.line, split_of.get(r.name), r.extra) for r in rows]
        split_source = sets
    dirs = [root / d for d in layout.images] if layout.images else [root / "1024x768", root / "512x384"]
    return ReadResult(rows=rows, image_dirs=dirs, split_source=split_source)


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=False)
