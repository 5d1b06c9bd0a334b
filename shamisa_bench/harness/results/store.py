"""Atomic storage of unit records under ``<results>/runs/<suite>/<protocol>/<metric>/``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shamisa_bench.common.atomic import atomic_write_bytes
from shamisa_bench.harness.results.schema import clean_json, unit_token, validate_unit

__all__ = ["iter_units", "load_unit", "unit_path", "write_unit"]


def unit_path(results_dir: str | os.PathLike[str], unit: Mapping[str, Any]) -> Path:
    """``<results>/runs/<suite>/<protocol>/<metric>/<dataset or train--test>.json``."""
    return (
        Path(results_dir) / "runs" / str(unit["suite"]) / str(unit["protocol"])
        / str(unit["metric"]) / f"{unit_token(unit)}.json"
    )


def write_unit(path: str | os.PathLike[str], record: Mapping[str, Any]) -> dict[str, Any]:
    """Validate, clean (6 decimals, NaN -> null) and atomically write a unit record.

    Returns:
        the cleaned record as written.
    """
    clean = clean_json(record)
    validate_unit(clean, str(path))
    body = json.dumps(clean, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(Path(path), body.encode())
    return clean


def load_unit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a unit record.

    Raises:
        ValueError: naming the file when it is not valid JSON or not a valid record.
    """
    p = Path(path)
    try:
        record = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}: not valid JSON ({err})") from err
    validate_unit(record, str(p))
    return record


def iter_units(results_dir: str | os.PathLike[str], suite: str) -> Iterator[tuple[Path, dict]]:
    """Yield ``(path, record)`` for every unit file of a suite, in sorted path order.

    Raises:
        FileNotFoundError: when the suite has no results folder.
        ValueError: for an invalid file (naming it).
    """
    root = Path(results_dir) / "runs" / suite
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no results for suite {suite!r}; run `shamisa-bench run --suite {suite}`"
        )
    for p in sorted(root.glob("*/*/*.json")):
        yield p, load_unit(p)
