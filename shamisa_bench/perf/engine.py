"""Speed benchmark of the engine: full step generation and per-type cost.

``bench_engine`` times :func:`build_step` on real-sized images (median over steps, after
warm-up steps), records how the step's time splits over the distortion types, and
separately times every type on a batch of 224 x 224 crops at severities drawn from the
reference sampler.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from shamisa_bench.distortions.catalog import (
    CATALOG,
    sample_severities,
    severity_to_value,
)
from shamisa_bench.distortions.engine import apply_distortion, record_type_times
from shamisa_bench.train.steps import LayoutSpec, build_step, crop_views

__all__ = ["bench_engine", "default_bench_images", "synthetic_images"]


def synthetic_images(n: int, height: int = 384, width: int = 512, seed: int = 0) -> list[Tensor]:
    """``n`` procedural photo-like images ``(3, height, width)`` in [0, 1].

    Smooth colour gradients plus random rectangles, disks and fine texture: structure at
    several scales, so blur, compression and noise cost what they cost on photos.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for _ in range(n):
        img = np.empty((3, height, width), dtype=np.float32)
        for c in range(3):
            a, b, p = rng.uniform(-1, 1, 3)
            img[c] = 0.5 + 0.25 * np.sin(a * xx / 40 + b * yy / 55 + p * 6)
        for _ in range(12):
            y0, x0 = rng.integers(0, height), rng.integers(0, width)
            hh, ww = rng.integers(1, max(2, height // 2)), rng.integers(1, max(2, width // 2))
            img[:, y0 : y0 + hh, x0 : x0 + ww] = rng.uniform(0, 1, (3, 1, 1))
        for _ in range(8):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(0.02, 0.15) * max(height, width)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[:, mask] = rng.uniform(0, 1, (3, 1))
        img += rng.normal(0, 0.02, img.shape).astype(np.float32)
        out.append(torch.from_numpy(img.clip(0, 1)))
    return out


def default_bench_images(n: int = 8, seed: int = 0) -> tuple[list[Tensor], str]:
    """Benchmark images without a dataset: scikit-image's bundled photos, else synthetic.

    Returns:
        The images ``(3, H, W)`` in [0, 1] and a word saying where they came from.
    """
    try:
        # lazy: scikit-image is not a declared dependency (it comes with pyiqa); synthetic otherwise
        from skimage import data
    except ImportError:
        return synthetic_images(n, seed=seed), "synthetic"
    photos, missing = [], []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        loader = getattr(data, name, None)
        try:
            arr = np.asarray(loader()) if loader is not None else None
        except (OSError, ValueError, ImportError):  # a photo that needs a download, offline
            arr = None
        if arr is None or arr.ndim != 3 or arr.shape[2] < 3:
            missing.append(name)
            continue
        photos.append(torch.from_numpy(arr[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous())
    if not photos:
        return synthetic_images(n, seed=seed), "synthetic (scikit-image photos unavailable)"
    kind = "scikit-image" + (f" (unavailable: {', '.join(missing)})" if missing else "")
    return [photos[i % len(photos)] for i in range(max(n, len(photos)))], kind


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _per_type_costs(
    images: Sequence[Tensor], device: torch.device, batch: int, crop: int, generator: torch.Generator
) -> dict[str, float]:
    contents = [images[i % len(images)] for i in range((batch + 1) // 2)]
    views = crop_views(contents, crop, generator=generator)[:batch].to(device)
    costs = {}
    for name in CATALOG:
        sev = sample_severities(views.shape[0], "gaussian", generator=generator).tolist()
        values = [severity_to_value(name, s)[0] for s in sev]
        apply_distortion(views[:2], name, values[:2], generator=generator)  # warm-up
        _sync(device)
        start = time.perf_counter()
        apply_distortion(views, name, values, generator=generator)
        _sync(device)
        costs[name] = round((time.perf_counter() - start) * 1e3 / views.shape[0], 3)
    return costs


def bench_engine(
    images: Sequence[Tensor],
    *,
    spec: LayoutSpec | None = None,
    steps: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    seed: int = 0,
    type_batch: int = 30,
) -> dict[str, object]:
    """Time full step generation and every distortion type.

    Args:
        images: pristine images ``(3, H, W)`` in [0, 1]; each step draws its contents from
            them at random.
        spec: the step layout (default: the reference a0 layout, 252 crops of 224).
        steps: timed steps (the median is reported).
        warmup: untimed steps first.
        device: ``cpu`` or ``cuda``.
        seed: seed of the generator that drives everything.
        type_batch: crops per type in the per-type timing.

    Returns:
        A JSON-ready dict: ``seconds_per_step`` (median wall time), ``crops_per_s``,
        ``cpu_seconds_per_step`` (median process CPU time, all threads), per-type
        ``ms_per_crop`` (isolated timing) and ``step_share`` (fraction of step time spent
        in each type), plus the settings, the 1-minute load average at the end (timings
        on a machine busy with other work are inflated) and the environment.

    Raises:
        ValueError: for no images, ``steps < 1`` or an unavailable device.
    """
    spec = spec or LayoutSpec()
    if not images:
        raise ValueError("bench_engine needs at least one image")
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available")
    imgs = [img.to(dev) for img in images]
    gen = torch.Generator().manual_seed(seed)
    n_contents = spec.n_items * spec.n_contents
    times: list[float] = []
    cpu_times: list[float] = []
    with record_type_times() as per_type:
        for i in range(warmup + steps):
            pick = torch.randint(len(imgs), (n_contents,), generator=gen).tolist()
            groups = [
                [imgs[j] for j in pick[k * spec.n_contents : (k + 1) * spec.n_contents]] for k in range(spec.n_items)
            ]
            if i == warmup:
                per_type.clear()
            _sync(dev)
            start, cpu_start = time.perf_counter(), time.process_time()
            build_step(groups, spec, generator=gen)
            _sync(dev)
            if i >= warmup:
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
    total = sum(times)
    share = {k: round(v[0] / total, 4) for k, v in sorted(per_type.items(), key=lambda kv: -kv[1][0])}
    median = statistics.median(times)
    sizes = sorted({tuple(img.shape[-2:]) for img in images})
    return {
        "benchmark": "engine",
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "machine": platform.machine(),
        "layout": {
            "n_items": spec.n_items,
            "n_contents": spec.n_contents,
            "n_compositions": spec.n_compositions,
            "n_levels": spec.n_levels,
            "crop_size": spec.crop_size,
            "max_distortions": spec.max_distortions,
            "severity_sampler": spec.severity_sampler,
        },
        "crops_per_step": spec.n_nodes,
        "n_images": len(images),
        "image_sizes": [list(s) for s in sizes[:10]],
        "steps": steps,
        "warmup": warmup,
        "seconds_per_step": round(median, 4),
        "seconds_per_step_mean": round(statistics.fmean(times), 4),
        "seconds_per_step_all": [round(t, 4) for t in times],
        "cpu_seconds_per_step": round(statistics.median(cpu_times), 4),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "crops_per_s": round(spec.n_nodes / median, 2) if median > 0 else math.inf,
        "step_share": share,
        "ms_per_crop": _per_type_costs(imgs, dev, type_batch, spec.crop_size, gen),
    }
