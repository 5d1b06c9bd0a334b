"""CLI of the analyses: ``shamisa-bench gmad`` and ``shamisa-bench embed``.

``gmad --defender A --attacker B`` runs a gMAD competition in both directions on the pool;
``embed --metric M`` maps a metric's features for the pool in 2-D. The pool is, by default,
the synthetic one built from ``<data root>/pristine/bsds500/test``
(:mod:`~shamisa_bench.analysis.pool`); ``--sources DIR`` builds it from other pristine
images, ``--pool DIR`` (gmad only) uses a folder of images as it is.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from shamisa_bench.analysis.embed import METHODS, run_embed
from shamisa_bench.analysis.gmad import GmadConfig, run_gmad
from shamisa_bench.analysis.pool import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_SOURCES,
    DEFAULT_SOURCES,
    folder_pool,
    synthetic_pool,
)
from shamisa_bench.cli.args import add_device_argument, device_from_args
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.harness.adapters import MetricUnavailable
from shamisa_bench.harness.adapters.pyiqa_home import use_pyiqa_home
from shamisa_bench.harness.cli import add_pyiqa_home_argument
from shamisa_bench.harness.data import default_cache_dir
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.robustness.config import RobustnessParams

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``gmad`` and ``embed``."""
    g = subparsers.add_parser(
        "gmad",
        help="gMAD competition of two metrics on an unlabelled pool: pairs JSON + panels under results/gmad/",
        description="Group maximum differentiation: the defender's quality range is cut into levels; in each, "
        "the attacker picks the pair it rates most differently among images the defender rates alike; then the "
        "roles swap. On the synthetic pool an MS-SSIM judge (a proxy, not a human study) rates each pair.",
    )
    g.add_argument("--defender", required=True, metavar="NAME", help="registered metric defending first")
    g.add_argument("--attacker", required=True, metavar="NAME", help="registered metric attacking first")
    g.add_argument("--levels", type=int, default=6, help="defender levels (default 6)")
    g.add_argument("--tolerance", type=float, default=0.02,
                   help="half-width of a level, as a fraction of the defender's range (default 0.02)")
    g.add_argument("--pool", type=Path, metavar="DIR",
                   help="a folder of images used as the pool, as they are (default: the synthetic pool)")
    g.add_argument("--name", help="output folder under results/gmad/ (default: <defender>-vs-<attacker>)")
    _pool_options(g)
    g.add_argument("--head-dataset", metavar="NAME",
                   help="labelled dataset the ridge heads of feature probes are fit on (default: the robustness "
                   "protocol's)")
    g.add_argument("--allow-partial", action="store_true", help="accept an incomplete head dataset")
    _common(g)
    g.set_defaults(func=_cmd_gmad)

    e = subparsers.add_parser(
        "embed",
        help="2-D map of a metric's features on the synthetic pool, by distortion group and severity",
        description="Project a feature metric's features (a feature probe, or a shamisa metric's encoder) for the "
        "synthetic pool to 2-D (PCA; t-SNE with the optional 'analysis' extra), colour by distortion group and by "
        "severity, and report the group kNN accuracy and SRCC(severity, distance to pristine) beside each map.",
    )
    e.add_argument("--metric", required=True, metavar="NAME", help="registered metric with features")
    e.add_argument("--method", choices=METHODS, default="pca",
                   help="projection: pca (always available) or tsne (pip install -e .[analysis]); default pca")
    _pool_options(e)
    _common(e)
    e.set_defaults(func=_cmd_embed)


def _pool_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sources", type=Path, metavar="DIR",
                   help=f"pristine images of the synthetic pool (default: <data root>/{DEFAULT_SOURCES.as_posix()})")
    p.add_argument("--max-sources", type=int, default=DEFAULT_MAX_SOURCES,
                   help=f"source images, chosen evenly over the folder (default {DEFAULT_MAX_SOURCES})")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                   help=f"side of the square sources in pixels (default {DEFAULT_IMAGE_SIZE})")
    p.add_argument("--severities", type=float, nargs="+", metavar="S",
                   help="severity indices in [0, 4] of the synthetic pool (default: the robustness protocol's grid; "
                   "points of that grid keep its cache keys)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, help="folder holding the datasets and pristine images "
                   "(default: $SHAMISA_BENCH_DATA or ./datasets)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: ./results)")
    p.add_argument("--cache-dir", type=Path, help="score/feature cache (default: the user cache folder)")
    p.add_argument("--no-cache", action="store_true", help="compute everything, cache nothing")
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the heads' splits and of t-SNE (default 0)")
    p.add_argument("--registry", type=Path, help="registry folder (default: the shipped one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_pyiqa_home_argument(p)


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Path | None]:
    """(registry, robustness parameters, cache folder); applies --pyiqa-home."""
    reg = load_registry(args.registry)
    if args.pyiqa_home is not None:  # else $SHAMISA_PYIQA_HOME, applied when a pyiqa metric opens
        try:
            use_pyiqa_home(args.pyiqa_home)
        except FileNotFoundError as err:
            raise CLIError(f"--pyiqa-home: {err}") from err
    protocol = reg.protocol("robustness")
    params = RobustnessParams.from_params(protocol.params, seed=protocol.base_seed)
    if args.severities:  # checked by RobustnessParams: increasing values in [0, 4]
        params = replace(params, severities=tuple(args.severities))
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return reg, params, cache


def _synthetic(args: argparse.Namespace, params: Any) -> Any:
    if args.sources is not None and not args.sources.is_dir():
        raise CLIError(f"{args.sources}: --sources is not a folder")
    return synthetic_pool(args.sources, data_root=args.data_root, max_sources=args.max_sources,
                          image_size=args.image_size, params=params)


def _cmd_gmad(args: argparse.Namespace) -> int:
    if args.pool is not None and args.sources is not None:
        raise CLIError("give either --pool (a folder used as it is) or --sources (pristine images), not both")
    reg, params, cache = _setup(args)
    for m in (args.defender, args.attacker):
        reg.metric(m)  # unknown: ValueError listing the valid names
    cfg = GmadConfig(defender=args.defender, attacker=args.attacker, levels=args.levels, tolerance=args.tolerance,
                     head_dataset=args.head_dataset or params.head_dataset, results_dir=args.results,
                     cache_dir=cache, data_root=args.data_root, device=device_from_args(args), seed=args.seed,
                     allow_partial=args.allow_partial, name=args.name)
    pool = folder_pool(args.pool) if args.pool is not None else _synthetic(args, params)
    console = Console()
    try:
        record = run_gmad(cfg, pool, registry=reg, console=console, progress=not args.no_progress)
    except MetricUnavailable as err:
        raise CLIError(f"a metric cannot run here: {err}") from err
    for block in record["directions"]:
        agr = block.get("judge_agreement")
        rate = "" if not agr or agr["rate"] is None else f"; MS-SSIM judge agrees with the attacker in {agr['rate']:.0%}"
        console.print(f"{block['defender']} defends, {block['attacker']} attacks: {len(block['levels'])} pairs{rate}",
                      highlight=False)
    for path in record["files"]:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    reg, params, cache = _setup(args)
    spec = reg.metric(args.metric)  # unknown: ValueError listing the valid names
    pool = _synthetic(args, params)
    console = Console()
    try:
        record = run_embed(spec, pool, method=args.method, results_dir=args.results, cache_dir=cache,
                           device=device_from_args(args), seed=args.seed, console=console,
                           progress=not args.no_progress)
    except MetricUnavailable as err:
        raise CLIError(f"metric {args.metric} cannot run here: {err}") from err
    except ImportError as err:  # t-SNE without the optional extra: its one-line message
        raise CLIError(str(err)) from err
    knn, sev = record["knn_group_accuracy"], record["severity_srcc"]
    console.print(f"{args.metric} ({args.method}): group kNN accuracy {knn['features']['accuracy']:.2f} "
                  f"(map {knn['map']['accuracy']:.2f}, chance {knn['features']['chance']:.2f}); "
                  f"SRCC(severity, distance to pristine) {_f(sev['features']['mean'])} (map {_f(sev['map']['mean'])})",
                  highlight=False)
    for path in record["files"]:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return 0


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"
