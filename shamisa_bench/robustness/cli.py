"""CLI of the robustness reports: ``shamisa-bench robustness`` and the run/report hooks.

``shamisa-bench robustness --metrics piqe entropy --images DIR`` measures the metrics on
the images of DIR; without ``--images`` the suite's sources are used (``demo``: the photos
bundled with scikit-image). ``shamisa-bench run --suite robustness`` and
``shamisa-bench report --suite <name>`` reach this module through :func:`dispatch_run`
and :func:`dispatch_report`, which :func:`register` adds to those commands' suite handlers
(:mod:`shamisa_bench.harness.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from shamisa_bench.cli.args import add_device_argument
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.harness.cli import add_pyiqa_home_argument, run_config
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.robustness.report import write_report
from shamisa_bench.robustness.runner import RobustnessConfig, run_robustness

__all__ = ["dispatch_report", "dispatch_run", "register"]


def register(subparsers: Any) -> None:
    """Add ``robustness``."""
    p = subparsers.add_parser(
        "robustness",
        help="how each metric reacts to each distortion: JSON + report under results/robustness/",
        description="Apply every distortion type over a severity grid, random compositions and "
        "quality-preserving transforms to a set of source images, score them with each metric "
        "(cached), and write results/robustness/<name>/<metric>.json plus <name>.md and PNGs.",
    )
    p.add_argument("--suite", default="robustness",
                   help="suite giving the default metrics, sources and protocol (default: robustness)")
    p.add_argument("--metrics", nargs="+", metavar="NAME", help="metrics (default: the suite's)")
    p.add_argument("--images", nargs="+", type=Path, metavar="DIR",
                   help="folders of source images (default: the suite's datasets; demo = bundled photos)")
    p.add_argument("--datasets", nargs="+", metavar="NAME",
                   help="registered datasets whose images are the sources (instead of --images)")
    p.add_argument("--name", help="results name (default: the suite name)")
    p.add_argument("--max-images", type=int, help="source images per folder or dataset")
    p.add_argument("--image-size", type=int, help="side of the square source images (pixels)")
    p.add_argument("--compositions", type=int, help="number of random compositions")
    p.add_argument("--head-dataset", metavar="NAME",
                   help="labelled dataset the feature probes' ridge heads are fit on (default: the "
                   "protocol's, demo)")
    _common(p)
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild the report of --name from its JSON files")
    p.set_defaults(func=_cmd_robustness)
    # `run --suite robustness` and `report --suite <robustness results>` are handled here too
    for command, handler in (("run", dispatch_run), ("report", dispatch_report)):
        parser = subparsers.choices.get(command)
        if parser is not None:
            parser.set_defaults(suite_handlers=(*(parser.get_default("suite_handlers") or ()), handler))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, help="folder holding the datasets (default: $SHAMISA_BENCH_DATA or ./datasets)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: ./results)")
    p.add_argument("--cache-dir", type=Path, help="score/feature cache (default: the user cache folder)")
    p.add_argument("--no-cache", action="store_true", help="compute everything, cache nothing")
    add_device_argument(p)
    p.add_argument("--seed", type=int, help="seed of the distorted set (default: the protocol's)")
    p.add_argument("--overwrite", action="store_true", help="recompute metrics that have results")
    p.add_argument("--allow-partial", action="store_true", help="use incomplete datasets (sources, heads)")
    p.add_argument("--registry", type=Path, help="registry folder (default: the shipped one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    add_pyiqa_home_argument(p)


def _config(args: argparse.Namespace, **extra: Any) -> Any:
    return RobustnessConfig(run=run_config(args), **extra)


def _execute(cfg: Any) -> int:
    console = Console()
    summary = run_robustness(cfg, console=console)
    counts: dict[str, int] = {}
    for st in summary.statuses.values():
        counts[st] = counts.get(st, 0) + 1
    console.print(f"robustness {summary.name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                  + f"; {summary.duration_s:.1f} s (generation {summary.generation_s:.1f} s)", highlight=False)
    for path in summary.report:
        console.print(f"report: {path}", highlight=False)
    return 1 if "failed" in counts else 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    if args.images and args.datasets:
        raise CLIError("give either --images or --datasets, not both")
    if args.report_only:
        return _report(args.results, args.name or args.suite)
    for folder in args.images or ():
        if not folder.is_dir():
            raise CLIError(f"{folder}: not an image folder (no such directory)")
    return _execute(_config(args, name=args.name, images=tuple(args.images or ()),
                            head_dataset=args.head_dataset, max_images=args.max_images,
                            image_size=args.image_size, n_compositions=args.compositions))


def _report(results: Path, name: str) -> int:
    for path in write_report(results, name):
        print(f"report: {path}")
    return 0


def dispatch_run(args: argparse.Namespace) -> int | None:
    """``shamisa-bench run``: run a robustness suite here; None for any other suite."""
    reg = load_registry(args.registry)
    try:
        kind = reg.protocol(reg.suite(args.suite).protocol).kind
    except ValueError:
        return None  # unknown suite: the harness reports it with the valid names
    if kind != "robustness":
        return None
    print(f"run: suite {args.suite} is a robustness suite; running it as 'shamisa-bench robustness'", file=sys.stderr)
    return _execute(_config(args))


def dispatch_report(args: argparse.Namespace) -> int | None:
    """``shamisa-bench report``: rebuild a robustness report when ``--suite`` names one."""
    if not (Path(args.results) / "robustness" / args.suite / "run.json").is_file():
        return None
    return _report(args.results, args.suite)
