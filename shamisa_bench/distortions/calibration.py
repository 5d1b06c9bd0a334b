"""Severity calibration of the engine: PSNR of every type at its five anchors.

The calibration set is the first ``n`` images of a folder (sorted by name), each cut to
its centre ``size x size`` crop, float RGB in [0, 1]. Every type is applied to the whole
batch at each anchor value, and the PSNR of each distorted crop against its pristine crop
is averaged over the crops. This is the table the engine is compared on against the
official SHAMISA engine (first 8 Kodak images, 224 x 224; see "Engine calibration against
the reference" in docs/fidelity-and-calibration.md).

Run as ``python -m shamisa_bench.distortions.calibration IMAGE_DIR [--reference CSV]``;
with a reference CSV (columns ``type, level, psnr_reference_db``) it adds the reference
figures and the difference.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from shamisa_bench.common.imageio import load_image
from shamisa_bench.distortions.catalog import CATALOG, check_type
from shamisa_bench.distortions.engine import OPS, apply_distortion, check_images
from shamisa_bench.distortions.sheet import center_crop

__all__ = ["IDENTICAL_DB", "anchor_psnr_table", "calibration_crops", "psnr_db", "read_reference_csv"]

IDENTICAL_DB = 99.0
"""PSNR reported for a crop identical to its pristine crop (zero error)."""

_IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def calibration_crops(folder: str | Path, n: int = 8, size: int = 224) -> Tensor:
    """The centre ``size x size`` crops of the first ``n`` images of ``folder`` (by name).

    Returns:
        ``(n, 3, size, size)`` float32 in [0, 1].

    Raises:
        ValueError: if ``folder`` is not a folder or holds fewer than ``n`` images (the
            message names the folder), or an image cannot be read.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of images")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) < n:
        raise ValueError(f"{root}: needs {n} images, found {len(files)}")
    return torch.stack([center_crop(load_image(p), size) for p in files[:n]]).contiguous()


def psnr_db(x: Tensor, ref: Tensor) -> Tensor:
    """Per-image PSNR ``(N,)`` in dB of ``x`` against ``ref`` (peak 1); identical -> 99."""
    mse = (x.double() - ref.double()).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-300)), torch.full_like(mse, IDENTICAL_DB))


def anchor_psnr_table(
    images: Tensor, types: Sequence[str] | None = None, *, seed: int = 0, repeats: int = 1
) -> list[dict[str, object]]:
    """PSNR(distorted, pristine) of every type at each of its five anchors.

    Args:
        images: ``(N, 3, H, W)`` pristine crops in [0, 1].
        types: catalog types (default: all, in catalog order).
        seed: seed of the generator of the random types (one generator per type and level).
        repeats: independent draws per crop for the random types (deterministic types are
            applied once); the figure is the mean over crops and draws (more repeats: a
            steadier estimate of the expected PSNR).

    Returns:
        One row per (type, level): ``type``, ``level`` (0-4), ``value`` (the anchor) and
        ``psnr_db`` (mean over the crops and repeats).

    Raises:
        TypeError, ValueError: for bad images, an unknown type or ``repeats < 1``.
    """
    images = check_images(images, "images")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    names = list(CATALOG) if types is None else [check_type(t).name for t in types]
    rows: list[dict[str, object]] = []
    for name in names:
        for level, value in enumerate(CATALOG[name].anchors):
            gen = torch.Generator().manual_seed(seed * 1000 + level)
            reps = repeats if OPS[name].draw is not None else 1
            scores = [psnr_db(apply_distortion(images, name, value, generator=gen), images) for _ in range(reps)]
            rows.append({"type": name, "level": level, "value": value, "psnr_db": float(torch.cat(scores).mean())})
    return rows


def read_reference_csv(path: str | Path) -> dict[tuple[str, int], float]:
    """``(type, level) -> psnr_reference_db`` from a calibration CSV (empty cells skipped).

    Raises:
        ValueError: if the file is missing or lacks the columns ``type``, ``level`` and
            ``psnr_reference_db``.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such reference CSV")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"type", "level", "psnr_reference_db"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{p}: needs the columns {sorted(need)}, has {reader.fieldnames}")
        return {
            (row["type"], int(row["level"])): float(row["psnr_reference_db"])
            for row in reader
            if row["psnr_reference_db"].strip()
        }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the anchor PSNR table (and the comparison with a reference CSV) as CSV."""
    ap = argparse.ArgumentParser(prog="python -m shamisa_bench.distortions.calibration", description=__doc__)
    ap.add_argument("images", help="folder of pristine images (the first --n by name are used)")
    ap.add_argument("--n", type=int, default=8, help="images to use (default 8)")
    ap.add_argument("--size", type=int, default=224, help="centre crop side (default 224)")
    ap.add_argument("--types", nargs="+", metavar="TYPE", help="types to measure (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="draws per crop for the random types (default 1)")
    ap.add_argument("--reference", metavar="CSV", help="reference figures to compare with")
    args = ap.parse_args(argv)
    try:
        crops = calibration_crops(args.images, args.n, args.size)
        ref = read_reference_csv(args.reference) if args.reference else {}
        rows = anchor_psnr_table(crops, args.types, seed=args.seed, repeats=args.repeats)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = csv.writer(sys.stdout)
    out.writerow(["type", "level", "value", "psnr_reference_db", "psnr_ours_db", "diff_db"])
    for r in rows:
        want = ref.get((str(r["type"]), int(r["level"])))  # type: ignore[arg-type]
        ours = float(r["psnr_db"])  # type: ignore[arg-type]
        diff = "" if want is None else f"{ours - want:+.2f}"
        out.writerow([r["type"], r["level"], r["value"], "" if want is None else f"{want:.2f}", f"{ours:.2f}", diff])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
