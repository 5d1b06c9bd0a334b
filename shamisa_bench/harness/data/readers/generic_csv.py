"""The generic ``csv`` dataset type: a folder plus a CSV of image and MOS.

Options (in the registry entry): ``csv`` (the CSV, relative to the dataset folder),
``image_column``, ``mos_column``; optional ``ref_column`` (reference group; default: each
image is its own group), ``split_column`` (train/val/test or 0/1/2), ``image_dir`` (folder
the image paths are relative to; default the dataset folder), ``extra_columns`` (list of
further columns copied into the table). Identity: the image column's value.
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
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["official_files", "read_csv_dataset"]


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return (str(spec.options["csv"]),)


def read_csv_dataset(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    opts = spec.options
    header, body = read_delimited(label_file, delimiter=str(opts.get("delimiter", ",")))
    c_img = find_column(header, [str(opts["image_column"])], label_file)
    c_mos = find_column(header, [str(opts["mos_column"])], label_file)
    c_ref = find_column(header, [str(opts["ref_column"])], label_file) if opts.get("ref_column") else None
    c_split = find_column(header, [str(opts["split_column"])], label_file) if opts.get("split_column") else None
    extras = {str(c): find_column(header, [str(c)], label_file) for c in opts.get("extra_columns", []) or []}
    rows = []
    for line, cells in body:
        if len(cells) < len(header):
            raise LabelFileError(label_file, line, f"expected {len(header)} columns, got {len(cells)}")
        name = canonical_name(cells[c_img])
        if not name:
            raise LabelFileError(label_file, line, "missing image name")
        ref = name
        if c_ref is not None:
            ref = cells[c_ref].strip()
            if not ref:
                raise LabelFileError(label_file, line, "missing reference group")
        split = split_value(cells[c_split], label_file, line) if c_split is not None else None
        extra = {k: cells[i] for k, i in extras.items() if i is not None}
        rows.append(
            Row(name=name, mos=parse_mos(cells[c_mos], label_file, line), ref=ref, line=line, split=split, extra=extra)
        )
    image_dir = root / str(opts.get("image_dir", "."))
    return ReadResult(rows=rows, image_dirs=[image_dir], split_source=label_file if c_split is not None else None)
