"""The one rule for label ranges, shared by ``data verify``, ``run`` and ``fit-head --dataset``.

Every label of a registered dataset must lie in the range its label file is published on:
the registry's ``mos_range``, unless the dataset's ``options.mos_range_by_file`` gives the
file (by name) a range of its own; ``null`` there means the file has no fixed scale (LIVE's
``dmos_realigned.mat``, whose realigned DMOS run outside [1, 100] on both sides), and its
labels' own minimum and maximum are used. :func:`~shamisa_bench.harness.data.load_dataset`
applies the rule, so every command that reads a dataset refuses the same file with the same
message, which names the first offending rows and the registry file to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shamisa_bench.harness.data.errors import LabelFileError

__all__ = ["check_label_range", "label_range"]


def label_range(spec: Any, label_file: Path) -> tuple[float, float] | None:
    """The range the labels of ``label_file`` must lie in (None: no fixed scale).

    Raises:
        ValueError: ``options.mos_range_by_file`` gives the file a malformed range.
    """
    by_file = (getattr(spec, "options", None) or {}).get("mos_range_by_file") or {}
    if label_file.name not in by_file:
        lo, hi = spec.mos_range
        return float(lo), float(hi)
    value = by_file[label_file.name]
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value) or not value[0] < value[1]):
        raise ValueError(f"dataset {spec.name!r}: options.mos_range_by_file[{label_file.name!r}] must be "
                         f"null or [lo, hi] with lo < hi, got {value!r}")
    return float(value[0]), float(value[1])


def check_label_range(spec: Any, label_file: Path, rows: Sequence[Any]) -> tuple[float, float] | None:
    """Refuse labels outside :func:`label_range`; return the range (None: no fixed scale).

    Args:
        spec: the dataset's registry entry.
        label_file: the file the rows were read from.
        rows: the reader's rows (``name``, ``mos``, ``line``).

    Raises:
        LabelFileError: naming the file, the first offending rows (name, line, value), the
            range and where it is set.
    """
    rng = label_range(spec, label_file)
    if rng is None:
        return None
    lo, hi = rng
    bad = [r for r in rows if not lo <= float(r.mos) <= hi]
    if bad:
        shown = "; ".join(f"{r.name} (row {r.line}): {float(r.mos):g}" for r in bad[:5])
        more = f"; ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        values = [float(r.mos) for r in rows]
        where = (f"options.mos_range_by_file of registry/datasets/{spec.name}.yaml"
                 if label_file.name in ((spec.options or {}).get("mos_range_by_file") or {})
                 else f"mos_range of registry/datasets/{spec.name}.yaml")
        raise LabelFileError(
            label_file, bad[0].line,
            f"{len(bad)} label(s) of dataset {spec.name!r} lie outside [{lo:g}, {hi:g}], the {where} "
            f"(labels span [{min(values):g}, {max(values):g}]): {shown}{more}. Fix the labels, or the range "
            "in the registry if this file is published on another scale",
        )
    return rng
