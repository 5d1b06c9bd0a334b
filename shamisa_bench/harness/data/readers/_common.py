"""Shared pieces of the dataset readers: the row record, label-file parsing and image lookup."""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import scipy.io

from shamisa_bench.common.imageio import walk_following_links
from shamisa_bench.harness.data.errors import LabelFileError

__all__ = [
    "ImageFinder",
    "Row",
    "canonical_name",
    "check_unique",
    "find_column",
    "label_rows",
    "load_mat",
    "mat_numbers",
    "mat_strings",
    "parse_mos",
    "read_delimited",
    "read_sheet",
    "ref_key",
    "split_value",
]


@dataclass(frozen=True)
class Row:
    """One labelled image as a reader reports it.

    Attributes:
        name: identity of the image: its path relative to the image folder, as the label
            file writes it (POSIX separators), the same in every layout.
        mos: label as published.
        ref: reference group key (lower-case stem of the reference; the name itself for
            authentic datasets).
        line: row of the label file it came from (for error messages).
        split: official split (``train``, ``val``, ``test``) or ``None``.
        extra: further columns (e.g. ``distortion``).
    """

    name: str
    mos: float
    ref: str
    line: int
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def canonical_name(value: str) -> str:
    """A label-file path as a clean POSIX relative path (``a\\b.png`` -> ``a/b.png``)."""
    text = str(value).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return str(PurePosixPath(text)) if text else ""


def ref_key(value: str) -> str:
    """Reference group key: the lower-case stem of the reference's file name."""
    base = canonical_name(value).rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return stem.lower()


def parse_mos(value: Any, path: Path, line: int) -> float:
    """Parse a label value; NaN, Inf, empty or non-numeric raise :class:`LabelFileError`."""
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        raise LabelFileError(path, line, "missing MOS value")
    try:
        mos = float(value)
    except (TypeError, ValueError):
        raise LabelFileError(path, line, f"MOS {value!r} is not a number") from None
    if not math.isfinite(mos):
        raise LabelFileError(path, line, f"MOS {value!r} is not finite")
    return mos


_SPLITS = {
    "0": "train",
    "train": "train",
    "training": "train",
    "1": "val",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "2": "test",
    "test": "test",
    "testing": "test",
}


def split_value(value: Any, path: Path, line: int) -> str | None:
    """Normalise an official-split cell to ``train``/``val``/``test`` (``None`` when empty)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "nan", "none"):
        return None
    if text.endswith(".0"):
        text = text[:-2]
    if text not in _SPLITS:
        raise LabelFileError(path, line, f"split value {value!r} is not one of train/val/test (or 0/1/2)")
    return _SPLITS[text]


def read_delimited(
    path: Path, *, delimiter: str | None = None, header: bool = True
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV-like text file.

    Args:
        path: the file.
        delimiter: a delimiter, or ``None`` to sniff between comma, tab, semicolon and
            whitespace from the first line.
        header: whether the first non-empty line is a header.

    Returns:
        (header cells, [(line number, cells)]) with blank lines skipped; the header is an
        empty list when ``header`` is False.

    Raises:
        LabelFileError: the file cannot be decoded as text.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as err:  # pragma: no cover - I/O error
            raise LabelFileError(path, None, f"cannot read: {err}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if delimiter is None:
        for cand in (",", "\t", ";"):
            if cand in first:
                delimiter = cand
                break
        else:
            delimiter = " "
    rows: list[tuple[int, list[str]]] = []
    if delimiter == " ":
        for i, ln in enumerate(lines, start=1):
            if ln.strip():
                rows.append((i, ln.split()))
    else:
        reader = csv.reader(lines, delimiter=delimiter)
        for cells in reader:
            i = reader.line_num
            if any(c.strip() for c in cells):
                rows.append((i, [c.strip() for c in cells]))
    head: list[str] = []
    if header and rows:
        head = rows.pop(0)[1]
    return head, rows


def find_column(header: Sequence[str], candidates: Iterable[str], path: Path, *, required: bool = True) -> int | None:
    """Index of the first header cell matching a candidate (case- and space-insensitive)."""
    norm = [re.sub(r"[\s_]+", "", h).lower() for h in header]
    cands = list(candidates)
    for cand in cands:
        key = re.sub(r"[\s_]+", "", cand).lower()
        if key in norm:
            return norm.index(key)
    if required:
        raise LabelFileError(path, 1, f"no column named {' or '.join(repr(c) for c in cands)} in header {list(header)}")
    return None


def label_rows(
    path: Path,
    header: Sequence[str],
    body: Iterable[tuple[int, list[str]]],
    image_col: int,
    mos_col: int,
    ref_col: int | None = None,
    split_col: int | None = None,
    extras: Mapping[str, int | None] | None = None,
    *,
    blank_ref_is_name: bool = False,
) -> list[Row]:
    """The rows of a delimited label file (:func:`read_delimited`), one :class:`Row` each.

    Args:
        path: The label file (for error messages).
        header: Its column names.
        body: ``(line, cells)`` pairs.
        image_col, mos_col: Columns of the image name and the label.
        ref_col: Column of the reference group, or None (each image is its own group).
        split_col: Column of the official split, or None.
        extras: Further columns to copy, name -> column (None: absent, skipped).
        blank_ref_is_name: A blank reference cell means the image's own group (True) or
            is an error (False).

    Returns:
        The rows, in file order.

    Raises:
        LabelFileError: A short row, a missing image name or reference, a bad label or split.
    """
    rows = []
    for line, cells in body:
        if len(cells) < len(header):
            raise LabelFileError(path, line, f"expected {len(header)} columns, got {len(cells)}")
        name = canonical_name(cells[image_col])
        if not name:
            raise LabelFileError(path, line, "missing image name")
        ref = name
        if ref_col is not None:
            ref = cells[ref_col].strip()
            if not ref:
                if not blank_ref_is_name:
                    raise LabelFileError(path, line, "missing reference group")
                ref = name
        split = split_value(cells[split_col], path, line) if split_col is not None else None
        extra = {k: cells[i] for k, i in (extras or {}).items() if i is not None}
        rows.append(Row(name=name, mos=parse_mos(cells[mos_col], path, line), ref=ref, line=line, split=split,
                        extra=extra))
    return rows


def check_unique(rows: Sequence[Row], path: Path) -> None:
    """Raise :class:`LabelFileError` naming both rows when an image name appears twice."""
    seen: dict[str, int] = {}
    for row in rows:
        key = row.name.lower()
        if not row.name:
            raise LabelFileError(path, row.line, "missing image name")
        if key in seen:
            raise LabelFileError(path, row.line, f"duplicate image name {row.name!r} (first on row {seen[key]})")
        seen[key] = row.line


def load_mat(path: Path) -> dict[str, Any]:
    """Read a MATLAB ``.mat`` file (v5) with scipy; unreadable files raise LabelFileError."""
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise LabelFileError(path, None, "MATLAB v7.3 (HDF5) files are not supported; re-save as v7") from None
    except Exception as err:  # scipy raises several types for corrupt files
        raise LabelFileError(path, None, f"not a readable .mat file: {err}") from None


def mat_strings(mat: dict[str, Any], key: str, path: Path) -> list[str]:
    """A MATLAB cell array of strings (any orientation) as a flat list of str."""
    if key not in mat:
        raise LabelFileError(
            path, None, f"variable {key!r} not found (has: {sorted(k for k in mat if not k.startswith('__'))})"
        )
    out = []
    for i, item in enumerate(np.asarray(mat[key], dtype=object).ravel(), start=1):
        value = item
        while isinstance(value, np.ndarray):
            if value.size != 1:
                if value.dtype.kind in "US" and value.ndim == 1:
                    value = "".join(str(v) for v in value)
                    break
                raise LabelFileError(path, i, f"entry {i} of {key!r} is not a string")
            value = value.ravel()[0]
        out.append(str(value).strip())
    return out


def mat_numbers(mat: dict[str, Any], key: str, path: Path) -> list[float]:
    """A MATLAB numeric array (any orientation) as a flat list of float."""
    if key not in mat:
        raise LabelFileError(
            path, None, f"variable {key!r} not found (has: {sorted(k for k in mat if not k.startswith('__'))})"
        )
    try:
        return [float(v) for v in np.asarray(mat[key], dtype=np.float64).ravel()]
    except (TypeError, ValueError):
        raise LabelFileError(path, None, f"variable {key!r} is not numeric") from None


def read_sheet(path: Path, *, sheet: str | int = 0) -> tuple[list[str], list[tuple[int, list[Any]]], int]:
    """Read a spreadsheet (``.xlsx`` needs openpyxl) or a CSV export of one.

    Returns:
        (header, [(spreadsheet row number, cells)], header row number). The header is the
        first row; spreadsheet rows are 1-based like in a spreadsheet program.

    Raises:
        LabelFileError: openpyxl is missing for an ``.xlsx`` file, or the sheet is absent.
    """
    if path.suffix.lower() not in (".xlsx", ".xlsm", ".xls"):
        head, rows = read_delimited(path)
        return head, [(i, list(c)) for i, c in rows], 1
    try:
        # lazy: only .xlsx files need openpyxl (a dependency; an install without it gets this error)
        import openpyxl  # noqa: F401
    except ImportError:
        raise LabelFileError(
            path,
            None,
            "reading .xlsx needs openpyxl, a dependency of shamisa-bench that is not installed here: "
            "pip install openpyxl (or reinstall shamisa-bench); or export the sheet as CSV with the same "
            "name and a .csv suffix next to it",
        ) from None

    try:
        frame = pd.read_excel(path, sheet_name=sheet, header=None, dtype=object)
    except ValueError as err:
        raise LabelFileError(path, None, f"cannot read sheet {sheet!r}: {err}") from None
    values = frame.where(frame.notna(), None).values.tolist()
    # the header is the first row with at least two non-empty text cells
    for h, cells in enumerate(values):
        texts = [c for c in cells if isinstance(c, str) and c.strip()]
        if len(texts) >= 2:
            header = [str(c).strip() if c is not None else "" for c in cells]
            body = [(r + 1, cells) for r, cells in enumerate(values) if r > h and any(c is not None for c in cells)]
            return header, body, h + 1
    raise LabelFileError(path, None, "no header row found")


class ImageFinder:
    """Resolves image names against candidate folders, indexing each folder once.

    Lookup order per folder: the exact relative path, then a case-insensitive match of the
    relative path, then (when ``by_basename``) a unique case-insensitive file-name match
    anywhere below the folder (releases that keep images in per-distortion subfolders).
    Symlinked folders are followed (:func:`walk_following_links`).
    """

    def __init__(self, folders: Sequence[Path], *, by_basename: bool = False) -> None:
        self.folders = [Path(f) for f in folders]
        self.by_basename = by_basename
        self._index: dict[Path, tuple[set[str], dict[str, str], dict[str, list[str]]]] = {}

    def _build(self, folder: Path) -> tuple[set[str], dict[str, str], dict[str, list[str]]]:
        if folder not in self._index:
            exact: set[str] = set()
            lower: dict[str, str] = {}
            base: dict[str, list[str]] = {}
            if folder.is_dir():
                for dirpath, _dirs, files in walk_following_links(folder):
                    rel_dir = os.path.relpath(dirpath, folder)
                    for fname in files:
                        rel = fname if rel_dir == "." else f"{rel_dir}/{fname}".replace(os.sep, "/")
                        exact.add(rel)
                        lower.setdefault(rel.lower(), rel)
                        base.setdefault(fname.lower(), []).append(rel)
            self._index[folder] = (exact, lower, base)
        return self._index[folder]

    def find(self, name: str) -> Path | None:
        """The file for ``name``, or ``None`` when no folder has it."""
        for folder in self.folders:
            exact, lower, base = self._build(folder)
            if name in exact:
                return folder / name
            hit = lower.get(name.lower())
            if hit is not None:
                return folder / hit
            if self.by_basename:
                cands = base.get(name.rsplit("/", 1)[-1].lower(), [])
                if len(cands) == 1:
                    return folder / cands[0]
        return None

    def expected(self, name: str) -> Path:
        """Where ``name`` is expected (the first folder), for messages."""
        return (self.folders[0] if self.folders else Path(".")) / name
