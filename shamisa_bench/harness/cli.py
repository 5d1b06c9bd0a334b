"""CLI of the benchmark harness: ``run``, ``report``, ``perf ridge`` and ``perf run``.

``run`` only parses the arguments into a :class:`~shamisa_bench.harness.run.RunConfig` and
calls :func:`~shamisa_bench.harness.run.run_suite`; ``report`` rebuilds the tables of a suite
from its unit JSON files alone, computing nothing.

Suites of another kind are handled elsewhere: a subsystem that runs some suites itself
(:mod:`shamisa_bench.robustness.cli`) adds a handler to ``run``'s and ``report``'s
``suite_handlers`` default. Each handler gets the parsed arguments first and returns an exit
code when the suite is its own, None otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from shamisa_bench.cli.args import add_device_argument, device_from_args
from shamisa_bench.harness.adapters.pyiqa_home import (
    PYIQA_HOME_ENV,
    pyiqa_home_from_env,
    resolve_pyiqa_home,
)
from shamisa_bench.harness.data import default_cache_dir
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.harness.results import (
    build_leaderboard,
    render_console,
    write_tables,
)
from shamisa_bench.harness.results.latex import write_latex
from shamisa_bench.harness.run import RunConfig, load_tables, plan_suite, run_suite
from shamisa_bench.harness.shard import add_shard_argument, rank_device, shard_from_args
from shamisa_bench.iqa.ridge import bench_ridge

__all__ = ["bench_run", "register", "register_bench", "run_config"]


def _console(quiet: bool = False) -> Any:
    return Console(quiet=quiet)


def register(subparsers: Any) -> None:
    """Add ``run`` and ``report``."""
    p = subparsers.add_parser(
        "run",
        help="run (or resume) a benchmark suite and write results/runs + results/tables",
        description="Run a suite: every metric x dataset (or train--test pair) unit writes one "
        "JSON file; units with results are skipped unless --overwrite; tables are rebuilt.",
    )
    p.add_argument("--suite", default="demo", help="suite name (default: demo, runs offline)")
    p.add_argument("--metrics", nargs="+", metavar="NAME",
                   help="only these of the suite's metrics; a metric the suite does not list is refused "
                   "(its results would join the suite's tables): add it to the suite's YAML first")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="only these datasets")
    p.add_argument("--data-root", type=Path, help="folder holding the datasets (default: $SHAMISA_BENCH_DATA or ./datasets)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results folder (default: ./results)")
    p.add_argument("--cache-dir", type=Path,
                   help="feature/score and dataset cache (default: the data layer's user cache "
                   "folder, ~/.cache/shamisa-bench)")
    p.add_argument("--no-cache", action="store_true", help="compute everything, cache nothing")
    add_device_argument(p)
    p.add_argument("--seed", type=int, help="base seed of the splits (default: the suite's)")
    p.add_argument("--overwrite", action="store_true", help="recompute units that have results")
    p.add_argument("--allow-partial", action="store_true",
                   help="run on incomplete datasets (recorded in the results)")
    p.add_argument("--registry", type=Path, help="registry folder (default: the shipped one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_pyiqa_home_argument(p)
    add_shard_argument(p)
    p.set_defaults(func=_cmd_run, suite_handlers=())

    r = subparsers.add_parser(
        "report",
        help="rebuild a suite's tables from its result JSON files (computes nothing)",
    )
    r.add_argument("--suite", default="demo", help="suite name (default: demo)")
    r.add_argument("--results", type=Path, default=Path("results"),
                   help="results folder (default: ./results)")
    r.add_argument("--registry", type=Path, help="registry folder (default: the shipped one)")
    r.add_argument("--format", choices=("md", "latex"), default="md",
                   help="md: the Markdown, csv and PNG tables (always written); latex: also <suite>.tex, a "
                   "booktabs table for papers (best bold, second underlined)")
    r.add_argument("--intervals", action="store_true", help="latex: the 95%% interval under each median")
    r.set_defaults(func=_cmd_report, suite_handlers=())


def add_pyiqa_home_argument(p: argparse.ArgumentParser) -> None:
    """``--pyiqa-home DIR`` (default: ``$SHAMISA_PYIQA_HOME``)."""
    p.add_argument("--pyiqa-home", type=Path, metavar="DIR",
                   help="folder with pyiqa's parameter files, e.g. a copy of pyiqa's cache holding "
                   "hub/pyiqa/niqe_modelparameters.mat (niqe and brisque then run offline); default: "
                   "$SHAMISA_PYIQA_HOME, else pyiqa's own ($TORCH_HOME/hub/pyiqa)")


def register_bench(bench_subparsers: Any) -> None:
    """Add ``perf ridge`` and ``perf run``."""
    b = bench_subparsers.add_parser("ridge", help="ridge alpha path: splits x alphas, JSON")
    b.add_argument("--n", type=int, default=10_000, help="samples (default 10000)")
    b.add_argument("--d", type=int, default=4096, help="features (default 4096)")
    b.add_argument("--splits", type=int, default=10, help="splits (default 10)")
    b.add_argument("--alphas", type=int, default=25, help="alphas (default 25)")
    b.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    b.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_cmd_bench_ridge)

    r = bench_subparsers.add_parser(
        "run", help="cold vs warm-cache run of a suite (default demo), JSON")
    r.add_argument("--suite", default="demo")
    r.add_argument("--metrics", nargs="+", metavar="NAME")
    r.add_argument("--data-root", type=Path)
    r.add_argument("--cache-dir", type=Path,
                   help="where the datasets are built/cached (the feature cache is always a "
                   "fresh temporary folder)")
    r.add_argument("--registry", type=Path)
    add_device_argument(r)
    add_pyiqa_home_argument(r)
    r.set_defaults(func=_cmd_bench_run)


def run_config(args: argparse.Namespace) -> Any:
    """The RunConfig of ``run``'s arguments (``robustness`` takes the same ones)."""
    return RunConfig(
        suite=args.suite,
        metrics=tuple(args.metrics) if args.metrics else None,
        datasets=tuple(args.datasets) if args.datasets else None,
        data_root=args.data_root,
        results_dir=args.results,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        device=device_from_args(args),
        seed=args.seed,
        overwrite=args.overwrite,
        allow_partial=args.allow_partial,
        registry_root=args.registry,
        progress=not args.no_progress,
        pyiqa_home=_pyiqa_home(getattr(args, "pyiqa_home", None)),
    )


def _pyiqa_home(given: Path | None) -> Path | None:
    """``--pyiqa-home``, else ``$SHAMISA_PYIQA_HOME``; checked to be a folder."""
    home = given if given is not None else pyiqa_home_from_env()
    if home is None:
        return None
    try:
        resolve_pyiqa_home(home)
    except FileNotFoundError as err:
        flag = "--pyiqa-home" if given is not None else f"${PYIQA_HOME_ENV}"
        raise ValueError(f"{flag}: {err}") from err
    return home


def _handled_elsewhere(args: argparse.Namespace) -> int | None:
    """The exit code of the first suite handler that takes the suite (e.g. robustness), else None."""
    for handler in getattr(args, "suite_handlers", ()):
        code = handler(args)
        if code is not None:
            return code
    return None


def _cmd_run(args: argparse.Namespace) -> int:
    code = _handled_elsewhere(args)  # a robustness suite runs there
    if code is not None:
        return code
    cfg = run_config(args)
    console = _console()
    shard = shard_from_args(args)
    cfg = replace(cfg, device=rank_device(cfg.device, shard))
    summary = run_suite(cfg, console=console, shard=shard)
    counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(summary.written.items())) or "none"
    console.print(
        f"suite {cfg.suite}: units written: {counts}; skipped: {len(summary.skipped)}; "
        f"{summary.duration_s:.1f} s",
        highlight=False,
    )
    for t in summary.tables:
        console.print(f"table: {t}", highlight=False)
    return 1 if summary.n_failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    code = _handled_elsewhere(args)  # robustness results of that name: rebuild their report
    if code is not None:
        return code

    baseline = None
    try:
        baseline = load_registry(args.registry).suite(args.suite).baseline
    except ValueError:  # results of a suite no registry describes (e.g. an overlay's): no baseline
        pass
    lb = build_leaderboard(args.results, args.suite, baseline=baseline)
    written = write_tables(lb, args.results)
    if args.format == "latex":
        written += (write_latex(lb, args.results, intervals=args.intervals),)
    console = _console()
    render_console(lb, console)
    for path in written:
        console.print(f"table: {path}", highlight=False, soft_wrap=True)
    return 0


def _cmd_bench_ridge(args: argparse.Namespace) -> int:
    out = bench_ridge(args.n, args.d, args.splits, args.alphas, dtype=args.dtype,
                      seed=args.seed, threads=args.threads)
    print(json.dumps(out, indent=2))
    return 0


def bench_run(
    suite: str = "demo",
    *,
    metrics: tuple[str, ...] | None = None,
    data_root: Path | None = None,
    cache_dir: Path | None = None,
    registry_root: Path | None = None,
    device: str = "cpu",
    pyiqa_home: Path | None = None,
) -> dict[str, Any]:
    """Time a cold run (empty feature cache), a warm rerun (``--overwrite``: every unit
    recomputed from cached features) and a warm resume (every unit skipped).

    The datasets are loaded (the demo set built) before timing starts; results and the
    feature cache live in a temporary folder that is removed afterwards.

    Returns:
        a JSON-ready dict: seconds per run and the warm-cache speedups.
    """
    reg = load_registry(registry_root)
    tmp = Path(tempfile.mkdtemp(prefix="shamisa-bench-run-"))
    try:
        data_cache = cache_dir if cache_dir is not None else tmp / "data-cache"
        base = RunConfig(suite=suite, metrics=metrics, data_root=data_root,
                         results_dir=tmp / "results-cold", cache_dir=data_cache,
                         device=device, registry_root=registry_root, progress=False, pyiqa_home=pyiqa_home)
        plan = plan_suite(reg, base)
        needed = sorted({d for u in plan.units for d in u.datasets})
        t = time.perf_counter()
        tables = load_tables(reg, needed, base)
        t_data = time.perf_counter() - t
        # the data layer keeps its own caches under cache_dir; features go to a fresh root
        cold_cfg = replace(base, cache_dir=tmp / "feature-cache")
        t = time.perf_counter()
        cold = run_suite(cold_cfg, registry=reg, tables=tables)
        t_cold = time.perf_counter() - t
        warm_cfg = replace(cold_cfg, results_dir=tmp / "results-warm")
        t = time.perf_counter()
        run_suite(warm_cfg, registry=reg, tables=tables)
        t_warm = time.perf_counter() - t
        t = time.perf_counter()
        run_suite(warm_cfg, registry=reg, tables=tables)
        t_skip = time.perf_counter() - t
        n_units = sum(len(v) for v in cold.written.values())
        return {
            "target": "run",
            "suite": suite,
            "device": device,
            "n_units": n_units,
            "n_images": {k: len(v.frame) for k, v in tables.items()},
            "dataset_load_s": round(t_data, 3),
            "cold_s": round(t_cold, 3),
            "warm_overwrite_s": round(t_warm, 3),
            "warm_resume_s": round(t_skip, 3),
            "speedup_warm_overwrite": round(t_cold / max(t_warm, 1e-9), 1),
            "speedup_warm_resume": round(t_cold / max(t_skip, 1e-9), 1),
            "statuses": {k: len(v) for k, v in cold.written.items()},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cmd_bench_run(args: argparse.Namespace) -> int:
    home = _pyiqa_home(args.pyiqa_home)
    with contextlib.redirect_stdout(sys.stderr):  # anything else printed: stdout is the JSON only
        out = bench_run(
            args.suite,
            metrics=tuple(args.metrics) if args.metrics else None,
            data_root=args.data_root,
            cache_dir=args.cache_dir,
            registry_root=args.registry,
            device=device_from_args(args),
            pyiqa_home=home,
        )
    print(json.dumps(out, indent=2))
    return 0
