"""Helpers several test modules share: tiny encoder weights, a random quality head, a photo.

Fixtures built on them live in ``tests/conftest.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shamisa_bench.iqa.head import QualityHead
from shamisa_bench.model import build_encoder, save_encoder_export

MIN_SIZE = 96
"""Padding target of the test heads: small, so tiny images run fast."""


def tiny_export(folder: Path, seed: int = 3) -> Path:
    """A random-init ResNet-18 encoder export in ``folder / "export"``; returns its path."""
    return save_encoder_export(build_encoder("resnet18", "random", seed=seed), folder / "export")


def random_head(dim: int, sha: str | None, *, feature_mode: str = "whole", seed: int = 0, **kw: object) -> QualityHead:
    """A quality head with random weights (``seed``) for ``dim``-wide features of the encoder ``sha``.

    ``kw`` overrides any other field (``crop_size``, ``mos_range``, ...).
    """
    gen = torch.Generator().manual_seed(seed)
    fields: dict[str, object] = {
        "weight": torch.randn(dim, generator=gen) * 4.0 / math.sqrt(dim),
        "bias": 0.5,
        "feature_mean": torch.full((dim,), 1.0 / math.sqrt(dim)),
        "feature_std": torch.ones(dim),
        "mos_range": (0.0, 1.0),
        "lower_better": False,
        "dataset": "unit",
        "feature_mode": feature_mode,
        "min_size": MIN_SIZE,
        "encoder_sha256": sha,
        "backbone": "resnet18",
    }
    fields.update(kw)
    return QualityHead(**fields)  # type: ignore[arg-type]


def write_labelled_images(folder: Path, images: Iterable[torch.Tensor], mos: Iterable[float]) -> Path:
    """``folder/img/NN.png`` for each (3, H, W) image in [0, 1] and ``folder/labels.csv``
    (columns ``image,mos``); returns the CSV's path."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = ["image,mos"]
    for i, (img, label) in enumerate(zip(images, mos, strict=True)):
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / "img" / f"{i:02d}.png")
        lines.append(f"img/{i:02d}.png,{label}")
    csv = folder / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def write_photo(path: Path) -> Path:
    """A generated 56x72 RGB PNG with edges and gradients at ``path``; returns ``path``."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:56, 0:72]
    img = np.stack([xx / 71.0, yy / 55.0, 0.5 + 0.5 * np.sin(xx / 5.0)], axis=-1)
    img[10:30, 20:50] = rng.uniform(0, 1, 3)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
    return path
