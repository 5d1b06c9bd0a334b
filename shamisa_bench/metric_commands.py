"""CLI: ``shamisa-bench fit-head`` and ``shamisa-bench bench metric``.

* ``fit-head --encoder EXPORT --dataset NAME [--data-root DIR] --out HEAD.pt``: fit the
  ridge head of the pyiqa metric on a registered dataset (alpha by median validation SRCC,
  spec section 7; reference-disjoint splits for datasets split by reference). Instead of
  ``--dataset``, ``--csv LABELS.csv`` reads a CSV with columns ``image`` and ``mos`` (and
  optionally ``ref``), image paths relative to the CSV's folder unless ``--image-root``.
* ``bench metric``: images/s of ``pyiqa.create_metric('shamisa')`` against the bare
  two-scale encoder forward on the same inputs, for ``whole`` and ``crops5``, as JSON. A
  random-init encoder export and a random head are made on the fly (no weights needed).

Heavy imports happen inside the handlers so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["bench_metric", "read_label_csv", "register", "register_bench"]

_BACKBONE_CHOICES = ("resnet50", "resnet18", "efficientnet_lite0")


def register(subparsers: Any) -> None:
    """Add ``fit-head`` to the top-level subparsers."""
    p = subparsers.add_parser(
        "fit-head",
        help="fit the pyiqa metric's ridge head on a dataset (or a CSV of image,mos)",
        description="Fit a SHAMISA quality head: frozen encoder features -> ridge regression, "
        "alpha chosen by median validation SRCC over random splits, refit on every image.",
    )
    p.add_argument("--encoder", required=True, type=Path, help="encoder export folder (e.g. RUN/export)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="registered dataset name (see `shamisa-bench datasets`)")
    src.add_argument("--csv", type=Path, help="CSV with columns image,mos (optional ref)")
    p.add_argument("--data-root", type=Path, default=None, help="folder holding the datasets (default ./datasets)")
    p.add_argument("--registry", type=Path, default=None, help="registry folder (default: the shipped one)")
    p.add_argument("--allow-partial", action="store_true", help="fit on the images present of a partial dataset")
    p.add_argument("--image-root", type=Path, default=None, help="CSV: folder image paths are relative to")
    p.add_argument("--name", default=None, help="CSV: dataset name recorded in the head (default: CSV stem)")
    p.add_argument("--mos-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="CSV: label scale (default: min and max of the labels)")
    p.add_argument("--lower-better", action="store_true", help="CSV: lower labels mean better quality (DMOS)")
    p.add_argument("--out", required=True, type=Path, help="head file to write (e.g. heads/koniq10k.pt)")
    p.add_argument("--protocol", choices=("whole", "crops5"), default="whole",
                   help="feature protocol (default whole; crops5 is the paper's)")
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--min-size", type=int, default=224, help="zero-pad smaller images to this side (default 224)")
    p.add_argument("--n-splits", type=int, default=10, help="validation splits for choosing alpha (default 10)")
    p.add_argument("--val-fraction", type=float, default=0.125, help="validation share per split (default 1/8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation splits")
    p.add_argument("--standardize", action="store_true", help="scale features to unit variance before ridge")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.set_defaults(func=_fit_head_command)


def register_bench(bench_subparsers: Any) -> None:
    """Add ``bench metric`` to the ``bench`` subparsers."""
    p = bench_subparsers.add_parser("metric", help="pyiqa metric images/s vs the bare two-scale encoder (JSON)")
    p.add_argument("--backbone", choices=_BACKBONE_CHOICES, default="efficientnet_lite0")
    p.add_argument("--protocol", choices=("whole", "crops5"), action="append", default=None,
                   help="protocol(s) to time (repeatable; default both)")
    p.add_argument("--n", type=int, default=16, help="images per timed pass (default 16)")
    p.add_argument("--size", type=int, default=500, help="square image side (default 500)")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the n images (default 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=_bench_metric_command)


# --------------------------------------------------------------------------------------
# fit-head
# --------------------------------------------------------------------------------------


def read_label_csv(path: Path, image_root: Path | None = None) -> list[tuple[Path, float, str]]:
    """Rows ``(image path, mos, ref)`` of a CSV with columns ``image``, ``mos`` (and optional ``ref``).

    Args:
        path: The CSV file.
        image_root: Folder relative image paths are resolved against (default: the CSV's).

    Returns:
        One tuple per row, in file order; ``ref`` defaults to the image path.

    Raises:
        ValueError: Missing columns, empty file, a non-numeric or non-finite mos, or an
            image that does not exist; the message names the file and line.
    """
    import csv

    if not path.is_file():
        raise ValueError(f"{path}: no such CSV file")
    root = image_root if image_root is not None else path.parent
    rows: list[tuple[Path, float, str]] = []
    missing: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "image" not in fields or "mos" not in fields:
            raise ValueError(f"{path}: needs columns 'image' and 'mos', found {reader.fieldnames}")
        reader.fieldnames = fields
        for line, row in enumerate(reader, start=2):
            name = (row.get("image") or "").strip()
            if not name:
                raise ValueError(f"{path}:{line}: empty image field")
            try:
                mos = float((row.get("mos") or "").strip())
            except ValueError:
                raise ValueError(f"{path}:{line}: mos {row.get('mos')!r} is not a number") from None
            if not math.isfinite(mos):
                raise ValueError(f"{path}:{line}: mos {mos} is not finite")
            image = Path(name) if Path(name).is_absolute() else root / name
            if not image.is_file():
                missing.append(f"{path}:{line}: {image}")
            ref = (row.get("ref") or "").strip() or name
            rows.append((image, mos, ref))
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"{len(missing)} image(s) listed in {path} do not exist:\n  {shown}{more}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def _fit_head_command(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from shamisa_bench.cli import CLIError
    from shamisa_bench.heads import FitConfig, extract_features, fit_head, save_head
    from shamisa_bench.imageio import load_image
    from shamisa_bench.model.export import load_encoder_export

    started = time.perf_counter()
    if args.dataset is not None:
        from shamisa_bench.data import load_dataset
        from shamisa_bench.registry import load_registry

        spec = load_registry(args.registry).dataset(args.dataset)
        table = load_dataset(spec, args.data_root, allow_partial=args.allow_partial)
        frame = table.frame
        images = [Path(p) for p in frame["image"]]
        mos = frame["mos"].to_numpy(dtype=np.float64)
        groups = list(frame["ref"]) if spec.split == "reference" else None
        dataset, mos_range, lower_better = spec.name, tuple(spec.mos_range), bool(spec.lower_better)
        partial = bool(table.partial)
    else:
        rows = read_label_csv(args.csv, args.image_root)
        images = [r[0] for r in rows]
        mos = np.array([r[1] for r in rows], dtype=np.float64)
        refs = [r[2] for r in rows]
        groups = refs if len(set(refs)) < len(refs) else None
        dataset = args.name or args.csv.stem
        mos_range = tuple(args.mos_range) if args.mos_range else (float(mos.min()), float(mos.max()))
        lower_better = bool(args.lower_better)
        partial = False
    if not mos_range[0] < mos_range[1]:
        raise CLIError(f"mos range must have LO < HI, got {mos_range}")

    encoder = load_encoder_export(args.encoder, map_location=args.device)
    features = extract_features(
        encoder,
        (load_image(p) for p in images),
        protocol=args.protocol,
        crop_size=args.crop_size,
        min_size=args.min_size,
        device=args.device,
    )
    config = FitConfig(n_splits=args.n_splits, val_fraction=args.val_fraction, seed=args.seed,
                       standardize=args.standardize)
    head = fit_head(
        features,
        mos,
        mos_range=(float(mos_range[0]), float(mos_range[1])),
        lower_better=lower_better,
        dataset=dataset,
        protocol=args.protocol,
        crop_size=args.crop_size,
        min_size=args.min_size,
        encoder_sha256=encoder.weights_sha256,
        backbone=encoder.backbone,
        groups=groups,
        config=config,
    )
    out = save_head(head, args.out)
    summary = {
        "head": str(out),
        "dataset": dataset,
        "partial": partial,
        "n_train": head.n_train,
        "protocol": head.protocol,
        "alpha": head.alpha,
        "val_srcc_median": head.val_srcc,
        "n_splits": head.n_splits,
        "reference_disjoint": groups is not None,
        "mos_range": list(head.mos_range),
        "lower_better": head.lower_better,
        "backbone": head.backbone,
        "encoder_sha256": head.encoder_sha256,
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(summary, indent=2))
    return 0


# --------------------------------------------------------------------------------------
# bench metric
# --------------------------------------------------------------------------------------


def bench_metric(
    backbone: str = "efficientnet_lite0",
    protocols: tuple[str, ...] = ("whole", "crops5"),
    n: int = 16,
    size: int = 500,
    batch: int = 1,
    repeats: int = 2,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``pyiqa.create_metric('shamisa')`` against the bare two-scale encoder forward.

    A random-init encoder export and a random head (per protocol) are written to a temporary
    folder. Both paths see the same (n, 3, size, size) images in batches of ``batch``; the
    metric and the bare forward alternate batch by batch (so drift in a shared machine's
    speed hits both), after one warm-up batch each. The bare forward is
    ``encode_two_scale(encoder, x, protocol)`` under ``torch.no_grad()``.

    Returns:
        JSON-ready dict: per protocol ``metric_images_per_s`` and ``bare_images_per_s``
        (from the median per-image time, robust to stalls on a busy machine), ``ratio``
        (metric / bare; target >= 0.9 for ``whole``), ``mean_ratio`` (the same from total
        times), and for ``crops5`` its per-image cost relative to ``whole``; plus the 1-minute
        load average, since oversubscribed CPUs make every figure noisy.
    """
    import os
    import statistics
    import tempfile
    import time

    import pyiqa
    import torch

    import shamisa_bench.pyiqa_plugin as plugin
    from shamisa_bench.heads import QualityHead, save_head
    from shamisa_bench.model import build_encoder, encode_two_scale, load_encoder_export, save_encoder_export

    for name, value in (("n", n), ("size", size), ("batch", batch), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    plugin.register()
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=gen)
    batches = [images[i : i + batch].to(device) for i in range(0, n, batch)]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shamisa-bench-metric-") as tmp:
        export = save_encoder_export(build_encoder(backbone, "random", seed=seed), Path(tmp) / "export")
        bare = load_encoder_export(export, map_location=device).eval()
        dim = 2 * bare.feature_dim
        for protocol in protocols:
            head = QualityHead(
                weight=torch.randn(dim, generator=gen) / math.sqrt(dim),
                bias=0.5,
                feature_mean=torch.zeros(dim),
                feature_std=torch.ones(dim),
                mos_range=(0.0, 1.0),
                lower_better=False,
                dataset="random",
                protocol=protocol,
                encoder_sha256=bare.weights_sha256,
                backbone=backbone,
            )
            head_file = save_head(head, Path(tmp) / f"head-{protocol}.pt")
            metric = pyiqa.create_metric(
                "shamisa", device=device, pretrained_model_path=str(export), head_path=str(head_file)
            )

            def run_metric(x: torch.Tensor, metric: torch.nn.Module = metric) -> None:
                metric(x)

            def run_bare(x: torch.Tensor, protocol: str = protocol) -> None:
                with torch.no_grad():
                    encode_two_scale(bare, x, protocol=protocol)

            for fn in (run_metric, run_bare):  # warm-up
                fn(batches[0])
            sync()
            per_image: dict[str, list[float]] = {"metric": [], "bare": []}
            for r in range(repeats):
                for i, x in enumerate(batches):
                    order = (("metric", run_metric), ("bare", run_bare))
                    if (r + i) % 2:
                        order = order[::-1]
                    for key, fn in order:
                        t0 = time.perf_counter()
                        fn(x)
                        sync()
                        per_image[key].append((time.perf_counter() - t0) / x.shape[0])
            # Medians of per-image seconds: robust to the stalls of a shared, busy machine.
            metric_ips = 1.0 / statistics.median(per_image["metric"])
            bare_ips = 1.0 / statistics.median(per_image["bare"])
            entry: dict[str, Any] = {
                "metric_images_per_s": round(metric_ips, 3),
                "bare_images_per_s": round(bare_ips, 3),
                "ratio": round(metric_ips / bare_ips, 4),
                "mean_ratio": round(sum(per_image["bare"]) / sum(per_image["metric"]), 4),
            }
            if protocol == "whole":
                entry["target_ratio"] = 0.9
                entry["met_target"] = bool(metric_ips / bare_ips >= 0.9)
            results[protocol] = entry
    if "whole" in results and "crops5" in results:
        results["crops5"]["cost_vs_whole"] = round(
            results["whole"]["metric_images_per_s"] / results["crops5"]["metric_images_per_s"], 4
        )
    return {
        "target": "metric",
        "backbone": backbone,
        "size": size,
        "n": n,
        "batch": batch,
        "repeats": repeats,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "pyiqa_version": pyiqa.__version__,
        "protocols": results,
    }


def _bench_metric_command(args: argparse.Namespace) -> int:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    protocols = tuple(dict.fromkeys(args.protocol)) if args.protocol else ("whole", "crops5")
    report = bench_metric(
        backbone=args.backbone,
        protocols=protocols,
        n=args.n,
        size=args.size,
        batch=args.batch,
        repeats=args.repeats,
        device=args.device,
    )
    print(json.dumps(report, indent=2))
    return 0
