"""``perf pretrain``: pretraining steps/s and the share of step time spent waiting for data.

A short run of :func:`~shamisa_bench.train.loop.run_pretrain` on the given images (default:
eight generated 480x320 images) in a temporary folder; the timing comes from its log. With
``--data-only`` no model runs: the run's step loader (the same dataset, workers and
prefetching) is read as fast as it produces, which is the rate at which ``--workers``
processes can feed an accelerator.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shamisa_bench.train.cli import add_config_args, config_from_args
from shamisa_bench.train.data import StepDataset, scan_images, step_loader
from shamisa_bench.train.loop import run_pretrain

__all__ = ["register_bench"]


def _cmd_bench(args: argparse.Namespace) -> int:
    """Times a short run: steps/s and the fraction of step time spent waiting for data."""
    config = config_from_args(args)
    config = dataclasses.replace(config, max_steps=args.steps, checkpoint_every=10**9)
    images = Path(args.images) if args.images else None
    with tempfile.TemporaryDirectory() as tmp:
        if images is None:
            images = Path(tmp) / "images"
            _write_bench_images(images, n=8, size=(480, 320))
        if args.data_only:
            result = _data_only(config, images, args.workers, args.steps, args.warmup)
            print(json.dumps(result, indent=None if args.json else 2))
            return 0
        run_dir = Path(tmp) / "run"
        run_pretrain(config, images, run_dir, device=args.device, num_workers=args.workers, progress=False)
        records = [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()[1:]) if "loss" in r]
    timed = records[args.warmup:] or records
    data = sum(r["data_s"] for r in timed)
    compute = sum(r["compute_s"] for r in timed)
    result = {
        "preset": config.preset,
        "backbone": config.backbone,
        "layout": dataclasses.asdict(config.layout),
        "crops_per_step": config.layout.n_nodes,
        "device": args.device,
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "steps_timed": len(timed),
        "steps_per_s": round(len(timed) / (data + compute), 4),
        "seconds_per_step_median": round(float(np.median([r["data_s"] + r["compute_s"] for r in timed])), 4),
        "data_wait_fraction": round(data / (data + compute), 4),
        "batch_build_s_median": round(float(np.median([r["build_s"] for r in timed])), 4),
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def _data_only(config: Any, images: Path, workers: int, steps: int, warmup: int) -> dict[str, Any]:
    """Read ``warmup + steps`` steps from the run's loader with no model; time the last ``steps``.

    Also the CPU seconds per step of this process and its workers, warm-up included (the
    workers' time is counted once they exit, at the end of the loader).
    """
    paths, _ = scan_images(images)
    dataset = StepDataset(paths, config.layout, seed=config.seed, start=0, stop=warmup + steps)
    waits, builds = [], []
    cpu_before = _cpu_seconds()
    start = last = time.perf_counter()
    for i, (_, batch, build_s) in enumerate(step_loader(dataset, workers)):
        now = time.perf_counter()
        if i == warmup:
            start = last
        if i >= warmup:
            waits.append(now - last)
            builds.append(build_s)
        del batch
        last = now
    elapsed = last - start
    # the loader's workers have exited here: their CPU time is in RUSAGE_CHILDREN
    cpu_per_step = (_cpu_seconds() - cpu_before) / (warmup + steps)
    return {
        "benchmark": "pretrain-data",
        "preset": config.preset,
        "layout": dataclasses.asdict(config.layout),
        "crops_per_step": config.layout.n_nodes,
        "workers": workers,
        "steps_timed": steps,
        "steps_per_s": round(steps / elapsed, 4),
        "crops_per_s": round(steps * config.layout.n_nodes / elapsed, 2),
        "seconds_per_step_median": round(float(np.median(waits)), 4),
        "build_s_median": round(float(np.median(builds)), 4),
        # CPU time of this process and its workers over every step read (warm-up included): what
        # one step costs in core-seconds, much less disturbed by other work than wall time
        "cpu_seconds_per_step": round(cpu_per_step, 4),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _write_bench_images(folder: Path, *, n: int, size: tuple[int, int]) -> None:
    """Writes ``n`` smooth random RGB images (a stand-in for pristine photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    w, h = size
    for i in range(n):
        low = torch.rand(3, h // 16, w // 16, generator=gen)
        img = torch.nn.functional.interpolate(low[None], size=(h, w), mode="bicubic", align_corners=False)[0]
        img = (img + 0.05 * torch.rand(3, h, w, generator=gen)).clamp(0, 1)
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")


def register_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser("pretrain", help="pretraining steps/s and data-wait fraction (JSON)")
    p.add_argument("--images", default=None, help="pristine images (default: 8 generated 480x320 images)")
    p.add_argument("--steps", type=int, default=6, help="steps to run (default 6)")
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing (default 1)")
    p.add_argument("--json", action="store_true", help="compact JSON")
    p.add_argument("--data-only", action="store_true",
                   help="no model: how fast --workers processes produce the preset's steps (steps/s, crops/s)")
    add_config_args(p)
    p.set_defaults(func=_cmd_bench)
