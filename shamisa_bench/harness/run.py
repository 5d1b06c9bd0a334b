"""The benchmark harness: suite -> units -> cached metric passes -> protocols -> JSON -> tables.

A **unit** is one (suite, protocol, metric, dataset) — or (suite, protocol, metric,
train--test) for a cross suite — and writes exactly one JSON file,
``<results>/runs/<suite>/<protocol>/<metric>/<dataset or train--test>.json``, atomically.

Resume: a unit whose file exists with ``status: ok`` is skipped unless ``overwrite``, or
unless an input it records (label file, images, metric weights, splits) has changed since
(:mod:`shamisa_bench.harness.staleness`: then it is recomputed and the console says why);
``unavailable`` and ``failed`` units are attempted again on every run. A run killed at any
point leaves complete unit files only (atomic rename) and a feature cache holding all but
the last unflushed images, so running it again finishes the remaining units, computes only
the missing images, and neither loses nor duplicates a unit.

Every image is decoded and encoded once per metric: a metric's outputs on a dataset are
computed once per run (kept in memory for all units that need them) and cached on disk
across runs (:mod:`shamisa_bench.harness.cache`).

Failures never stop the suite: a metric that cannot be built is recorded as
``unavailable`` (with the reason) in each of its units; an unexpected error in one unit is
recorded as ``failed`` and the run goes on (exit status 1 at the end). A dataset that is
not found under the data root makes the units that need it ``unavailable`` (the console
and the reason give the command that fetches it) while the others run; only when no unit
can run is it an error.
"""

from __future__ import annotations

import inspect
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shamisa_bench.common.progress import TaskProgress
from shamisa_bench.common.provenance import utc_now
from shamisa_bench.common.writable import check_writable
from shamisa_bench.harness.adapters import (
    MetricUnavailable,
    build_metric,
    compute_outputs,
    describe_device,
)
from shamisa_bench.harness.adapters.fr import is_full_reference
from shamisa_bench.harness.adapters.pyiqa_home import use_pyiqa_home
from shamisa_bench.harness.cache import ArrayCache
from shamisa_bench.harness.data import load_dataset
from shamisa_bench.harness.data.errors import DatasetNotFoundError
from shamisa_bench.harness.data.splits import make_split_set
from shamisa_bench.harness import pairs
from shamisa_bench.harness.protocols import run_cross, run_intra
from shamisa_bench.harness.protocols.intra import srcc_by_type
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.harness.results import (
    SCHEMA_VERSION,
    build_leaderboard,
    collect_provenance,
    git_state,
    load_unit,
    render_console,
    unit_path,
    write_tables,
    write_unit,
)
from shamisa_bench.harness.shard import Shard, take_share, writes_tables
from shamisa_bench.harness.staleness import recheck_finished

__all__ = ["Plan", "RunConfig", "RunSummary", "Unit", "load_tables", "plan_suite", "run_suite", "scrub_paths"]

#: Protocol kinds ``run`` can execute.
RUNNABLE_PROTOCOLS = ("intra", "cross")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, from the CLI or from Python.

    Attributes:
        suite: suite name.
        metrics: restrict to these of the suite's metrics (one outside the suite is refused:
            its results would join the suite's leaderboard); None = the suite's.
        datasets: restrict to these datasets (intra: any registered dataset; cross: pairs
            with both ends listed); None = the suite's.
        data_root: folder holding the datasets (None: the data layer's default).
        results_dir: where ``runs/`` and ``tables/`` go.
        cache_dir: feature/score cache (and data-layer caches); None disables caching.
        device: ``cpu`` or ``cuda``/``cuda:N``.
        seed: base seed of the splits (None: the suite's).
        overwrite: recompute units whose results exist.
        allow_partial: run on incomplete datasets (recorded in the units).
        registry_root: registry folder (None: the shipped one).
        progress: show rich progress bars.
        pyiqa_home: folder with pyiqa's parameter files (``hub/pyiqa/`` inside it, or the
            files themselves); None: ``$SHAMISA_PYIQA_HOME`` when set, else pyiqa's default.
    """

    suite: str = "demo"
    metrics: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    data_root: Path | None = None
    results_dir: Path = Path("results")
    cache_dir: Path | None = None
    device: str = "cpu"
    seed: int | None = None
    overwrite: bool = False
    allow_partial: bool = False
    registry_root: Path | None = None
    progress: bool = True
    pyiqa_home: Path | None = None

    def __post_init__(self) -> None:
        if not str(self.device).startswith(("cpu", "cuda")):
            raise ValueError(f"device must be cpu or cuda[:N], got {self.device!r}")


@dataclass(frozen=True)
class Unit:
    """One result file's worth of work.

    Attributes:
        suite, protocol, metric: names.
        dataset: the dataset (intra), else None.
        train, test: the pair (cross), else None.
    """

    suite: str
    protocol: str
    metric: str
    dataset: str | None = None
    train: str | None = None
    test: str | None = None

    @property
    def token(self) -> str:
        """The dataset name or ``<train>--<test>``."""
        return self.dataset if self.dataset else f"{self.train}--{self.test}"

    @property
    def datasets(self) -> tuple[str, ...]:
        """Datasets this unit reads (train first)."""
        return (self.dataset,) if self.dataset else (str(self.train), str(self.test))

    def as_dict(self) -> dict[str, str | None]:
        """The ``unit`` block of the record."""
        return {"suite": self.suite, "protocol": self.protocol, "metric": self.metric,
                "dataset": self.dataset, "train": self.train, "test": self.test}

    def path(self, results_dir: Path) -> Path:
        """Where the unit's JSON goes."""
        return unit_path(results_dir, self.as_dict())


@dataclass(frozen=True)
class Plan:
    """The units of a run.

    Attributes:
        suite: the SuiteSpec.
        protocol: the ProtocolSpec.
        seed: base seed of the splits.
        units: all units, metric-major in suite order.
        todo: units to compute now.
        skipped: units skipped because an ok result exists.
        invalid: ``(unit, problem)`` for units whose existing file failed validation (they
            are in ``todo``: recomputed).
        order: the suite's column tokens (datasets or train--test), for tables.
    """

    suite: Any
    protocol: Any
    seed: int
    units: tuple[Unit, ...]
    todo: tuple[Unit, ...]
    skipped: tuple[Unit, ...]
    order: tuple[str, ...]
    invalid: tuple[tuple[Unit, str], ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    Attributes:
        suite: suite name.
        written: unit files written, by status.
        skipped: units skipped (existing ok results).
        tables: the table files written (md, csv), if any unit exists.
        duration_s: wall time.
    """

    suite: str
    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: tuple[Path, ...] = ()
    tables: tuple[Path, ...] = ()
    duration_s: float = 0.0

    @property
    def n_failed(self) -> int:
        """Units recorded as failed in this run."""
        return len(self.written.get("failed", []))


def scrub_paths(text: str) -> str:
    """Shorten machine-specific paths in a message stored in results (cwd -> ., home -> ~)."""
    out = str(text)
    for prefix, short in ((os.getcwd(), "."), (str(Path.home()), "~")):
        if prefix and prefix not in ("/", "."):
            out = out.replace(prefix + os.sep, short + os.sep).replace(prefix, short)
    return out


def _existing_state(path: Path) -> tuple[bool, str | None]:
    """``(done, problem)``: done when the file holds a valid ``ok`` record; problem names
    why an existing file cannot be trusted (it is then recomputed)."""
    if not path.is_file():
        return False, None
    try:
        return load_unit(path)["status"] == "ok", None
    except (ValueError, OSError) as err:  # unreadable, invalid or old schema: recompute
        msg = str(err)
        return False, msg if str(path) in msg else f"{path}: {msg}"


def plan_suite(registry: Any, cfg: RunConfig) -> Plan:
    """Expand a suite into units and decide which to compute.

    Raises:
        ValueError: unknown suite, metric or dataset (listing valid names), a metric the
            suite does not list, a protocol kind ``run`` cannot execute, or filters that
            leave no unit.
    """
    suite = registry.suite(cfg.suite)
    protocol = registry.protocol(suite.protocol)
    if protocol.kind not in RUNNABLE_PROTOCOLS:
        raise ValueError(
            f"suite {suite.name!r} uses protocol kind {protocol.kind!r}; `shamisa-bench run` "
            f"executes {', '.join(RUNNABLE_PROTOCOLS)}"
        )
    metrics = tuple(cfg.metrics) if cfg.metrics else tuple(suite.metrics)
    for m in metrics:
        registry.metric(m)
    outside = [m for m in metrics if m not in suite.metrics]
    if outside:  # its unit files would add a permanent row to the suite's leaderboard
        raise ValueError(
            f"suite {suite.name!r} has no metric {', '.join(map(repr, outside))}: --metrics chooses among "
            f"the suite's metrics ({', '.join(suite.metrics)}). Add it to the suite's YAML file, or run a "
            "suite that lists it"
        )
    if cfg.datasets:
        for d in cfg.datasets:
            registry.dataset(d)
    units: list[Unit] = []
    if protocol.kind == "intra":
        datasets = tuple(cfg.datasets) if cfg.datasets else tuple(suite.datasets)
        order = tuple(suite.datasets) + tuple(d for d in datasets if d not in suite.datasets)
        for m in metrics:
            units += [Unit(suite.name, protocol.name, m, dataset=d) for d in datasets]
    else:
        pairs = tuple(suite.resolved_pairs())
        if cfg.datasets:
            keep = set(cfg.datasets)
            pairs = tuple((a, b) for a, b in pairs if a in keep and b in keep)
        for a, b in pairs:
            registry.dataset(a)
            registry.dataset(b)
        order = tuple(f"{a}--{b}" for a, b in suite.resolved_pairs())
        for m in metrics:
            units += [Unit(suite.name, protocol.name, m, train=a, test=b) for a, b in pairs]
    if not units:
        raise ValueError(f"suite {suite.name!r}: the --metrics/--datasets filters leave no unit")
    todo, skipped, invalid = [], [], []
    for u in units:
        done, problem = (False, None) if cfg.overwrite else _existing_state(u.path(cfg.results_dir))
        if done:
            skipped.append(u)
        else:
            todo.append(u)
            if problem is not None:
                invalid.append((u, problem))
    seed = int(cfg.seed if cfg.seed is not None else suite.seed)
    return Plan(suite, protocol, seed, tuple(units), tuple(todo), tuple(skipped), order, tuple(invalid))


# --------------------------------------------------------------------------- data access
def load_tables(registry: Any, names: Sequence[str], cfg: RunConfig) -> dict[str, Any]:
    if not names:
        return {}

    tables = {}
    for name in names:
        tables[name] = load_dataset(registry.dataset(name), cfg.data_root,
                                    allow_partial=cfg.allow_partial, cache_dir=cfg.cache_dir)
    return tables


def load_available(registry: Any, names: Sequence[str], cfg: RunConfig
                   ) -> tuple[dict[str, Any], dict[str, FileNotFoundError]]:
    """Load the datasets that are present; ``(tables, missing)`` where ``missing`` maps the
    name of each dataset not found under the data root to its error (which names the paths
    looked for and ends with the command that fetches it).

    Raises:
        PartialDatasetError, LabelFileError: a dataset is found but incomplete or unreadable
            (these are not skipped: the user must fix them or pass ``--allow-partial``).
    """
    tables: dict[str, Any] = {}
    missing: dict[str, FileNotFoundError] = {}
    for name in names:
        try:
            tables[name] = load_dataset(registry.dataset(name), cfg.data_root,
                                        allow_partial=cfg.allow_partial, cache_dir=cfg.cache_dir)
        except DatasetNotFoundError as err:
            missing[name] = err
    return tables, missing


def _make_splits(table: Any, n_splits: int, seed: int, ratios: Sequence[float]) -> list[Any]:
    params = inspect.signature(make_split_set).parameters
    kwargs: dict[str, Any] = {"n_splits": int(n_splits), "base_seed": int(seed)}
    if "ratios" in params:
        kwargs["ratios"] = tuple(float(r) for r in ratios)
    return list(make_split_set(table, **kwargs))


def _dataset_info(table: Any) -> dict[str, Any]:
    spec = table.spec
    info = dict(table.summary()) if hasattr(table, "summary") else {"n_images": len(table.frame)}
    info.update(
        title=getattr(spec, "title", None),
        version=spec.version,
        kind=getattr(spec, "kind", None),
        lower_better=bool(spec.lower_better),
        split_method=getattr(spec, "split", None),
        missing=list(getattr(table, "missing", ()) or ())[:200],
    )
    return info


# --------------------------------------------------------------------------- records
def _base_record(unit: Unit, plan: Plan, adapter: Any | None, spec: Any) -> dict[str, Any]:
    suite = plan.suite
    metric = {
        "name": unit.metric,
        "kind": getattr(spec, "kind", None),
        "version": getattr(spec, "version", None),
        "lower_better": bool(getattr(spec, "lower_better", False)),
    }
    if adapter is not None:
        metric["output"] = adapter.output
        if adapter.output == "features":
            # the feature mode, under the key results have always used (schema unchanged)
            metric["feature_protocol"] = getattr(adapter, "feature_mode", None)
            metric["standardize"] = bool(adapter.standardize)
            metric["lower_better"] = False
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "reason": None,
        "unit": unit.as_dict(),
        "table": {
            "columns": list(suite.columns),
            "higher_is_better": dict(suite.higher_is_better),
            "main_score": getattr(suite, "main_score", suite.columns[0]),
            "order": list(plan.order),
        },
        "metric": metric,
    }


def _versions(registry: Any, plan: Plan, unit: Unit) -> dict[str, Any]:
    out = {f"suites/{plan.suite.name}": plan.suite.version,
           f"protocols/{plan.protocol.name}": plan.protocol.version,
           f"metrics/{unit.metric}": registry.metric(unit.metric).version}
    for d in unit.datasets:
        out[f"datasets/{d}"] = registry.dataset(d).version
    return out


def _split_block(plan: Plan, splits: Sequence[Any], method: Any) -> dict[str, Any]:
    return {
        "n_splits": len(splits),
        "base_seed": plan.seed,
        "ratios": list(plan.protocol.ratios),
        "method": method,
        "seeds": [getattr(s, "seed", None) for s in splits],
        "hashes": [getattr(s, "hash", None) for s in splits],
        "part_hashes": [getattr(s, "part_hashes", None) for s in splits],
    }


# --------------------------------------------------------------------------- running
def run_suite(
    cfg: RunConfig,
    *,
    registry: Any = None,
    console: Any = None,
    on_unit: Callable[[Unit, dict[str, Any]], None] | None = None,
    tables: Mapping[str, Any] | None = None,
    shard: Shard | None = None,
) -> RunSummary:
    """Run (or resume) a suite and rebuild its tables.

    Args:
        cfg: the run configuration.
        registry: a loaded Registry (default: ``load_registry(cfg.registry_root)``).
        console: a rich Console for progress and messages (None: quiet).
        on_unit: called after each unit file is written, with the unit and its record.
        tables: dataset tables already loaded, by name (the others are loaded here).
        shard: compute only this share of the units (:mod:`shamisa_bench.harness.shard`).

    Returns:
        the summary; ``n_failed > 0`` means some unit errored (recorded in its file).

    Raises:
        ValueError: unknown names (listing the valid ones) or an unrunnable suite.
        FileNotFoundError: every dataset the units need is missing (the message names the
            expected paths and the fetch commands); when some are present, the units of
            the missing ones are recorded as unavailable instead.
        OSError: the results or cache folder cannot be written (checked before any work),
            or a file cannot be written later (the message names it; the unit files
            written before it are kept).
    """
    t_run = time.perf_counter()
    reg = registry if registry is not None else load_registry(cfg.registry_root)
    plan = take_share(plan_suite(reg, cfg), shard)
    check_writable(cfg.results_dir, "--results")  # before any work: not a traceback at the end
    if cfg.cache_dir is not None:
        check_writable(cfg.cache_dir, "the cache folder (--cache-dir; --no-cache for none)")
    if cfg.pyiqa_home is not None:
        use_pyiqa_home(cfg.pyiqa_home)
    plan, rechecked = recheck_finished(plan, reg, cfg, tables or {}, _make_splits, console)
    summary = RunSummary(cfg.suite, {}, tuple(u.path(cfg.results_dir) for u in plan.skipped))
    if console is not None and plan.skipped:
        console.print(f"{len(plan.skipped)} unit(s) already done, skipped "
                      "(--overwrite recomputes them)", highlight=False)
    if console is not None:
        for _unit, problem in plan.invalid:
            console.print(f"recomputing an invalid result file: {problem}", markup=False, highlight=False,
                          soft_wrap=True)
    needed = sorted({d for u in plan.todo for d in u.datasets})
    given = {**rechecked, **dict(tables or {})}
    found, missing = load_available(reg, [d for d in needed if d not in given], cfg)
    loaded = {**{d: given[d] for d in needed if d in given}, **found}
    if missing and all(set(u.datasets) & set(missing) for u in plan.todo):
        # nothing can run: the error names every missing dataset and how to fetch it
        raise FileNotFoundError("\n".join(str(e) for e in missing.values()))
    if console is not None:
        for name, err in missing.items():
            hint = str(err).strip().splitlines()[-1]
            what = getattr(err, "what", "not found")  # or: found, but with no official split
            console.print(f"dataset {name!r} {what}, its units are recorded as unavailable. {hint}",
                          markup=False, highlight=False, soft_wrap=True)
    splits = {d: _make_splits(t, plan.suite.n_splits, plan.seed, plan.protocol.ratios)
              for d, t in loaded.items()}
    alphas = np.asarray(plan.protocol.alpha_grid.values(), dtype=np.float64)
    git = git_state()
    device_desc = describe_device(cfg.device)
    by_metric: dict[str, list[Unit]] = {}
    for u in plan.todo:
        by_metric.setdefault(u.metric, []).append(u)

    def write(unit: Unit, record: dict[str, Any], started: str, t0: float,
              checkpoint: str | None) -> None:
        record["provenance"] = collect_provenance(
            device=device_desc, seed=plan.seed, started_at=started,
            duration_s=time.perf_counter() - t0, checkpoint_sha256=checkpoint,
            registry_versions=_versions(reg, plan, unit), git=git,
        )
        path = unit.path(cfg.results_dir)
        clean = write_unit(path, record)
        summary.written.setdefault(record["status"], []).append(path)
        if on_unit is not None:
            on_unit(unit, clean)

    with TaskProgress(cfg.progress and console is not None, console) as prog:
        units_task = prog.add("units", len(plan.todo))
        images_task = prog.add("images", 0)
        for metric_name, units in by_metric.items():
            spec = reg.metric(metric_name)
            adapter = build_metric(spec, seed=plan.seed)
            outputs: dict[str, Any] = {}
            unavailable: str | None = None
            trained_on: frozenset[str] = frozenset()
            try:
                cache = None
                checkpoint = None
                try:
                    checkpoint = adapter.checkpoint_sha256()
                    trained_on = adapter.trained_on()
                    if cfg.cache_dir is not None:
                        cache = ArrayCache(cfg.cache_dir, adapter.identity())
                except MetricUnavailable as err:
                    unavailable = scrub_paths(str(err))
                for unit in units:
                    started, t0 = utc_now(), time.perf_counter()
                    record = _base_record(unit, plan, adapter, spec)
                    absent = [d for d in unit.datasets if d in missing]
                    if absent:
                        hints = " ".join(str(missing[d]).strip().splitlines()[-1] for d in absent)
                        why = "; ".join(f"dataset {d!r} {getattr(missing[d], 'what', 'not found')}" for d in absent)
                        record.update(status="unavailable", scores={"per_split": [], "aggregate": {}},
                                      reason=scrub_paths(f"{why}. {hints}"))
                        write(unit, record, started, t0, checkpoint)
                        prog.log(f"{unit.metric} / {unit.token}: unavailable ({why})")
                        prog.advance(units_task)
                        continue
                    seen = sorted(trained_on & reg.image_family(unit.dataset or unit.test))
                    if unavailable is None and seen:
                        # Its head saw these labels: every test image would be a training image.
                        record.update(status="unavailable", scores={"per_split": [], "aggregate": {}},
                                      reason=f"fit on {', '.join(seen)}'s labels, so it cannot be tested "
                                             "there (evaluate the encoder as a feature-probe instead)")
                        write(unit, record, started, t0, checkpoint)
                        prog.log(f"{unit.metric} / {unit.token}: unavailable ({record['reason']})")
                        prog.advance(units_task)
                        continue
                    fr_refs: dict[str, dict[str, str]] = {}
                    if unavailable is None and is_full_reference(adapter):
                        try:  # references and self-checks of a full-reference unit (harness.pairs)
                            fr_refs = pairs.prepare_unit(adapter, unit.datasets, loaded, cfg.device, record)
                            prog.log(f"{unit.metric} / {unit.token}: {pairs.describe(record['fr']['self_checks'])}")
                        except pairs.NoReferences as err:
                            record.update(status="unavailable", scores={"per_split": [], "aggregate": {}},
                                          reason=scrub_paths(str(err)))
                            write(unit, record, started, t0, checkpoint)
                            prog.log(f"{unit.metric} / {unit.token}: unavailable ({record['reason']})")
                            prog.advance(units_task)
                            continue
                        except MetricUnavailable as err:
                            unavailable = scrub_paths(str(err))
                    if unavailable is None:
                        try:
                            for d in unit.datasets:
                                if d not in outputs:
                                    if fr_refs:
                                        adapter.bind_references(fr_refs[d])
                                    tab = loaded[d].frame
                                    prog.reset(images_task, f"{metric_name} on {d}", len(tab))
                                    outputs[d] = compute_outputs(
                                        adapter, list(tab["image"]), list(tab["name"]),
                                        cache=cache, device=cfg.device,
                                        on_image=lambda n: prog.advance(images_task, n),
                                    )
                        except MetricUnavailable as err:
                            unavailable = scrub_paths(str(err))
                    if unavailable is not None:
                        record.update(status="unavailable", reason=unavailable)
                        record["scores"] = {"per_split": [], "aggregate": {}}
                        write(unit, record, started, t0, checkpoint)
                        prog.log(f"{unit.metric} / {unit.token}: unavailable ({unavailable})")
                        prog.advance(units_task)
                        continue
                    try:
                        record.update(_evaluate(unit, plan, loaded, splits, outputs, adapter,
                                                alphas, run_intra, run_cross))
                        msg = "ok"
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as err:  # noqa: BLE001 - recorded, the suite goes on
                        tb = traceback.format_exc(limit=4).strip().splitlines()
                        record.update(status="failed",
                                      reason=scrub_paths(f"{type(err).__name__}: {err}"),
                                      traceback=[scrub_paths(t) for t in tb[-6:]])
                        record["scores"] = {"per_split": [], "aggregate": {}}
                        msg = f"FAILED ({type(err).__name__}: {err})"
                    write(unit, record, started, t0, checkpoint)
                    if record["status"] == "ok":
                        srcc = record["scores"]["aggregate"].get("srcc", {}).get("median")
                        msg = f"ok, median SRCC {srcc:.3f}" if srcc is not None and np.isfinite(
                            srcc) else "ok"
                    prog.log(f"{unit.metric} / {unit.token}: {msg}")
                    prog.advance(units_task)
            finally:
                adapter.close()
    tables_written: tuple[Path, ...] = ()
    if writes_tables(shard) and (cfg.results_dir / "runs" / cfg.suite).is_dir():
        lb = build_leaderboard(cfg.results_dir, cfg.suite, baseline=plan.suite.baseline)
        tables_written = write_tables(lb, cfg.results_dir)
        checks = pairs.write_checks_table(cfg.results_dir, cfg.suite)
        tables_written += (checks,) if checks is not None else ()
        if console is not None:
            render_console(lb, console)
    return RunSummary(cfg.suite, summary.written, summary.skipped, tables_written,
                      time.perf_counter() - t_run)


def _evaluate(unit: Unit, plan: Plan, tables: dict[str, Any], splits: dict[str, list[Any]],
              outputs: dict[str, Any], adapter: Any, alphas: np.ndarray,
              run_intra: Callable[..., Any], run_cross: Callable[..., Any]) -> dict[str, Any]:
    """Run the unit's protocol and return the record fields it fills."""
    if unit.dataset:
        table = tables[unit.dataset]
        res = run_intra(
            outputs[unit.dataset], table.frame["mos"].to_numpy(dtype=np.float64),
            labels_lower_better=bool(table.spec.lower_better),
            metric_lower_better=adapter.lower_better,
            splits=splits[unit.dataset], alphas=alphas, standardize=adapter.standardize,
        )
        split_block = _split_block(plan, splits[unit.dataset], getattr(table.spec, "split", None))
        datasets = {unit.dataset: _dataset_info(table)}
        train_use = None
        by_type = (srcc_by_type(res, table.frame["mos"].to_numpy(dtype=np.float64), table.frame["distortion"],
                                labels_lower_better=bool(table.spec.lower_better))
                   if "distortion" in table.frame else None)
    else:
        ta, tb = tables[str(unit.train)], tables[str(unit.test)]
        res = run_cross(
            outputs[str(unit.train)], ta.frame["mos"].to_numpy(dtype=np.float64),
            outputs[str(unit.test)], tb.frame["mos"].to_numpy(dtype=np.float64),
            train_lower_better=bool(ta.spec.lower_better),
            test_lower_better=bool(tb.spec.lower_better),
            metric_lower_better=adapter.lower_better,
            train_splits=splits[str(unit.train)], alphas=alphas, standardize=adapter.standardize,
        )
        split_block = _split_block(plan, splits[str(unit.train)], getattr(ta.spec, "split", None))
        split_block["applies_to"] = str(unit.train)
        datasets = {str(unit.train): _dataset_info(ta), str(unit.test): _dataset_info(tb)}
        train_use = res.train_usable
        by_type = None
    use = res.usable
    out_main = outputs[unit.dataset or str(unit.test)]
    fields: dict[str, Any] = {
        "status": "ok",
        "datasets": datasets,
        "scores": {
            "per_split": [s.record() for s in res.splits],
            "aggregate": res.aggregate,
        },
        "n_images": res.n_images,
        "n_excluded": len(use.excluded),
        "excluded": [{"name": n, "reason": r} for n, r in use.excluded],
        "nonfinite": use.nonfinite(),
        "failures": [{"name": n, "reason": r} for n, r in out_main.failures],
        "splits": split_block,
        "ridge": res.ridge,
        "notes": list(res.notes),
        "cache": {"n_cached": int(out_main.n_cached), "n_computed": int(out_main.n_computed)},
    }
    if by_type is not None:  # datasets whose images carry a distortion type
        fields["by_type"] = by_type
    if train_use is not None:
        fields["train_excluded"] = [{"name": n, "reason": r} for n, r in train_use.excluded]
        fields["train_nonfinite"] = train_use.nonfinite()
    return fields
