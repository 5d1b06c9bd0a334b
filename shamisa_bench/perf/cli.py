"""``shamisa-bench perf``: the speed benchmarks, each printing JSON (``bench``, the old
spelling, still works for one release and says so on stderr).

The ``engine`` and ``pretrain`` targets are defined here and in
:mod:`~shamisa_bench.perf.pretrain`; ``encoder``, ``ridge``, ``run`` and ``metric`` time the
code of their subpackage and are defined by its ``cli`` module (``register_bench``).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from shamisa_bench.cli.args import (
    add_device_argument,
    device_from_args,
    renamed_parsers,
)
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.common.imageio import list_images, load_image
from shamisa_bench.distortions.allocator import tune_malloc
from shamisa_bench.harness import cli as harness_cli
from shamisa_bench.iqa import cli as iqa_cli
from shamisa_bench.model import cli as model_cli
from shamisa_bench.perf import gpu_check
from shamisa_bench.perf import pretrain as pretrain_bench
from shamisa_bench.perf.engine import bench_engine, default_bench_images
from shamisa_bench.train.steps import LayoutSpec

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``perf`` and its targets, in this order: engine, encoder, pretrain, ridge, run, metric;
    and ``bench``, its hidden old spelling."""
    perf = subparsers.add_parser("perf", help="speed benchmarks that print JSON")
    _register_targets(perf.add_subparsers(dest="bench_target", metavar="TARGET", required=True))
    bench = subparsers.add_parser("bench")  # no help: hidden from the command list
    bench_sub = bench.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    _register_targets(bench_sub)
    renamed_parsers(bench_sub, "bench", "perf")


def _register_targets(targets: argparse._SubParsersAction) -> None:
    _register_engine(targets)
    model_cli.register_bench(targets)
    pretrain_bench.register_bench(targets)
    harness_cli.register_bench(targets)
    iqa_cli.register_bench(targets)
    gpu_check.register_bench(targets)


def _register_engine(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``perf engine``."""
    b = bench_subparsers.add_parser(
        "engine", help="time full a0 step generation (252 crops of 224) and every distortion type"
    )
    add_device_argument(b)
    b.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported (default 5)")
    b.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    b.add_argument(
        "--images", metavar="DIR", help="pristine images to cut (default: scikit-image photos, else synthetic)"
    )
    b.add_argument("--max-images", type=int, default=64, help="use at most this many images of DIR (default 64)")
    b.add_argument("--crop-size", type=int, default=224, help="crop side; 224 is the a0 layout (default 224)")
    b.add_argument("--type-batch", type=int, default=30, help="crops per type in the per-type timing (default 30)")
    b.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="keep glibc's default allocator thresholds (see shamisa_bench.distortions.allocator)",
    )
    b.add_argument("--threads", type=int, help="torch CPU threads for the run (default: torch's own choice)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", action="store_true", help="print the JSON result (default: a readable summary)")
    b.set_defaults(func=_cmd_bench_engine)


def _cmd_bench_engine(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.warmup < 0 or args.max_images < 1 or args.type_batch < 1 or args.crop_size < 16:
        raise CLIError("--steps, --max-images and --type-batch must be >= 1, --warmup >= 0, --crop-size >= 16")
    if args.images:
        try:
            paths = list_images(args.images)
        except OSError as err:
            raise CLIError(str(err)) from None
        if not paths:
            raise CLIError(f"{args.images}: no JPEG/PNG/BMP/TIFF images found")
        images = [load_image(p) for p in paths[: args.max_images]]
        source = f"{len(images)} of {len(paths)} images in {args.images}"
    else:
        images, kind = default_bench_images()
        source = f"{len(images)} {kind} images"
    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    malloc_tuned = False if args.no_malloc_tuning else tune_malloc()
    spec = LayoutSpec(crop_size=args.crop_size)
    result = bench_engine(
        images,
        spec=spec,
        steps=args.steps,
        warmup=args.warmup,
        device=device_from_args(args),
        seed=args.seed,
        type_batch=args.type_batch,
    )
    result["images"] = source
    result["malloc_tuned"] = malloc_tuned
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = sys.stdout
    print(
        f"engine benchmark on {result['device']} ({result['torch_threads']} threads, "
        f"malloc tuning {'on' if malloc_tuned else 'off'}), {source}",
        file=out,
    )
    print(
        f"  {result['crops_per_step']} crops per step, median {result['seconds_per_step']:.3f} s/step "
        f"over {result['steps']} steps -> {result['crops_per_s']:.1f} crops/s "
        f"(CPU {result['cpu_seconds_per_step']:.3f} s/step, load average {result['load_average_1min']})",
        file=out,
    )
    print(
        "  share of step time by type: " + ", ".join(f"{k} {v:.0%}" for k, v in list(result["step_share"].items())[:6]),
        file=out,
    )
    print(
        f"  ms per {args.crop_size}^2 crop: " + ", ".join(f"{k} {v:.2f}" for k, v in result["ms_per_crop"].items()),
        file=out,
    )
    return 0
