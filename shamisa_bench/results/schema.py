"""The results JSON schema (one file per unit) and its validation.

A unit record is a plain JSON object::

    {
      "schema_version": 1,
      "status": "ok" | "unavailable" | "failed",
      "reason": null | str,                     # why not ok
      "unit": {"suite", "protocol", "metric", "dataset" | null, "train" | null, "test" | null},
      "table": {"columns": [score keys], "higher_is_better": bool},
      "metric": {"name", "kind", "version", "lower_better", "identity_key", ...},
      "datasets": {name: {"version", "n_images", "lower_better", "partial", "n_missing"}},
      "scores": {"per_split": [{"split", "srcc", "plcc", "plcc_logistic", "krcc", ...}],
                 "aggregate": {key: {"median", "mean", "std", "n", "n_nan"}}},
      "n_images": int,          # images that entered the scores (test side for cross)
      "n_excluded": int, "excluded": [{"name", "reason"}],
      "nonfinite": {"nan": int, "inf": int, "names": [str]},
      "failures": [{"name", "reason"}],
      "splits": {"n_splits", "base_seed", "ratios", "hashes": [...]},
      "ridge": null | {"alpha_grid", "chosen_alpha", "val_srcc_median": [...]},
      "provenance": {...}       # see results.provenance
    }

Floats are rounded to 6 decimals and NaN/Inf become ``null`` (strict JSON); their counts
are kept in the record (``nonfinite``, ``aggregate.*.n_nan``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["SCHEMA_VERSION", "STATUSES", "clean_json", "unit_token", "validate_unit"]

#: Version of the unit record layout; bump on any incompatible change.
SCHEMA_VERSION = 1

#: Allowed values of ``status``.
STATUSES: tuple[str, ...] = ("ok", "unavailable", "failed")

_REQUIRED = ("schema_version", "status", "unit", "table", "metric", "scores", "provenance")


def clean_json(obj: Any, ndigits: int = 6) -> Any:
    """Turn ``obj`` into strict-JSON data: floats rounded, NaN/Inf -> None, numpy -> Python.

    Args:
        obj: nested dicts/lists/tuples of numbers, strings, bools, None and numpy values.
        ndigits: decimals kept for floats.
    """
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v, ndigits) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist(), ndigits)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if not math.isfinite(f):
            return None
        r = round(f, ndigits)
        return 0.0 if r == 0 else r
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def unit_token(unit: Mapping[str, Any]) -> str:
    """The file stem of a unit: the dataset name, or ``<train>--<test>`` for a pair."""
    if unit.get("dataset"):
        return str(unit["dataset"])
    if unit.get("train") and unit.get("test"):
        return f"{unit['train']}--{unit['test']}"
    raise ValueError(f"unit names neither a dataset nor a train/test pair: {dict(unit)}")


def validate_unit(record: Mapping[str, Any], source: str = "<record>") -> None:
    """Check the top-level shape of a unit record.

    Raises:
        ValueError: naming ``source`` and the problem (missing key, wrong schema version,
            unknown status, ...).
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"{source}: a unit record must be a JSON object")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{source}: unit record lacks {', '.join(missing)}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{source}: schema_version {record['schema_version']!r} is not the supported "
            f"{SCHEMA_VERSION}; rerun the unit with --overwrite"
        )
    if record["status"] not in STATUSES:
        raise ValueError(f"{source}: status {record['status']!r} is not one of {STATUSES}")
    unit = record["unit"]
    for k in ("suite", "protocol", "metric"):
        if not isinstance(unit.get(k), str) or not unit.get(k):
            raise ValueError(f"{source}: unit.{k} must be a non-empty string")
    unit_token(unit)
    cols = record["table"].get("columns")
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        raise ValueError(f"{source}: table.columns must be a list of score keys")
