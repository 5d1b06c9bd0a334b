"""Whether a finished unit still describes the inputs on disk; a stale one is computed again.

A unit file records what it was computed from: each dataset's label-file sha256 and images
digest (``datasets.<name>.label_sha256``, ``.images_sha256``), the weights the metric
loaded (``provenance.checkpoint_sha256``) and the splits (``splits.n_splits``,
``base_seed``, ``ratios`` and one hash per split). ``run`` skips a unit with an ``ok`` file
only when every one of these that the file records still matches what the run would use now;
otherwise the unit is recomputed and the console says which input changed. A field the file
does not record (files written before it was recorded) is not compared.

Only datasets that can be read are checked: when a dataset of a finished unit is not found
under the data root, its units stay as they are (their results are kept, not recomputed from
nothing). A dataset that is found but unreadable or incomplete raises as it does for a unit
to compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from shamisa_bench.harness.adapters import MetricUnavailable, build_metric
from shamisa_bench.harness.data import load_dataset
from shamisa_bench.harness.data.errors import DatasetNotFoundError
from shamisa_bench.harness.results import load_unit

__all__ = ["recheck_finished", "stale_reasons"]


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text


def _changed(what: str, recorded: Any, now: Any) -> str:
    return f"{what} changed ({_short(recorded)} -> {_short(now)})"


def stale_reasons(
    record: Mapping[str, Any],
    *,
    tables: Mapping[str, Any],
    split_hashes: Sequence[str | None] | None,
    n_splits: int,
    base_seed: int,
    ratios: Sequence[float],
    checkpoint_sha256: str | None,
    check_checkpoint: bool = True,
) -> list[str]:
    """What differs between a unit record's inputs and the current ones (empty: up to date).

    Args:
        record: the unit's ``ok`` record.
        tables: the current DatasetTable of each dataset the unit reads, by name.
        split_hashes: the current splits' hashes of the dataset the splits apply to
            (None: not compared).
        n_splits, base_seed, ratios: the split definition the run would use.
        checkpoint_sha256: the sha256 of the weights the metric would load now.
        check_checkpoint: False when the metric's weights cannot be read now (not compared).

    Returns:
        one line per changed input, e.g. ``dataset 'tiny': label file sha256 changed (...)``.
    """
    reasons: list[str] = []
    recorded_datasets = record.get("datasets") or {}
    for name, table in tables.items():
        info = recorded_datasets.get(name) or {}
        for key, label, now in (("label_sha256", "label file sha256", lambda t: t.label_sha256),
                                ("images_sha256", "images digest", lambda t: t.images_sha256)):
            was = info.get(key)
            if was is not None:
                current = now(table)
                if was != current:
                    reasons.append(f"dataset {name!r}: " + _changed(label, was, current))
    splits = record.get("splits") or {}
    for key, now in (("n_splits", int(n_splits)), ("base_seed", int(base_seed)),
                     ("ratios", [float(r) for r in ratios])):
        was = splits.get(key)
        if was is None:
            continue
        same = ([round(float(x), 6) for x in was] == [round(x, 6) for x in now]) if key == "ratios" else int(was) == now
        if not same:
            reasons.append(_changed(f"split {key}", was, now))
    was_hashes = splits.get("hashes")
    if not reasons and split_hashes is not None and was_hashes and list(was_hashes) != list(split_hashes):
        reasons.append("split definition changed (the split hashes differ: another official split, "
                       "other reference groups or other images)")
    was_ckpt = (record.get("provenance") or {}).get("checkpoint_sha256")
    if check_checkpoint and (was_ckpt or checkpoint_sha256) and was_ckpt != checkpoint_sha256:
        reasons.append(_changed("metric weights sha256", was_ckpt, checkpoint_sha256))
    return reasons


def recheck_finished(
    plan: Any,
    registry: Any,
    cfg: Any,
    tables: Mapping[str, Any],
    make_splits: Callable[[Any, int, int, Sequence[float]], list[Any]],
    console: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Move the plan's skipped units whose inputs changed into its ``todo``.

    Args:
        plan: the run's Plan (:func:`shamisa_bench.harness.run.plan_suite`).
        registry: the loaded Registry.
        cfg: the RunConfig.
        tables: dataset tables already loaded, by name (not loaded again).
        make_splits: ``(table, n_splits, seed, ratios) -> splits``, as the run makes them.
        console: a rich Console; each stale unit is named there with its reasons.

    Returns:
        ``(plan, loaded)``: the updated plan, and the tables this check loaded (for the run
        to reuse).

    Raises:
        PartialDatasetError, LabelFileError: as :func:`~shamisa_bench.harness.data.load_dataset`,
            for a dataset of a finished unit that is found but incomplete or unreadable.
    """
    if not plan.skipped:
        return plan, {}
    loaded: dict[str, Any] = {}
    absent: set[str] = set()
    for name in sorted({d for u in plan.skipped for d in u.datasets} - set(tables)):
        try:
            loaded[name] = load_dataset(registry.dataset(name), cfg.data_root,
                                        allow_partial=cfg.allow_partial, cache_dir=cfg.cache_dir)
        except DatasetNotFoundError:
            absent.add(name)
    available = {**loaded, **dict(tables)}
    split_hashes: dict[str, list[Any]] = {}
    checkpoints: dict[str, tuple[bool, str | None]] = {}
    stale: list[Any] = []
    keep: list[Any] = []
    for unit in plan.skipped:
        if set(unit.datasets) & absent:
            keep.append(unit)
            continue
        if unit.metric not in checkpoints:
            adapter = build_metric(registry.metric(unit.metric), seed=plan.seed)
            try:
                checkpoints[unit.metric] = (True, adapter.checkpoint_sha256())
            except MetricUnavailable:  # the weights cannot be read now: not compared
                checkpoints[unit.metric] = (False, None)
        split_on = unit.dataset or str(unit.train)
        if split_on not in split_hashes:
            splits = make_splits(available[split_on], plan.suite.n_splits, plan.seed, plan.protocol.ratios)
            split_hashes[split_on] = [getattr(s, "hash", None) for s in splits]
        path: Path = unit.path(cfg.results_dir)
        try:
            record = load_unit(path)
        except (ValueError, OSError):  # checked as ok by the plan a moment ago
            keep.append(unit)
            continue
        known, ckpt = checkpoints[unit.metric]
        reasons = stale_reasons(
            record, tables={d: available[d] for d in unit.datasets}, split_hashes=split_hashes[split_on],
            n_splits=plan.suite.n_splits, base_seed=plan.seed, ratios=plan.protocol.ratios,
            checkpoint_sha256=ckpt, check_checkpoint=known,
        )
        if reasons:
            stale.append(unit)
            if console is not None:
                console.print(f"recomputing a result whose inputs changed: {path}: {'; '.join(reasons)}",
                              markup=False, highlight=False, soft_wrap=True)
        else:
            keep.append(unit)
    if not stale:
        return plan, loaded
    order = {u: i for i, u in enumerate(plan.units)}
    todo = tuple(sorted((*plan.todo, *stale), key=order.__getitem__))
    return replace(plan, todo=todo, skipped=tuple(keep)), loaded
