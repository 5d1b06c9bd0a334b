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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise ValueError(f"{source}: {what}")


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _number_or_null(v: Any, source: str, where: str) -> None:
    _check(v is None or (_is_number(v) and math.isfinite(v)), source,
           f"{where} must be a finite number or null, not {_type_name(v)} ({v!r})")


def _count(v: Any, source: str, where: str) -> None:
    _check(isinstance(v, int) and not isinstance(v, bool) and v >= 0, source,
           f"{where} must be a non-negative integer, not {_type_name(v)} ({v!r})")


#: Largest disagreement tolerated between a stored summary and the one recomputed from the
#: stored (6-decimal) per-split values.
SUMMARY_TOLERANCE = 2e-5


def _validate_scores(record: Mapping[str, Any], cols: list[str], source: str) -> None:
    scores = record["scores"]
    _check(isinstance(scores, Mapping), source, f"scores must be an object, not {_type_name(scores)}")
    per_split = scores.get("per_split")
    agg = scores.get("aggregate")
    _check(isinstance(per_split, list), source,
           f"scores.per_split must be a list, not {_type_name(per_split)}")
    _check(isinstance(agg, Mapping), source,
           f"scores.aggregate must be an object, not {_type_name(agg)}")
    for i, entry in enumerate(per_split):
        where = f"scores.per_split[{i}]"
        _check(isinstance(entry, Mapping), source, f"{where} must be an object, not {_type_name(entry)}")
        if "split" in entry:
            _count(entry["split"], source, f"{where}.split")
        for key in cols:
            if key in entry:
                _number_or_null(entry[key], source, f"{where}.{key}")
        for key in ("n_train", "n_val", "n_test"):
            if key in entry:
                _count(entry[key], source, f"{where}.{key}")
        if "alpha" in entry:
            _number_or_null(entry["alpha"], source, f"{where}.alpha")
        if entry.get("hash") is not None:
            _check(isinstance(entry["hash"], str), source,
                   f"{where}.hash must be a string or null, not {_type_name(entry['hash'])}")
    for key, stats in agg.items():
        where = f"scores.aggregate.{key}"
        _check(isinstance(stats, Mapping), source, f"{where} must be an object, not {_type_name(stats)}")
        for stat in ("median", "mean", "std"):
            _check(stat in stats, source, f"{where} lacks {stat}")
            _number_or_null(stats[stat], source, f"{where}.{stat}")
        for stat in ("n", "n_nan"):
            if stat in stats:
                _count(stats[stat], source, f"{where}.{stat}")
    if record["status"] != "ok":
        return
    for key in cols:
        _check(key in agg, source, f"status is ok but scores.aggregate lacks {key}")
        for i, entry in enumerate(per_split):
            _check(key in entry, source, f"status is ok but scores.per_split[{i}] lacks {key}")
        values = [e[key] for e in per_split]
        finite = np.asarray([v for v in values if v is not None], dtype=np.float64)
        stats = agg[key]
        if "n" in stats:
            _check(stats["n"] == len(values), source,
                   f"scores.aggregate.{key}.n is {stats['n']} but per_split has {len(values)} entries")
        if "n_nan" in stats:
            n_nan = len(values) - finite.size
            _check(stats["n_nan"] == n_nan, source,
                   f"scores.aggregate.{key}.n_nan is {stats['n_nan']} but per_split has {n_nan} null {key}")
        expect = {"median": float(np.median(finite)), "mean": float(finite.mean()),
                  "std": float(finite.std())} if finite.size else {}
        for stat in ("median", "mean", "std"):
            got = stats[stat]
            want = expect.get(stat)
            if want is None:
                _check(got is None, source, f"scores.aggregate.{key}.{stat} is {got} but no per-split "
                       f"{key} is a number")
            else:
                _check(got is not None and abs(got - want) <= SUMMARY_TOLERANCE, source,
                       f"scores.aggregate.{key}.{stat} is {got} but the per-split values give "
                       f"{want:.6f}")


def validate_unit(record: Mapping[str, Any], source: str = "<record>") -> None:
    """Check a unit record fully: layout, the type of every value, and that the summary
    (``scores.aggregate``) agrees with the per-split values it summarises.

    Raises:
        ValueError: naming ``source`` and the problem (missing key, wrong schema version,
            unknown status, a value of the wrong type, a summary that does not match, ...).
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
    reason = record.get("reason")
    _check(reason is None or isinstance(reason, str), source,
           f"reason must be a string or null, not {_type_name(reason)}")
    unit = record["unit"]
    _check(isinstance(unit, Mapping), source, f"unit must be an object, not {_type_name(unit)}")
    for k in ("suite", "protocol", "metric"):
        if not isinstance(unit.get(k), str) or not unit.get(k):
            raise ValueError(f"{source}: unit.{k} must be a non-empty string")
    for k in ("dataset", "train", "test"):
        _check(unit.get(k) is None or isinstance(unit.get(k), str), source,
               f"unit.{k} must be a string or null, not {_type_name(unit.get(k))}")
    unit_token(unit)
    table = record["table"]
    _check(isinstance(table, Mapping), source, f"table must be an object, not {_type_name(table)}")
    cols = table.get("columns")
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
        raise ValueError(f"{source}: table.columns must be a list of score keys")
    hib = table.get("higher_is_better", True)
    _check(isinstance(hib, bool) or (isinstance(hib, Mapping) and all(isinstance(v, bool) for v in hib.values())),
           source, "table.higher_is_better must be a boolean or an object of booleans")
    if table.get("main_score") is not None:
        _check(isinstance(table["main_score"], str), source, "table.main_score must be a string")
    order = table.get("order", [])
    _check(isinstance(order, list) and all(isinstance(t, str) for t in order), source,
           "table.order must be a list of strings")
    metric = record["metric"]
    _check(isinstance(metric, Mapping), source, f"metric must be an object, not {_type_name(metric)}")
    if "lower_better" in metric:
        _check(isinstance(metric["lower_better"], bool), source,
               f"metric.lower_better must be a boolean, not {_type_name(metric['lower_better'])}")
    _validate_scores(record, cols, source)
    for k in ("n_images", "n_excluded"):
        if k in record:
            _count(record[k], source, k)
    nonf = record.get("nonfinite")
    if nonf is not None:
        _check(isinstance(nonf, Mapping), source, f"nonfinite must be an object, not {_type_name(nonf)}")
        for k in ("nan", "inf"):
            if k in nonf:
                _count(nonf[k], source, f"nonfinite.{k}")
    for k in ("datasets", "provenance"):
        if record.get(k) is not None:
            _check(isinstance(record[k], Mapping), source, f"{k} must be an object, not {_type_name(record[k])}")
