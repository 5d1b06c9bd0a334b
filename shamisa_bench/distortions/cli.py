"""Subcommands of the distortion engine: ``distortions``, ``distort`` and ``bench engine``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "register_bench"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``distortions`` and ``distort`` to the ``shamisa-bench`` command line."""
    p = subparsers.add_parser("distortions", help="list the distortion catalog (26 types, 7 groups)")
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
    p.set_defaults(func=_cmd_distortions)

    d = subparsers.add_parser(
        "distort",
        help="write a contact sheet: every type at its 5 anchor levels, plus a composition group",
    )
    d.add_argument("image", help="input image (JPEG, PNG, BMP, TIFF)")
    d.add_argument("--out", required=True, help="output PNG path")
    d.add_argument("--types", nargs="+", metavar="TYPE", help="rows to draw (default: all types)")
    d.add_argument("--seed", type=int, default=0, help="seed of the random types and the composition (default 0)")
    d.add_argument("--size", type=int, default=224, help="side of the centre crop shown, in pixels (default 224)")
    d.add_argument("--no-composition", action="store_true", help="leave out the composition-group row")
    d.set_defaults(func=_cmd_distort)


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench engine``."""
    b = bench_subparsers.add_parser(
        "engine", help="time full a0 step generation (252 crops of 224) and every distortion type"
    )
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
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


def _cmd_distortions(args: argparse.Namespace) -> int:
    from shamisa_bench.distortions.catalog import CATALOG, GROUPS

    rows = [
        {
            "type": e.name,
            "group": e.group,
            "anchors": list(e.anchors),
            "integer": e.integer,
            "description": e.description,
        }
        for g in GROUPS
        for e in CATALOG.values()
        if e.group == g
    ]
    if args.json:
        print(json.dumps(rows, indent=2, allow_nan=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SHAMISA distortion catalog: {len(rows)} types in {len(GROUPS)} groups")
    table.add_column("type", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("anchors (levels 1-5)", overflow="fold")
    table.add_column("int", no_wrap=True)
    table.add_column("description", overflow="fold")
    for r in rows:
        anchors = ", ".join(f"{a:g}" for a in r["anchors"])
        table.add_row(r["type"], r["group"], anchors, "yes" if r["integer"] else "", r["description"])
    Console().print(table)
    return 0


def _cmd_distort(args: argparse.Namespace) -> int:
    from shamisa_bench.cli.errors import CLIError
    from shamisa_bench.distortions.sheet import contact_sheet
    from shamisa_bench.common.imageio import load_image

    if args.size < 16:
        raise CLIError(f"--size must be at least 16 pixels, got {args.size}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must be a .png file, got {out}")
    image = load_image(args.image)
    sheet = contact_sheet(image, args.types, seed=args.seed, size=args.size, composition=not args.no_composition)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    n_rows = len(args.types or []) or 26
    print(
        f"wrote {out} ({sheet.width}x{sheet.height}, {n_rows} types x 5 levels"
        f"{'' if args.no_composition else ' + a composition group'})"
    )
    return 0


def _cmd_bench_engine(args: argparse.Namespace) -> int:
    from shamisa_bench.cli.errors import CLIError
    from shamisa_bench.distortions.bench import bench_engine, default_bench_images
    from shamisa_bench.common.imageio import list_images, load_image
    from shamisa_bench.layout import LayoutSpec

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
        import torch

        torch.set_num_threads(args.threads)
    from shamisa_bench.distortions.allocator import tune_malloc

    malloc_tuned = False if args.no_malloc_tuning else tune_malloc()
    spec = LayoutSpec(crop_size=args.crop_size)
    result = bench_engine(
        images,
        spec=spec,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
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
