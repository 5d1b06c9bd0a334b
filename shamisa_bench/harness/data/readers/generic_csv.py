"""The generic ``csv`` dataset type: a folder plus a CSV of image and MOS.

Options (in the registry entry): ``csv`` (the CSV, relative to the dataset folder),
``image_column``, ``mos_column``; optional ``ref_column`` (reference group; default: each
image is its own group), ``split_column`` (train/val/test or 0/1/2), ``image_dir`` (folder
the image paths are relative to; default the dataset folder), ``extra_columns`` (list of
further columns copied into the table). Identity: the image column's value.
"""

from __future__ import annotations

from pathlib import Path

from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import (
    find_column,
    label_rows,
    read_delimited,
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
    rows = label_rows(label_file, header, body, c_img, c_mos, c_ref, c_split, extras)
    image_dir = root / str(opts.get("image_dir", "."))
    return ReadResult(rows=rows, image_dirs=[image_dir], split_source=label_file if c_split is not None else None)
