"""Source images of a robustness run: bundled demo photos, image folders or a dataset.

Every source is centre-cropped to a square, resized to ``size`` x ``size`` (antialiased
bicubic, only when the crop has another side) and rounded to 8 bits, so the whole set is
one batch per distortion type and every image is what a PNG file would hold.

A source's **identity** is content-based (sha256 of the file bytes, or of the bundled
photo's bytes), so cache entries of the generated images survive moving a folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from shamisa_bench.common.imageio import IMAGE_SUFFIXES, list_images, load_image
from shamisa_bench.harness.data.demo import SOURCE_FILES, _load_source
from shamisa_bench.harness.run import RunConfig, load_tables

__all__ = ["SourceSet", "evenly_spaced", "load_sources", "quantize8", "to_square"]


@dataclass(frozen=True)
class SourceSet:
    """The source images of a run.

    Attributes:
        names: a readable name per image (``<folder>/<relative path>``, ``demo/<photo>``).
        identities: content identity per image (part of every generated image's cache key).
        pixels: ``(S, 3, size, size)`` float32 in [0, 1], 8-bit values.
        origins: where the images came from (folders, dataset names), for the report.
        skipped: ``(name, reason)`` of unreadable images, counted and reported.
    """

    names: tuple[str, ...]
    identities: tuple[str, ...]
    pixels: Any
    origins: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.identities) != n or int(self.pixels.shape[0]) != n:
            raise ValueError(f"{n} names, {len(self.identities)} identities and "
                             f"{int(self.pixels.shape[0])} images disagree")
        if len(set(self.names)) != n:
            raise ValueError(f"source names must be unique, got {list(self.names)}")


def evenly_spaced(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``range(n)``, first and last included."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)})


def quantize8(x: Any) -> Any:
    """Clamp to [0, 1] and round to multiples of 1/255 (what an 8-bit file holds), float32."""
    return (x.clamp(0.0, 1.0) * 255.0).round().div(255.0).to(torch.float32).contiguous()


def to_square(x: Any, size: int) -> Any:
    """Centre-crop ``(3, H, W)`` to a square and resize it to ``(3, size, size)``, 8-bit.

    Args:
        x: float tensor in [0, 1].
        size: output side.

    Returns:
        ``(3, size, size)`` float32 in [0, 1] holding multiples of 1/255.
    """
    _, h, w = x.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    y = x[:, top:top + side, left:left + side].float()
    if side != size:
        y = F.interpolate(y[None], size=(size, size), mode="bicubic", antialias=True,
                          align_corners=False)[0]
    return quantize8(y)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _from_files(paths: Sequence[Path], names: Sequence[str], size: int
                ) -> tuple[list[str], list[str], list[Any], list[tuple[str, str]]]:
    out_names, idents, pix, skipped = [], [], [], []
    for path, name in zip(paths, names):
        try:
            img = load_image(path)
        except ValueError as err:  # ImageReadError names the file
            skipped.append((name, str(err).replace(str(path), name)))
            continue
        out_names.append(name)
        idents.append("file:" + _sha256(Path(path).read_bytes()))
        pix.append(to_square(img, size))
    return out_names, idents, pix, skipped


def _folder(folder: Path, max_images: int, size: int
            ) -> tuple[list[str], list[str], list[Any], list[tuple[str, str]]]:
    files = list_images(folder)
    if not files:
        raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder "
                         "or below it; pass a folder of images with --images")
    chosen = [files[i] for i in evenly_spaced(len(files), max_images)]
    label = folder.name or "images"
    names = [f"{label}/{p.relative_to(folder).as_posix()}" for p in chosen]
    return _from_files(chosen, names, size)


def _demo_photos(spec: Any, max_images: int, size: int
                 ) -> tuple[list[str], list[str], list[Any], list[tuple[str, str]]]:
    # the demo builder's loader: the photos bundled with scikit-image, no download

    photos = list((spec.options or {}).get("sources") or SOURCE_FILES)[:max_images]
    names, idents, pix = [], [], []
    for photo in photos:
        data = files("skimage.data").joinpath(SOURCE_FILES[photo]).read_bytes()
        names.append(f"demo/{photo}")
        idents.append(f"skimage:{SOURCE_FILES[photo]}:{_sha256(data)}")
        # _load_source already crops and resizes (Lanczos); to_square only checks the size
        pix.append(to_square(_load_source(photo, size), size))
    return names, idents, pix, []


def load_sources(
    *,
    folders: Sequence[str | Path] = (),
    datasets: Sequence[str] = (),
    registry: Any = None,
    data_root: Path | None = None,
    cache_dir: Path | None = None,
    max_images: int = 8,
    size: int = 256,
    allow_partial: bool = True,
) -> SourceSet:
    """Load the source images: ``max_images`` from each folder and each dataset.

    Args:
        folders: image folders (searched recursively; files chosen evenly over the sorted
            list, so a folder's sub-folders are all represented).
        datasets: registered dataset names; ``demo`` means the bundled photographs
            (its recipe's ``sources``), any other name the images of that dataset.
        registry: the Registry (needed for ``datasets``).
        data_root, cache_dir: where datasets live and are cached.
        max_images: images per folder or dataset.
        size: side of the square images.
        allow_partial: accept an incomplete dataset (its present images are used).

    Returns:
        the SourceSet.

    Raises:
        ValueError: a folder holds no image file, no source given, or every image failed
            to decode (the message names the files).
        FileNotFoundError / NotADirectoryError: a folder does not exist.
    """
    if not folders and not datasets:
        raise ValueError("no source images: give an image folder (--images) or a dataset")
    names: list[str] = []
    idents: list[str] = []
    pix: list[Any] = []
    skipped: list[tuple[str, str]] = []
    origins: list[str] = []
    for folder in folders:
        n, i, p, s = _folder(Path(folder), max_images, size)
        names += n
        idents += i
        pix += p
        skipped += s
        origins.append(f"folder {Path(folder).name or folder}")
    for ds in datasets:
        spec = registry.dataset(ds)
        if spec.reader == "demo":
            n, i, p, s = _demo_photos(spec, max_images, size)
            origins.append(f"{ds} (photos bundled with scikit-image)")
        else:
            cfg = RunConfig(data_root=data_root, cache_dir=cache_dir, allow_partial=allow_partial)
            table = load_tables(registry, [ds], cfg)[ds]
            rows = evenly_spaced(len(table.frame), max_images)
            paths = [Path(table.frame["image"].iloc[r]) for r in rows]
            n, i, p, s = _from_files(paths, [f"{ds}/{table.frame['name'].iloc[r]}" for r in rows], size)
            origins.append(f"dataset {ds}")
        names += n
        idents += i
        pix += p
        skipped += s
    if not pix:
        detail = "; ".join(f"{n}: {r}" for n, r in skipped[:5])
        raise ValueError(f"no readable source image ({len(skipped)} failed: {detail})")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"two sources share the name(s) {sorted(dup)}; use folders with different names")

    return SourceSet(tuple(names), tuple(idents), torch.stack(pix), tuple(origins), tuple(skipped))

