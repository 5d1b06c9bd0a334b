"""CLI: ``shamisa-bench fit-head`` and ``shamisa-bench perf metric``.

* ``fit-head --encoder EXPORT --dataset NAME [--data-root DIR] --out HEAD.pt``: fit the
  ridge head of the pyiqa metric on a registered dataset (alpha by median validation SRCC,
  as the paper's protocol; reference-disjoint splits for datasets split by reference). Instead of
  ``--dataset``, ``--csv LABELS.csv`` reads a CSV with columns ``image`` and ``mos`` (and
  optionally ``ref``), image paths relative to the CSV's folder unless ``--image-root``.
  Everything that can be checked is checked before any feature is computed: the device,
  that ``--out`` can be written, labels inside ``--mos-range``, enough images for the
  validation parts, and every image decodes (all failures listed at once).
* ``perf metric``: images/s of ``pyiqa.create_metric('shamisa')`` against the bare
  two-scale encoder forward on the same inputs, for each feature mode, as JSON. A
  random-init encoder export and a random head are made on the fly (no weights needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shamisa_bench.cli.args import (
    add_device_argument,
    add_feature_mode_argument,
    device_from_args,
)
from shamisa_bench.cli.errors import CLIError
from shamisa_bench.common.imageio import check_image, load_image
from shamisa_bench.harness.data import load_dataset
from shamisa_bench.harness.data.errors import LabelFileError
from shamisa_bench.harness.data.readers._common import (
    check_unique,
    find_column,
    label_rows,
    read_delimited,
)
from shamisa_bench.harness.pairs import check_pair_sizes, fr_csv_references, fr_dataset_references
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.iqa.fr import extract_pair_features, fit_fr_head, save_fr_head
from shamisa_bench.iqa import plugin
from shamisa_bench.iqa.head import (
    MAX_SIDE,
    MIN_IMAGE_SIDE,
    FitConfig,
    QualityHead,
    extract_features,
    fit_head,
    save_head,
)
from shamisa_bench.model import (
    BACKBONES,
    FEATURE_MODES,
    STANDARDIZED_MODES,
    build_encoder,
    encode_two_scale,
    feature_width,
    load_encoder_export,
    save_encoder_export,
)

__all__ = ["MIN_VAL_IMAGES", "LabelRow", "bench_fr_metric", "bench_metric", "read_label_csv", "register", "register_bench"]

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
    src.add_argument("--dataset", help="registered dataset name (see `shamisa-bench data ls`)")
    src.add_argument("--csv", type=Path, help="CSV with columns image,mos (optional ref)")
    p.add_argument("--data-root", type=Path, default=None, help="folder holding the datasets (default: $SHAMISA_BENCH_DATA or ./datasets)")
    p.add_argument("--registry", type=Path, default=None, help="registry folder (default: the shipped one)")
    p.add_argument("--allow-partial", action="store_true", help="fit on the images present of a partial dataset")
    p.add_argument("--image-root", type=Path, default=None, help="CSV: folder image paths are relative to")
    p.add_argument("--name", default=None, help="CSV: dataset name recorded in the head (default: CSV stem)")
    p.add_argument("--mos-range", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="CSV: label scale (default: min and max of the labels); with --dataset the registry's "
                   "range is used and this option is refused")
    p.add_argument("--lower-better", action="store_true", help="CSV: lower labels mean better quality (DMOS)")
    p.add_argument("--out", required=True, type=Path, help="head file to write (e.g. heads/koniq10k.pt)")
    add_feature_mode_argument(p, help="how features are extracted: whole, crops5 or multilevel (default whole; "
                                      "crops5 is the paper's; multilevel adds every stage's channel mean and std "
                                      "and always standardises)")
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--min-size", type=int, default=224, help="zero-pad smaller images to this side (default 224)")
    p.add_argument("--n-splits", type=int, default=10, help="validation splits for choosing alpha (default 10)")
    p.add_argument("--val-fraction", type=float, default=0.125, help="validation share per split (default 1/8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation splits")
    p.add_argument("--standardize", action="store_true", help="scale features to unit variance before ridge")
    p.add_argument("--fr", action="store_true",
                   help="fit a full-reference head (pyiqa's shamisa-fr) on pair features |h_ref - h_dist|: a dataset "
                        "with references, or a CSV with image,ref,mos (ref: the reference file)")
    add_device_argument(p, note="fit-head used cpu by default up to 0.1.0; it now follows the other commands")
    p.set_defaults(func=_fit_head_command)


def register_bench(bench_subparsers: Any) -> None:
    """Add ``perf metric`` to the ``perf`` subparsers."""
    p = bench_subparsers.add_parser("metric", help="pyiqa metric images/s vs the bare two-scale encoder (JSON)")
    p.add_argument("--backbone", choices=BACKBONES, default="efficientnet_lite0")
    add_feature_mode_argument(p, repeat=True, help="feature mode(s) to time (repeatable; default all)")
    p.add_argument("--n", type=int, default=16, help="images per timed pass (default 16)")
    p.add_argument("--size", type=int, default=500, help="square image side (default 500)")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the n images (default 2)")
    add_device_argument(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--fr", action="store_true",
                   help="time the full-reference metric shamisa-fr (distance and head) against two bare encoder passes")
    p.set_defaults(func=_bench_metric_command)


# --------------------------------------------------------------------------------------
# fit-head
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRow:
    """One row of a fit-head label CSV.

    Attributes:
        image: Resolved image path.
        mos: Label.
        ref: Reference group (the image name when the CSV has no ``ref`` column).
        line: Line of the CSV it came from (for error messages).
    """

    image: Path
    mos: float
    ref: str
    line: int


MIN_VAL_IMAGES = 5
"""Fewest images (or reference groups) in each validation part of fit-head's alpha search:
below it the validation SRCC is too coarse to choose alpha (2 images give +-1 or 0)."""


def read_label_csv(path: Path, image_root: Path | None = None) -> list[LabelRow]:
    """Rows of a CSV with columns ``image``, ``mos`` (and optional ``ref``), read as the harness reads CSVs.

    The parsing is the harness's (:mod:`shamisa_bench.harness.data.readers._common`): UTF-8 with a
    Latin-1 fallback, column names matched case- and space-insensitively, image names as
    clean relative paths, and an image named twice is an error naming both rows.

    Args:
        path: The CSV file.
        image_root: Folder relative image paths are resolved against (default: the CSV's).

    Returns:
        One :class:`LabelRow` per row, in file order.

    Raises:
        ValueError: Missing columns, empty file, a non-numeric or non-finite mos, a
            duplicate image, or images that do not exist (all listed); the message names
            the file and row.
    """
    if not path.is_file():
        raise ValueError(f"{path}: no such CSV file")
    root = image_root if image_root is not None else path.parent
    header, body = read_delimited(path, delimiter=",")
    if not header:
        raise LabelFileError(path, None, "empty file (needs a header with columns 'image' and 'mos')")
    c_img = find_column(header, ["image"], path, required=False)
    c_mos = find_column(header, ["mos"], path, required=False)
    if c_img is None or c_mos is None:
        raise LabelFileError(path, 1, f"needs columns 'image' and 'mos', found {header}")
    c_ref = find_column(header, ["ref"], path, required=False)
    parsed = label_rows(path, header, body, c_img, c_mos, c_ref, blank_ref_is_name=True)
    if not parsed:
        raise LabelFileError(path, None, "no rows")
    check_unique(parsed, path)
    rows: list[LabelRow] = []
    missing: list[str] = []
    for row in parsed:
        image = Path(row.name) if Path(row.name).is_absolute() else root / row.name
        if not image.is_file():
            missing.append(f"{path}, row {row.line}: {image}")
        rows.append(LabelRow(image=image, mos=row.mos, ref=row.ref, line=row.line))
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"{len(missing)} image(s) listed in {path} do not exist:\n  {shown}{more}")
    return rows


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written, before any work (probe file, then removed)."""
    if out.is_dir():
        raise CLIError(f"--out {out} is a folder; give the head file to write, e.g. {out / 'head.pt'}")
    folder = out.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(f"--out {out}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fit-head-probe.", dir=folder)
    except OSError as err:
        raise CLIError(f"--out {out}: cannot write in {folder} ({err.strerror or err})") from None
    os.close(fd)
    os.unlink(probe)


def _check_labels_in_range(mos_range: tuple[float, float], mos: Any, where: list[str], source: str) -> None:
    """Refuse labels outside ``mos_range``, naming the first offending rows."""
    lo, hi = mos_range
    bad = np.flatnonzero((mos < lo) | (mos > hi))
    if bad.size:
        shown = "; ".join(f"{where[i]}: {mos[i]:g}" for i in bad[:5])
        more = f"; ... and {bad.size - 5} more" if bad.size > 5 else ""
        raise CLIError(
            f"{bad.size} label(s) of {source} lie outside the mos range [{lo:g}, {hi:g}] "
            f"(labels span [{mos.min():g}, {mos.max():g}]): {shown}{more}. "
            "Give the scale the labels are on (--mos-range), or omit it to use their min and max"
        )


def _check_fit_size(n_images: int, n_groups: int, val_fraction: float) -> None:
    """Refuse a fit whose validation parts would be too small to choose alpha (before any features).

    The validation part of a split holds ``round(val_fraction * n_groups)`` groups (images,
    or reference groups), as :func:`shamisa_bench.iqa.head.validation_splits` draws it; it and
    the training part must each hold at least :data:`MIN_VAL_IMAGES` images on average.
    """
    n_val = min(max(round(val_fraction * n_groups), 1), max(n_groups - 1, 1))
    per_group = n_images / max(n_groups, 1)
    val_images, train_images = n_val * per_group, (n_groups - n_val) * per_group
    if n_groups < 2 or val_images < MIN_VAL_IMAGES or train_images < MIN_VAL_IMAGES:
        grouped = f" in {n_groups} reference groups" if n_groups != n_images else ""
        raise CLIError(
            f"too few images to fit a head: {n_images}{grouped} with --val-fraction {val_fraction:g} leave about "
            f"{val_images:.0f} image(s) in each validation part and {train_images:.0f} for training; choosing alpha "
            f"needs at least {MIN_VAL_IMAGES} in each. Label more images, or raise --val-fraction"
        )


def _check_images(images: list[Path]) -> None:
    """Decode every image before any features are computed; list all that fail."""
    bad: list[str] = []
    for path in images:
        try:
            check_image(path, min_side=MIN_IMAGE_SIDE, max_side=MAX_SIDE)
        except ValueError as err:
            bad.append(str(err))
    if bad:
        shown = "\n  ".join(bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise CLIError(
            f"{len(bad)} of {len(images)} images cannot be used (nothing was computed):\n  {shown}{more}\n"
            "fix or remove them from the labels"
        )


def _fit_head_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    device = device_from_args(args)
    _check_out(args.out)
    if not 0.0 < args.val_fraction < 1.0:
        raise CLIError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if args.dataset is not None:
        if args.mos_range is not None:  # the dataset's range is the registry's (harness.data.ranges)
            raise CLIError("--mos-range goes with --csv; a registered dataset's labels are checked against its "
                           f"registry range (registry/datasets/{args.dataset}.yaml)")
        spec = load_registry(args.registry).dataset(args.dataset)
        table = load_dataset(spec, args.data_root, allow_partial=args.allow_partial)
        frame = table.frame
        images = [Path(p) for p in frame["image"]]
        mos = frame["mos"].to_numpy(dtype=np.float64)
        groups = list(frame["ref"]) if spec.split == "reference" else None
        scale = table.mos_range or (float(mos.min()), float(mos.max()))  # None: a file with no fixed scale
        dataset, mos_range, lower_better = spec.name, tuple(scale), bool(spec.lower_better)
        partial = bool(table.partial)
        where = [f"{table.label_file}: {name}" for name in frame["name"]]
        source = f"dataset {spec.name!r} (registry mos_range)"
        ref_files = fr_dataset_references(table) if args.fr else None
    else:
        rows = read_label_csv(args.csv, args.image_root)
        images = [r.image for r in rows]
        mos = np.array([r.mos for r in rows], dtype=np.float64)
        refs = [r.ref for r in rows]
        groups = refs if len(set(refs)) < len(refs) else None
        dataset = args.name or args.csv.stem
        mos_range = tuple(args.mos_range) if args.mos_range else (float(mos.min()), float(mos.max()))
        lower_better = bool(args.lower_better)
        partial = False
        where = [f"{args.csv}, row {r.line}" for r in rows]
        source = str(args.csv)
        ref_files = fr_csv_references(args.csv, rows) if args.fr else None
    if not (math.isfinite(mos_range[0]) and math.isfinite(mos_range[1]) and mos_range[0] < mos_range[1]):
        raise CLIError(f"mos range must be finite with LO < HI, got {mos_range}")
    _check_labels_in_range((float(mos_range[0]), float(mos_range[1])), mos, where, source)
    n_groups = len(set(groups)) if groups is not None else len(images)
    _check_fit_size(len(images), n_groups, args.val_fraction)
    _check_images(images)
    if ref_files is not None:  # full-reference: the references decode and match their images' sizes
        _check_images(sorted(set(ref_files)))
        check_pair_sizes(images, ref_files)

    encoder = load_encoder_export(args.encoder, map_location=device)
    if ref_files is not None:
        features = extract_pair_features(encoder, images, ref_files, feature_mode=args.feature_mode,
                                         crop_size=args.crop_size, min_size=args.min_size, device=device)
    else:
        features = extract_features(
            encoder,
            (load_image(p, max_side=MAX_SIDE) for p in images),  # = full size then prepare_images' downscale
            feature_mode=args.feature_mode,
            crop_size=args.crop_size,
            min_size=args.min_size,
            device=device,
        )
    config = FitConfig(n_splits=args.n_splits, val_fraction=args.val_fraction, seed=args.seed,
                       standardize=args.standardize)
    head = (fit_fr_head if ref_files is not None else fit_head)(
        features,
        mos,
        mos_range=(float(mos_range[0]), float(mos_range[1])),
        lower_better=lower_better,
        dataset=dataset,
        feature_mode=args.feature_mode,
        crop_size=args.crop_size,
        min_size=args.min_size,
        encoder_sha256=encoder.weights_sha256,
        backbone=encoder.backbone,
        groups=groups,
        config=config,
    )
    warnings: list[str] = []
    grid = config.alpha_grid()
    if head.alpha in (float(grid.min()), float(grid.max())):
        warnings.append(
            f"alpha {head.alpha:g} is at the edge of the grid [{grid.min():g}, {grid.max():g}]: the validation SRCC "
            "did not single out a ridge strength (too few or too noisy labels?)"
        )
    if head.val_srcc is None or head.val_srcc < 0.1:
        warnings.append(f"median validation SRCC is {head.val_srcc}: this head does not rank the images")
    for text in warnings:
        print(f"shamisa-bench: warning: {text}", file=sys.stderr)
    out = (save_fr_head if ref_files is not None else save_head)(head, args.out)
    summary = {
        "head": str(out),
        "dataset": dataset,
        "mode": "FR" if ref_files is not None else "NR",
        "partial": partial,
        "n_train": head.n_train,
        "feature_mode": head.feature_mode,
        "alpha": head.alpha,
        "val_srcc_median": head.val_srcc,
        "n_splits": head.n_splits,
        "reference_disjoint": groups is not None,
        "mos_range": list(head.mos_range),
        "lower_better": head.lower_better,
        "backbone": head.backbone,
        "encoder_sha256": head.encoder_sha256,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(json.dumps(summary, indent=2))
    return 0


# --------------------------------------------------------------------------------------
# perf metric
# --------------------------------------------------------------------------------------


def bench_metric(
    backbone: str = "efficientnet_lite0",
    feature_modes: tuple[str, ...] = FEATURE_MODES,
    n: int = 16,
    size: int = 500,
    batch: int = 1,
    repeats: int = 2,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``pyiqa.create_metric('shamisa')`` against the bare two-scale encoder forward.

    A random-init encoder export and a random head (per feature mode) are written to a temporary
    folder. Both paths see the same (n, 3, size, size) images in batches of ``batch``; the
    metric and the bare forward alternate batch by batch (so drift in a shared machine's
    speed hits both), after one warm-up batch each. The bare forward is
    ``encode_two_scale(encoder, x, feature_mode)`` under ``torch.no_grad()``.

    Returns:
        JSON-ready dict: per feature mode ``metric_images_per_s`` and ``bare_images_per_s``
        (from the median per-image time, robust to stalls on a busy machine), ``ratio``
        (metric / bare speed), ``cost_vs_bare`` (its inverse: the metric's time per image over
        the bare pass's; ``multilevel`` is timed against the bare ``whole`` pass, the same
        two encoder passes), ``mean_ratio`` (the speed ratio from total
        times), and for ``crops5`` its per-image cost relative to ``whole``; plus the 1-minute
        load average, since oversubscribed CPUs make every figure noisy.
    """
    import pyiqa  # lazy: seconds to import, and only this benchmark needs it here

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
        for feature_mode in feature_modes:
            dim = feature_width(bare, feature_mode)
            head = QualityHead(
                weight=torch.randn(dim, generator=gen) / math.sqrt(dim),
                bias=0.5,
                feature_mean=torch.zeros(dim),
                feature_std=torch.ones(dim),
                mos_range=(0.0, 1.0),
                lower_better=False,
                dataset="random",
                feature_mode=feature_mode,
                standardize=feature_mode in STANDARDIZED_MODES,
                encoder_sha256=bare.weights_sha256,
                backbone=backbone,
            )
            head_file = save_head(head, Path(tmp) / f"head-{feature_mode}.pt")
            metric = pyiqa.create_metric(
                "shamisa", device=device, pretrained_model_path=str(export), head_path=str(head_file)
            )

            def run_metric(x: torch.Tensor, metric: torch.nn.Module = metric) -> None:
                metric(x)

            # multilevel is timed against the bare two-scale pass it shares with whole.
            bare_mode = "whole" if feature_mode == "multilevel" else feature_mode

            def run_bare(x: torch.Tensor, feature_mode: str = bare_mode) -> None:
                with torch.no_grad():
                    encode_two_scale(bare, x, feature_mode=feature_mode)

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
                "cost_vs_bare": round(bare_ips / metric_ips, 4),  # time per image, metric over bare (target <= 1.1)
                "mean_ratio": round(sum(per_image["bare"]) / sum(per_image["metric"]), 4),
            }
            results[feature_mode] = entry
    for mode in ("crops5", "multilevel"):
        if "whole" in results and mode in results:
            results[mode]["cost_vs_whole"] = round(
                results["whole"]["metric_images_per_s"] / results[mode]["metric_images_per_s"], 4
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
        "feature_modes": results,
    }


def bench_fr_metric(
    backbone: str = "efficientnet_lite0",
    n: int = 16,
    size: int = 500,
    batch: int = 1,
    repeats: int = 2,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``pyiqa.create_metric('shamisa-fr')(dist, ref)`` against two bare encoder passes.

    A random-init encoder export (and, for the ``head`` mode, a random FR head) is written
    to a temporary folder. The bare work is ``encode_two_scale`` of the distorted batch and
    of the reference batch under ``torch.no_grad()``; the metric adds the input checks, the
    distance or the head. Metric and bare alternate batch by batch after one warm-up each;
    figures come from median per-pair times, as :func:`bench_metric`.

    Returns:
        JSON-ready dict: per mode (``distance``, ``head``) ``metric_pairs_per_s``,
        ``bare_pairs_per_s``, ``ratio`` (bare time / metric time: 1 = no overhead; the target
        is at least 1 / 1.1) and ``time_ratio`` (metric time / bare time, target <= 1.1).
    """
    import pyiqa  # lazy: seconds to import, and only this benchmark needs it here

    for name, value in (("n", n), ("size", size), ("batch", batch), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    plugin.register()
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    gen = torch.Generator().manual_seed(seed)
    refs = torch.rand(n, 3, size, size, generator=gen)
    dists = (refs + 0.1 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1)
    batches = [(dists[i : i + batch].to(device), refs[i : i + batch].to(device)) for i in range(0, n, batch)]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shamisa-bench-fr-metric-") as tmp:
        export = save_encoder_export(build_encoder(backbone, "random", seed=seed), Path(tmp) / "export")
        bare = load_encoder_export(export, map_location=device).eval()
        dim = 2 * bare.feature_dim
        head = QualityHead(weight=-torch.rand(dim, generator=gen) / dim, bias=1.0, feature_mean=torch.zeros(dim),
                           feature_std=torch.ones(dim), mos_range=(0.0, 1.0), lower_better=False, dataset="random",
                           feature_mode="whole", encoder_sha256=bare.weights_sha256, backbone=backbone)
        head_file = save_fr_head(head, Path(tmp) / "fr-head.pt")
        for mode, kwargs in (("distance", {}), ("head", {"head_path": str(head_file)})):
            metric = pyiqa.create_metric("shamisa-fr", device=device, pretrained_model_path=str(export), **kwargs)

            def run_metric(pair: tuple[torch.Tensor, torch.Tensor], metric: torch.nn.Module = metric) -> None:
                metric(*pair)

            def run_bare(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
                with torch.no_grad():
                    encode_two_scale(bare, pair[0])
                    encode_two_scale(bare, pair[1])

            for fn in (run_metric, run_bare):  # warm-up
                fn(batches[0])
            sync()
            per_pair: dict[str, list[float]] = {"metric": [], "bare": []}
            for r in range(repeats):
                for i, pair in enumerate(batches):
                    order = (("metric", run_metric), ("bare", run_bare))
                    for key, fn in order[::-1] if (r + i) % 2 else order:
                        t0 = time.perf_counter()
                        fn(pair)
                        sync()
                        per_pair[key].append((time.perf_counter() - t0) / pair[0].shape[0])
            metric_s, bare_s = statistics.median(per_pair["metric"]), statistics.median(per_pair["bare"])
            results[mode] = {
                "metric_pairs_per_s": round(1.0 / metric_s, 3),
                "bare_pairs_per_s": round(1.0 / bare_s, 3),
                "ratio": round(bare_s / metric_s, 4),
                "time_ratio": round(metric_s / bare_s, 4),
                "target_time_ratio": 1.1,
            }
    return {
        "target": "metric --fr",
        "metric": "shamisa-fr",
        "bare": "two encode_two_scale passes (distorted, reference), whole feature mode",
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
        "modes": results,
    }


def _bench_metric_command(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.fr:
        print(json.dumps(bench_fr_metric(backbone=args.backbone, n=args.n, size=args.size, batch=args.batch,
                                         repeats=args.repeats, device=device_from_args(args)), indent=2))
        return 0
    feature_modes = tuple(dict.fromkeys(args.feature_mode)) if args.feature_mode else FEATURE_MODES
    report = bench_metric(
        backbone=args.backbone,
        feature_modes=feature_modes,
        n=args.n,
        size=args.size,
        batch=args.batch,
        repeats=args.repeats,
        device=device_from_args(args),
    )
    print(json.dumps(report, indent=2))
    return 0
