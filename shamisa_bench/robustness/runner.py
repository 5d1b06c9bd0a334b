"""Run the robustness protocol: sources -> distorted set -> cached scores -> JSON -> report.

Each batch of the distorted set (:mod:`~shamisa_bench.robustness.generate`) is looked up
in every metric's cache (the harness's :class:`~shamisa_bench.harness.cache.ArrayCache`, keyed by
the metric identity); it is generated only when some metric misses one of its images, and
each metric computes only its misses. So every (source, distortion, severity) image is
generated at most once per run and scored once per metric across runs.

Outputs, under ``<results>/robustness/<name>/``:

* ``<metric>.json``: one per metric (``status`` ok / unavailable / failed), the raw
  qualities, the measurements, NaN counts and failures, the probe head, provenance;
* ``run.json``: the set, the metric order, generation and wall time, provenance.

The report (``<results>/robustness/<name>.md`` and its PNGs) is then rebuilt from those
files alone by :func:`~shamisa_bench.robustness.report.write_report`.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from shamisa_bench.common.atomic import atomic_write_bytes
from shamisa_bench.common.progress import TaskProgress
from shamisa_bench.common.provenance import utc_now
from shamisa_bench.common.scoring import orient
from shamisa_bench.harness.adapters import (
    MetricUnavailable,
    build_metric,
    describe_device,
)
from shamisa_bench.harness.adapters.pyiqa_home import use_pyiqa_home
from shamisa_bench.harness.cache import ArrayCache
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.harness.results import clean_json, collect_provenance, git_state
from shamisa_bench.harness.run import RunConfig, scrub_paths
from shamisa_bench.robustness.config import RobustnessParams
from shamisa_bench.robustness.generate import (
    DistortedSet,
    build_set,
    grid_name,
    invariance_name,
)
from shamisa_bench.robustness.head import fit_probe_head
from shamisa_bench.robustness.measure import measure_metric
from shamisa_bench.robustness.pairs import NOT_APPLICABLE, reference_tensors
from shamisa_bench.robustness.report import RECORD_SCHEMA, write_report
from shamisa_bench.robustness.sources import load_sources

__all__ = [
    "RECORD_SCHEMA",
    "RobustnessConfig",
    "RobustnessSummary",
    "raw_qualities",
    "run_robustness",
    "write_record",
]



@dataclass(frozen=True)
class RobustnessConfig:
    """A robustness run, from the CLI or from Python.

    Attributes:
        run: the harness's RunConfig: ``suite`` gives the default metrics, sources
            (``datasets``; ``demo`` = the bundled photographs) and the protocol (kind
            ``robustness``); ``metrics``, ``datasets``, ``data_root``, ``results_dir``,
            ``cache_dir`` (score/feature cache; None: none), ``device``, ``seed`` (of the
            distorted set; None: the protocol's ``base_seed``), ``overwrite`` (recompute
            metrics whose JSON exists for the same set), ``registry_root``, ``progress``
            mean what they mean for ``run``.
        name: results name: ``<results>/robustness/<name>.md`` (None: the suite's).
        images: image folders used as sources (instead of datasets).
        head_dataset, max_images, image_size, n_compositions: override the protocol.
    """

    run: Any = None
    name: str | None = None
    images: tuple[Path, ...] = ()
    head_dataset: str | None = None
    max_images: int | None = None
    image_size: int | None = None
    n_compositions: int | None = None

    def __post_init__(self) -> None:
        if self.run is None:
            object.__setattr__(self, "run", RunConfig(suite="robustness"))
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ValueError(f"name must be a plain file stem, got {self.name!r}")

    @property
    def run_name(self) -> str:
        """The results name."""
        return self.name or self.run.suite


@dataclass(frozen=True)
class RobustnessSummary:
    """What a run did.

    Attributes:
        name: results name.
        records: metric -> JSON path.
        statuses: metric -> ok / unavailable / failed / skipped (existing result).
        report: the report files written (md first, then PNGs).
        duration_s: wall time of the run.
        generation_s: time spent generating distorted images.
    """

    name: str
    records: dict[str, Path] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    report: tuple[Path, ...] = ()
    duration_s: float = 0.0
    generation_s: float = 0.0


def write_record(path: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """Clean (6 decimals, NaN -> null) and atomically write a JSON record; return it."""
    clean = clean_json(record)
    atomic_write_bytes(path, (json.dumps(clean, indent=1, allow_nan=False) + "\n").encode())
    return clean


def _existing(path: Path, sha: str) -> bool:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return rec.get("status") == "ok" and rec.get("set", {}).get("sha256") == sha and \
        [rec.get("schema"), rec.get("schema_version")] == list(RECORD_SCHEMA)


def raw_qualities(dset: DistortedSet, quality: Mapping[str, float]) -> dict[str, Any]:
    """Arrange per-image qualities (by image name) as the record's ``raw`` block.

    Returns:
        ``{"pristine": (S,), "invariance": {t: (S,)}, "grid": {type: {"severities",
        "values", "quality": (S, L)}}, "compositions": [(S, n + 1)]}`` with NaN for missing.
    """
    nan = float("nan")
    src = dset.sources.names
    pristine = [quality.get(f"{s}/pristine", nan) for s in src]
    return {
        "pristine": pristine,
        "invariance": {t: [quality.get(invariance_name(s, t), nan) for s in src] for t in dset.params.invariance},
        "grid": {g.type: {"severities": list(g.severities), "values": list(g.values),
                          "quality": [[quality.get(grid_name(s, g.type, sev), nan) for sev in g.severities]
                                      for s in src]}
                 for g in dset.grid},
        "compositions": [[[p] + [quality.get(f"{s}/comp{c}:k{k}", nan) for k in range(1, len(plan.types) + 1)]
                          for s, p in zip(src, pristine)]
                         for c, plan in enumerate(dset.compositions)],
    }


class _MetricState:
    """One metric during a run: adapter, cache, head, outputs and failures."""

    def __init__(self, name: str, spec: Any, adapter: Any) -> None:
        self.name = name
        self.spec = spec
        self.adapter = adapter
        self.cache: Any = None
        self.head: Any = None
        self.status = "ok"
        self.reason: str | None = None
        self.traceback: list[str] = []
        self.values: dict[str, np.ndarray] = {}
        self.failures: list[tuple[str, str]] = []
        self.n_cached = 0
        self.n_computed = 0
        self.compute_s = 0.0
        self.checkpoint: str | None = None
        self.started = ""

    @property
    def active(self) -> bool:
        return self.status == "ok"

    def stop(self, status: str, err: BaseException) -> None:
        self.status = status
        self.reason = scrub_paths(f"{err}" if status == "unavailable" else f"{type(err).__name__}: {err}")
        if status == "failed":
            self.traceback = [scrub_paths(t) for t in traceback.format_exc(limit=4).strip().splitlines()[-6:]]

    def quality(self, names: tuple[str, ...], keys: tuple[str, ...]) -> dict[str, float]:
        """Quality (higher = better) per image name; missing images are left out."""
        have = [(n, k) for n, k in zip(names, keys) if k in self.values]
        if not have:
            return {}
        vals = np.stack([self.values[k] for _, k in have])
        if self.adapter.output == "features":
            q = self.head.predict(vals)
        else:
            q = orient(vals.reshape(-1), self.adapter.lower_better)
        return {n: float(v) for (n, _), v in zip(have, q)}


def _resolve(cfg: RobustnessConfig, reg: Any) -> tuple[Any, Any, RobustnessParams, tuple[str, ...], tuple[str, ...]]:
    """(suite, protocol, params, metrics, source datasets) of a run."""
    run = cfg.run
    suite = reg.suite(run.suite)
    protocol = reg.protocol(suite.protocol)
    if protocol.kind != "robustness":
        raise ValueError(f"suite {run.suite!r} uses protocol kind {protocol.kind!r}, not robustness")
    params = RobustnessParams.from_params(protocol.params, seed=protocol.base_seed if run.seed is None else run.seed)
    comp = None if cfg.n_compositions is None else replace(params.compositions, n=cfg.n_compositions)
    params = params.override(max_images=cfg.max_images, image_size=cfg.image_size,
                             head_dataset=cfg.head_dataset, compositions=comp)
    metrics = tuple(run.metrics) if run.metrics else tuple(suite.metrics)
    for m in metrics:
        reg.metric(m)  # unknown: ValueError listing the valid names
    datasets = () if cfg.images else tuple(run.datasets or suite.datasets)
    for d in datasets:
        reg.dataset(d)
    return suite, protocol, params, metrics, datasets


def run_robustness(
    cfg: RobustnessConfig,
    *,
    registry: Any = None,
    console: Any = None,
    adapters: Mapping[str, Any] | None = None,
) -> RobustnessSummary:
    """Run (or resume) a robustness measurement and write its JSON files and report.

    Args:
        cfg: the run configuration.
        registry: a loaded Registry (default: ``load_registry(cfg.registry_root)``).
        console: a rich Console for progress and messages (None: quiet).
        adapters: metric adapters to use instead of building them from the registry
            (tests), by metric name.

    Returns:
        the summary.

    Raises:
        ValueError: unknown names (listing the valid ones), bad parameters, an empty image
            folder or no readable source image.
    """
    t_run = time.perf_counter()
    started = utc_now()
    run = cfg.run
    reg = registry if registry is not None else load_registry(run.registry_root)
    suite, protocol, params, metrics, datasets = _resolve(cfg, reg)
    if run.pyiqa_home is not None:
        use_pyiqa_home(run.pyiqa_home)
    sources = load_sources(folders=cfg.images, datasets=datasets, registry=reg, data_root=run.data_root,
                           cache_dir=run.cache_dir, max_images=params.max_images, size=params.image_size,
                           allow_partial=run.allow_partial)
    dset = build_set(sources, params)
    out_dir = run.results_dir / "robustness" / cfg.run_name
    git = git_state()
    device_desc = describe_device(run.device)
    versions = {f"protocols/{protocol.name}": protocol.version, f"suites/{suite.name}": suite.version}

    def say(text: str) -> None:
        if console is not None:
            console.print(text, markup=False, highlight=False)

    say(f"robustness {cfg.run_name}: {len(sources.names)} source image(s), {len(dset.grid)} types, "
        f"{len(dset.compositions)} compositions, {dset.n_images} images per metric")
    for n, r in sources.skipped:
        say(f"source skipped: {n}: {r}")
    states: list[_MetricState] = []
    statuses: dict[str, str] = {}
    for m in metrics:
        path = out_dir / f"{m}.json"
        if not run.overwrite and _existing(path, dset.sha256):
            statuses[m] = "skipped"
            continue
        spec = reg.metric(m)
        st = _MetricState(m, spec, (adapters or {}).get(m) or build_metric(spec, seed=params.seed))
        st.started = utc_now()
        states.append(st)
        t0 = time.perf_counter()
        try:
            st.checkpoint = st.adapter.checkpoint_sha256()
            if run.cache_dir is not None:
                st.cache = ArrayCache(run.cache_dir, st.adapter.identity())
            if st.adapter.output == "features":
                say(f"{m}: fitting its ridge head on {params.head_dataset}")
                st.head = fit_probe_head(st.adapter, reg, params.head_dataset, cache=st.cache,
                                         device=run.device, data_root=run.data_root,
                                         data_cache_dir=run.cache_dir, protocol=protocol, seed=params.seed,
                                         allow_partial=run.allow_partial)
                versions[f"datasets/{params.head_dataset}"] = reg.dataset(params.head_dataset).version
        except MetricUnavailable as err:
            st.stop("unavailable", err)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - recorded in the metric's file; the run goes on
            st.stop("failed", err)
        st.compute_s += time.perf_counter() - t0
        if not st.active:
            say(f"{m}: {st.status} ({st.reason})")

    gen_s = 0.0
    try:
        with TaskProgress(run.progress and console is not None, console) as prog:
            task = prog.add("batches", len(dset.batches))
            for batch in dset.batches:
                need: list[tuple[_MetricState, list[int]]] = []
                for st in states:
                    if not st.active:
                        continue
                    hits = st.cache.get_many(batch.keys) if st.cache is not None else {}
                    st.values.update(hits)
                    st.n_cached += len(hits)
                    miss = [i for i, k in enumerate(batch.keys) if k not in hits]
                    if miss:
                        need.append((st, miss))
                # open first: a metric that turns out unavailable must not cause generation
                need = [(st, miss) for st, miss in need if _open(st, run.device, MetricUnavailable)]
                if need:
                    t0 = time.perf_counter()
                    images = batch.make()
                    gen_s += time.perf_counter() - t0
                    for st, miss in need:
                        _score(st, batch, images, miss, reference_tensors(st.adapter, dset, batch.names))
                prog.advance(task)
    finally:
        for st in states:
            if st.cache is not None:
                st.cache.flush()
            st.adapter.close()

    summary_records: dict[str, Path] = {}
    set_record = dset.record()
    for st in states:
        path = out_dir / f"{st.name}.json"
        record = _record(st, dset, set_record, cfg)
        record["provenance"] = collect_provenance(
            device=device_desc, seed=params.seed, started_at=st.started, duration_s=st.compute_s,
            checkpoint_sha256=st.checkpoint, registry_versions={**versions, f"metrics/{st.name}": st.spec.version},
            git=git)
        write_record(path, record)
        statuses[st.name] = st.status
        summary_records[st.name] = path
        say(f"{st.name}: {st.status}" + (f" ({st.reason})" if st.reason else ""))
    for m in metrics:
        summary_records.setdefault(m, out_dir / f"{m}.json")
    duration = time.perf_counter() - t_run
    manifest = {
        "schema": RECORD_SCHEMA[0] + "/run",
        "schema_version": RECORD_SCHEMA[1],
        "name": cfg.run_name,
        "suite": suite.name,
        "metrics": list(metrics),
        "statuses": statuses,
        "set": {k: v for k, v in set_record.items() if k != "sources"} | {
            "n_sources": len(sources.names), "sources": list(sources.names)},
        "generation_s": gen_s,
        "wall_time_s": duration,
        "command_note": "metrics with status 'skipped' reused their existing JSON (same set sha256)",
        "provenance": collect_provenance(device=device_desc, seed=params.seed, started_at=started,
                                         duration_s=duration, registry_versions=versions, git=git),
    }
    write_record(out_dir / "run.json", manifest)
    report = write_report(run.results_dir, cfg.run_name)
    return RobustnessSummary(cfg.run_name, summary_records, statuses, report, duration, gen_s)


def _open(st: _MetricState, device: str, unavailable: type[Exception]) -> bool:
    """Open ``st``'s adapter if needed; False (recorded) when it cannot run."""
    if st.adapter.is_open:
        return True
    t0 = time.perf_counter()
    try:
        st.adapter.open(device)
    except unavailable as err:
        st.stop("unavailable", err)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 - recorded; other metrics go on
        st.stop("failed", err)
    st.compute_s += time.perf_counter() - t0
    return st.active


def _score(st: _MetricState, batch: Any, images: list[Any], miss: list[int],
           references: Mapping[str, Any] | None = None) -> None:
    """Compute ``st``'s missing images of a batch (failures recorded per image, not cached).

    ``references``: for a full-reference metric, each image's source (None: not applicable,
    recorded as such; :mod:`shamisa_bench.robustness.pairs`); empty for the others.
    """
    t0 = time.perf_counter()
    if references:
        st.adapter.bind_references({n: r for n, r in references.items() if r is not None})
    for i in miss:
        name, key = batch.names[i], batch.keys[i]
        if references and references.get(name) is None:
            st.failures.append((name, NOT_APPLICABLE))
            continue
        try:
            out = np.asarray(st.adapter.compute(images[i][None], name))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - recorded per image, never cached
            st.failures.append((name, " ".join(f"{type(err).__name__}: {err}".split())[:300]))
            continue
        st.values[key] = out
        st.n_computed += 1
        if st.cache is not None:
            st.cache.put(key, out)
    st.compute_s += time.perf_counter() - t0


def _record(st: _MetricState, dset: DistortedSet, set_record: dict[str, Any], cfg: RobustnessConfig
            ) -> dict[str, Any]:
    ad = st.adapter
    record: dict[str, Any] = {
        "schema": RECORD_SCHEMA[0],
        "schema_version": RECORD_SCHEMA[1],
        "status": st.status,
        "reason": st.reason,
        "name": cfg.run_name,
        "metric": {"name": st.name, "kind": getattr(st.spec, "kind", None),
                   "version": getattr(st.spec, "version", None),
                   "lower_better": bool(getattr(st.spec, "lower_better", False)),
                   "output": ad.output,
                   "quality": ("ridge head prediction" if ad.output == "features" else
                               "minus the score" if ad.lower_better else "the score")},
        "head": st.head.info if st.head is not None else None,
        "set": set_record,
    }
    if st.traceback:
        record["traceback"] = st.traceback
    if st.status != "ok":
        return record
    quality: dict[str, float] = {}
    for b in dset.batches:
        quality.update(st.quality(b.names, b.keys))
    # measure what is stored (rounded), so the report and the record always agree
    raw = clean_json(raw_qualities(dset, quality))
    nonfinite = [n for b in dset.batches for n in b.names
                 if n not in quality or not np.isfinite(quality[n])]
    failed = {n for n, _ in st.failures}
    record.update(
        raw=raw,
        measurements=measure_metric(raw),
        nonfinite={"n": len(nonfinite), "n_failed": len(failed),
                   "names": [n for n in nonfinite if n not in failed][:200]},
        failures=[{"name": n, "reason": r} for n, r in st.failures[:200]],
        n_failures=len(st.failures),
        cache={"n_cached": st.n_cached, "n_computed": st.n_computed},
        compute_s=st.compute_s,
    )
    return record
