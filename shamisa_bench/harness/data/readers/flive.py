"""FLIVE (PaQ-2-PiQ / LIVE-FB).

Official layout: ``labels_image.csv`` (columns ``name``, ``mos``, ...; names such as
``voc_emotic_ava/AVA__1.jpg`` relative to ``database/``), at the root or in ``database/``.
The official split comes from the PaQ-2-PiQ label files next to it: ``labels640.csv``
(test set, column ``name_image``) and ``labels=640_padded.csv`` (training set; rows with
``is_valid`` true form the validation set); every other image is training. Patch labels are
not read. Identity: ``name``.
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
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["official_files", "read_official", "read_pyiqa_layout"]

TEST_FILE = "labels640.csv"
TRAIN_FILE = "labels=640_padded.csv"


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return ("labels_image.csv", "database/labels_image.csv")


def _names(path: Path, *, valid_only: bool) -> set[str]:
    header, body = read_delimited(path, delimiter=",")
    c_name = find_column(header, ["name_image", "name"], path)
    c_valid = find_column(header, ["is_valid"], path) if valid_only else None
    out = set()
    for line, cells in body:
        if len(cells) <= c_name:
            raise LabelFileError(path, line, f"expected {len(header)} columns, got {len(cells)}")
        if c_valid is not None and cells[c_valid].strip().lower() not in ("true", "1", "yes"):
            continue
        out.add(canonical_name(cells[c_name]))
    return out


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    header, body = read_delimited(label_file, delimiter=",")
    c_name = find_column(header, ["name", "name_image"], label_file)
    c_mos = find_column(header, ["mos"], label_file)
    test_path = next((p for p in (label_file.parent / TEST_FILE, root / TEST_FILE) if p.is_file()), None)
    train_path = next((p for p in (label_file.parent / TRAIN_FILE, root / TRAIN_FILE) if p.is_file()), None)
    test = _names(test_path, valid_only=False) if test_path and train_path else set()
    val = _names(train_path, valid_only=True) if test_path and train_path else set()
    has_split = bool(test_path and train_path)
    rows = []
    for line, cells in body:
        if len(cells) <= max(c_name, c_mos):
            raise LabelFileError(label_file, line, f"expected {len(header)} columns, got {len(cells)}")
        name = canonical_name(cells[c_name])
        if not name:
            raise LabelFileError(label_file, line, "missing image name")
        split = None
        if has_split:
            split = "test" if name in test else "val" if name in val else "train"
        rows.append(Row(name=name, mos=parse_mos(cells[c_mos], label_file, line), ref=name, line=line, split=split))
    dirs = [root / d for d in layout.images] if layout.images else [root / "database"]
    problem = None
    if not has_split:
        absent = [name for name, found in ((TEST_FILE, test_path), (TRAIN_FILE, train_path)) if found is None]
        where = " or ".join(sorted({str(label_file.parent), str(root)}))
        problem = (f"{' and '.join(absent)} not found in {where} (the PaQ-2-PiQ release ships "
                   f"{TEST_FILE} and {TRAIN_FILE} next to {label_file.name})")
    return ReadResult(rows=rows, image_dirs=dirs, split_source=test_path if has_split else None,
                      split_problem=problem)


def _fix(name: str) -> str | None:
    return None if "_patch_" in name else name


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(spec, layout, root, meta, full_reference=False, fix_name=_fix)
