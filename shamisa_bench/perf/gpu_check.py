"""``perf gpu-check``: a one-command self-check of the GPU path, one JSON report.

On a CUDA device it runs, in a few minutes:

* ``engine``: every distortion type on the same crops and the same seeds on the GPU and on
  the CPU; the PSNR between the two outputs per type (the draws are made on a CPU
  generator either way, so only arithmetic may differ).
* ``amp``: one step of the run's objective (the ``a0`` preset by default, random init so
  nothing is downloaded) with fp16 autocast and gradient scaling against the same step in
  fp32, from the same weights on the same batch: the loss and the encoder gradient.
* ``ddp``: a two-step ``pretrain`` under ``torchrun`` over NCCL on every GPU present (world
  size 1 with one GPU): every rank ends with the same weights.
* ``resume``: a short ``tiny`` pretraining run on the GPU against the same run killed
  halfway and resumed: the same weights.
* ``metric``: ``pyiqa.create_metric('shamisa')`` scores on the GPU against the CPU.

Each check gives ``passed`` and its figures against :data:`TOLERANCES`; the report is
``passed`` when all are, and the command exits 1 otherwise. Every check function takes its
devices as arguments, so each runs on ``cpu`` against itself as well (the tests do that).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from shamisa_bench.cli.errors import CLIError
from shamisa_bench.common.provenance import git_state, package_versions, utc_now
from shamisa_bench.distortions.catalog import CATALOG, severity_to_value
from shamisa_bench.distortions.engine import apply_distortion
from shamisa_bench.losses import ShamisaLoss
from shamisa_bench.model.network import PretrainNet
from shamisa_bench.perf.engine import synthetic_images
from shamisa_bench.train import PretrainConfig, preset_config, run_pretrain
from shamisa_bench.train.data import StepDataset
from shamisa_bench.train.steps import crop_views

__all__ = [
    "TOLERANCES",
    "amp_agreement",
    "compare_scores",
    "compare_step",
    "ddp_agreement",
    "ddp_verdict",
    "engine_agreement",
    "gpu_check",
    "metric_agreement",
    "psnr",
    "register_bench",
    "resume_agreement",
    "step_loss_and_gradient",
]

#: What each check accepts. Engine: outputs at least this PSNR apart (identical: inf). AMP:
#: fp16 against fp32 on one step, loss within a relative difference, encoder gradient within
#: a cosine and a relative norm difference. Resume: weights within a relative L2 difference
#: (cuDNN's backward is not bit-deterministic). Metric: scores within an absolute difference.
TOLERANCES: dict[str, float] = {
    "engine_min_psnr_db": 40.0,
    "amp_loss_rtol": 1e-2,
    "amp_grad_min_cosine": 0.99,
    "amp_grad_norm_rtol": 5e-2,
    "resume_weights_rtol": 1e-3,
    "metric_atol": 1e-3,
}


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (``inf`` when they are equal).

    Raises:
        ValueError: for different shapes.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a.double().cpu() - b.double().cpu()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _finite(x: float) -> float | str:
    """A JSON-safe number (``inf`` written as the string "inf")."""
    return x if math.isfinite(x) else str(x)


def engine_agreement(
    crops: Tensor,
    device_a: str,
    device_b: str,
    *,
    seed: int = 0,
    severity: float = 2.0,
    types: Sequence[str] | None = None,
    min_psnr: float = TOLERANCES["engine_min_psnr_db"],
) -> dict[str, Any]:
    """Every distortion type on the same crops and seeds on two devices; PSNR per type.

    Args:
        crops: ``(N, 3, S, S)`` in [0, 1] (on any device; copied to each).
        device_a, device_b: the two devices (``cuda`` and ``cpu`` for the check).
        seed: seed of the CPU generator each type's draws come from (the same on both sides).
        severity: the severity index in [0, 4] every crop gets.
        types: the types to compare (default: all of the catalog).
        min_psnr: the agreement asked of each type.
    """
    per_type: dict[str, float | str] = {}
    failed = []
    for name in types if types is not None else CATALOG:
        value = severity_to_value(name, severity)[0]
        outs = []
        for device in (device_a, device_b):
            gen = torch.Generator().manual_seed(seed)
            outs.append(apply_distortion(crops.to(device), name, value, generator=gen).cpu())
        p = psnr(outs[0], outs[1])
        per_type[name] = _finite(round(p, 2) if math.isfinite(p) else p)
        if not p >= min_psnr:
            failed.append(name)
    return {"passed": not failed, "devices": [device_a, device_b], "severity": severity, "crops": int(crops.shape[0]),
            "min_psnr_db": min_psnr, "psnr_db": per_type, "failed": failed}


def step_loss_and_gradient(
    config: PretrainConfig, state: dict[str, Tensor], batch: Any, device: str, *, amp: bool
) -> tuple[float, Tensor]:
    """One training step's loss and encoder gradient, as the loop computes them.

    A fresh :class:`PretrainNet` of ``config`` takes ``state`` (so both sides of a
    comparison start from the same weights and BatchNorm statistics), runs the batch in
    train mode and back-propagates; with ``amp`` under fp16 autocast with a gradient scale
    of 2^16 taken back out, as ``GradScaler`` starts.

    Returns:
        The loss and the encoder gradient as one flat float64 CPU vector.
    """
    torch.manual_seed(config.seed)
    net = PretrainNet(config)
    net.load_state_dict(state)
    net.to(device).train()
    loss_fn = ShamisaLoss(config.loss_config())
    dev = torch.device(device)
    with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
        z, graph_out = net(batch.crops.to(dev), batch.nodes.to(dev))
    total = loss_fn(z, graph_out).total
    scale = 2.0**16 if amp else 1.0
    (total * scale).backward()
    grads = [p.grad.detach().double().cpu().reshape(-1) / scale for p in net.encoder.parameters() if p.grad is not None]
    return float(total.detach()), torch.cat(grads)


def compare_step(
    loss_a: float, grad_a: Tensor, loss_b: float, grad_b: Tensor, *, tolerances: dict[str, float] | None = None
) -> dict[str, Any]:
    """Whether two computations of one step agree: loss, gradient direction and size.

    ``a`` is the reference side (fp32). Non-finite values never agree.
    """
    tol = {**TOLERANCES, **(tolerances or {})}
    norm_a, norm_b = float(grad_a.norm()), float(grad_b.norm())
    finite = all(math.isfinite(v) for v in (loss_a, loss_b, norm_a, norm_b))
    loss_rdiff = abs(loss_b - loss_a) / max(abs(loss_a), 1e-12) if finite else math.inf
    if finite and norm_a > 0 and norm_b > 0:
        cosine = float(torch.dot(grad_a, grad_b)) / (norm_a * norm_b)
    else:
        cosine = 1.0 if finite and norm_a == norm_b == 0 else -math.inf
    norm_rdiff = abs(norm_b - norm_a) / max(norm_a, 1e-30) if finite else math.inf
    passed = (loss_rdiff <= tol["amp_loss_rtol"] and cosine >= tol["amp_grad_min_cosine"]
              and norm_rdiff <= tol["amp_grad_norm_rtol"])
    return {
        "passed": passed,
        "loss": [_finite(loss_a), _finite(loss_b)],
        "loss_rel_diff": _finite(loss_rdiff),
        "grad_cosine": _finite(cosine),
        "grad_norm": [_finite(norm_a), _finite(norm_b)],
        "grad_norm_rel_diff": _finite(norm_rdiff),
        "tolerances": {k: tol[k] for k in ("amp_loss_rtol", "amp_grad_min_cosine", "amp_grad_norm_rtol")},
    }


def amp_agreement(config: PretrainConfig, images: Path, device: str, *, amp: bool = True) -> dict[str, Any]:
    """The run's step with fp16 autocast (``amp``) against fp32, same weights and batch.

    ``amp=False`` compares fp32 with fp32 (on the CPU, where the loop never uses autocast).
    """
    paths = sorted(p for p in Path(images).iterdir() if p.is_file())
    batch = StepDataset(paths, config.layout, seed=config.seed, start=0, stop=1).build(0)
    torch.manual_seed(config.seed)
    state = PretrainNet(config).state_dict()
    loss32, grad32 = step_loss_and_gradient(config, state, batch, device, amp=False)
    loss16, grad16 = step_loss_and_gradient(config, state, batch, device, amp=amp)
    return {**compare_step(loss32, grad32, loss16, grad16), "preset": config.preset, "backbone": config.backbone,
            "init": config.init, "crops": config.layout.n_nodes, "amp": amp}


def ddp_verdict(log_path: Path, world_size: int) -> dict[str, Any]:
    """Read a finished DDP run's log: did it run on ``world_size`` ranks that agree?

    The run's closing record holds every rank's parameter checksum.
    """
    try:
        lines = Path(log_path).read_text().splitlines()
        end = json.loads(lines[-1]) if lines else {}
    except (OSError, json.JSONDecodeError) as err:
        return {"passed": False, "error": f"{log_path}: cannot read the run's log ({err})"}
    summary = end.get("summary")
    if not isinstance(summary, dict):
        return {"passed": False, "error": f"{log_path}: the run did not finish (no closing summary record)"}
    sums = summary.get("rank_checksums") or []
    agree = len(sums) == world_size and len(set(sums)) == 1
    return {"passed": agree and summary.get("world_size") == world_size, "world_size": summary.get("world_size"),
            "expected_world_size": world_size, "ranks_agree": agree, "steps": summary.get("steps")}


def ddp_agreement(images: Path, workdir: Path, device: str, nproc: int, *, timeout: float = 600.0) -> dict[str, Any]:
    """A two-step ``tiny`` pretraining under ``torchrun`` on ``nproc`` ranks (NCCL on CUDA)."""
    out = Path(workdir) / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "shamisa_bench", "pretrain", "--preset", "tiny", "--images", str(images), "--out", str(out),
           "--device", device, "--max-steps", "2", "--workers", "0", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    result = {"command": cmd[2:], "returncode": proc.returncode, "seconds": round(time.perf_counter() - start, 2)}
    if proc.returncode != 0:
        return {**result, "passed": False, "error": proc.stderr[-2000:]}
    return {**result, **ddp_verdict(out / "log.jsonl", nproc)}


def resume_agreement(images: Path, workdir: Path, device: str, *, steps: int = 4) -> dict[str, Any]:
    """A ``tiny`` run of ``steps`` steps against the same run stopped halfway and resumed."""
    whole, parts = Path(workdir) / "whole", Path(workdir) / "resumed"
    config = preset_config("tiny", max_steps=steps, checkpoint_every=max(1, steps // 2))
    run = {"device": device, "num_workers": 0, "progress": False}
    run_pretrain(config, images, whole, **run)
    run_pretrain(dataclasses.replace(config, max_steps=steps // 2), images, parts, **run)
    run_pretrain(config, images, parts, resume=True, **run)
    a = torch.load(whole / "export" / "encoder.pt", map_location="cpu", weights_only=True)
    b = torch.load(parts / "export" / "encoder.pt", map_location="cpu", weights_only=True)
    keys = sorted(k for k in a if a[k].is_floating_point())
    wa = torch.cat([a[k].double().reshape(-1) for k in keys])
    wb = torch.cat([b[k].double().reshape(-1) for k in keys])
    rdiff = float((wa - wb).norm() / wa.norm().clamp_min(1e-30))
    same_keys = a.keys() == b.keys()
    return {"passed": same_keys and rdiff <= TOLERANCES["resume_weights_rtol"], "steps": steps,
            "resumed_at": steps // 2, "weights_rel_diff": rdiff, "bitwise_equal": same_keys and rdiff == 0.0,
            "tolerance": TOLERANCES["resume_weights_rtol"]}


def compare_scores(a: Sequence[float], b: Sequence[float], *, atol: float = TOLERANCES["metric_atol"]) -> dict[str, Any]:
    """Two score lists of the same images: the largest absolute difference against ``atol``."""
    if len(a) != len(b) or not a:
        return {"passed": False, "error": f"score lists of lengths {len(a)} and {len(b)}"}
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True)]
    worst = max(diffs) if all(math.isfinite(d) for d in diffs) else math.inf
    return {"passed": worst <= atol, "max_abs_diff": _finite(worst), "atol": atol, "n_images": len(a)}


def metric_agreement(images: Tensor, device_a: str, device_b: str, **metric_options: Any) -> dict[str, Any]:
    """``pyiqa.create_metric('shamisa')`` on two devices, the same images: the scores agree.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        **metric_options: passed to ``create_metric`` (e.g. ``pretrained_model_path``).
    """
    import pyiqa  # lazy: pyiqa is heavy and only this check needs it

    scores = []
    for device in (device_a, device_b):
        metric = pyiqa.create_metric("shamisa", device=device, **metric_options)
        with torch.no_grad():
            scores.append([float(s) for s in metric(images.to(device)).reshape(-1).cpu()])
    return {**compare_scores(scores[0], scores[1]), "devices": [device_a, device_b],
            "scores": [[round(s, 6) for s in side] for side in scores]}


def _write_images(folder: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    """``n`` synthetic photo-like PNGs of ``size`` (width, height) for the runs."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(synthetic_images(n, height=size[1], width=size[0], seed=seed)):
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    return folder


def _timed(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; an exception is a failed check with its message, not a crash."""
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 - any failure of a check is reported in the JSON
        result = {"passed": False, "error": f"{type(err).__name__}: {err}"}
    return {"name": name, **result, "seconds": round(time.perf_counter() - start, 2)}


def gpu_check(device: str = "cuda", *, preset: str = "a0", init: str = "random", skip: Sequence[str] = (),
              workdir: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Run every check on ``device`` (against the CPU) and return the report.

    Args:
        device: the CUDA device to check (``cuda`` or ``cuda:N``).
        preset: the pretraining preset of the AMP check (``a0``: ResNet-50, 252 crops).
        init: its encoder initialisation (``random`` needs no download).
        skip: names of checks to leave out.
        workdir: where the runs write (default: a temporary folder, removed after).
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        images = _write_images(work / "images", n=8, size=(512, 384), seed=seed)
        gen = torch.Generator().manual_seed(seed)
        crops = crop_views(synthetic_images(8, seed=seed), 224, generator=gen)[:16]
        checks: dict[str, Callable[[], dict[str, Any]]] = {
            "engine": lambda: engine_agreement(crops, device, "cpu", seed=seed),
            "amp": lambda: amp_agreement(preset_config(preset, init=init), images, device),
            "ddp": lambda: ddp_agreement(images, work, "cuda", max(1, min(2, torch.cuda.device_count()))),
            "resume": lambda: resume_agreement(images, work / "resume", device),
            "metric": lambda: metric_agreement(crops[:8], device, "cpu"),
        }
        unknown = set(skip) - set(checks)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}; choose from {sorted(checks)}")
        results = [_timed(name, fn) for name, fn in checks.items() if name not in skip]
    sha, dirty = git_state()
    dev = torch.device(device)
    return {
        "benchmark": "gpu-check",
        "passed": all(r["passed"] for r in results),
        "failed": [r["name"] for r in results if not r["passed"]],
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
        "device_count": torch.cuda.device_count() if dev.type == "cuda" else 0,
        "cuda": torch.version.cuda,
        "skipped": sorted(skip),
        "tolerances": TOLERANCES,
        "checks": results,
        "provenance": {**package_versions(), "git_sha": sha, "git_dirty": dirty, "at": utc_now(),
                       "host_cpus": os.cpu_count(), "seed": seed},
    }


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        raise CLIError(
            "perf gpu-check checks a CUDA GPU and there is none here (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none: a CPU-only build'}); "
            "run it on a machine with an NVIDIA GPU and a CUDA build of torch"
        )
    if not args.device.startswith("cuda"):
        raise CLIError(f"--device must be cuda or cuda:N, got {args.device!r}")
    try:
        report = gpu_check(args.device, preset=args.preset, init=args.init, skip=args.skip or (), seed=args.seed)
    except ValueError as err:
        raise CLIError(str(err)) from None
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    if not report["passed"]:
        print(f"gpu-check: disagreement in {', '.join(report['failed'])}", file=sys.stderr)
    return 0 if report["passed"] else 1


def register_bench(bench_sub: Any) -> None:
    p = bench_sub.add_parser(
        "gpu-check", help="self-check of the GPU path against the CPU and fp32 (one JSON report; exit 1 on a disagreement)"
    )
    p.add_argument("--device", default="cuda", help="the CUDA device to check (default cuda)")
    p.add_argument("--preset", default="a0", help="pretraining preset of the AMP check (default a0)")
    p.add_argument("--init", default="random", choices=("random", "imagenet"),
                   help="encoder init of the AMP check (default random: nothing to download)")
    p.add_argument("--skip", nargs="+", choices=("engine", "amp", "ddp", "resume", "metric"), help="checks to leave out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the report to this file (e.g. results/perf/gpu-check.json)")
    p.set_defaults(func=_cmd_gpu_check)
