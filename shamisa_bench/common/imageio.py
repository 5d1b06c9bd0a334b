"""Reading images: one function that gives an RGB tensor or a clear error naming the file.

Every mode Pillow can open becomes RGB in [0, 1], or is refused with the file named:

* 8-bit modes (``1``, ``L``, ``LA``, ``La``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBa``,
  ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) are converted to RGB by Pillow and divided
  by 255: grayscale is repeated over the three channels, palette images are expanded, alpha
  is dropped (the colour values are kept as stored, no compositing; premultiplied ``RGBa``
  and ``La`` are un-premultiplied first), CMYK, YCbCr, LAB and HSV are converted.
* 16-bit grayscale (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) is divided by 65535.
* 32-bit integer grayscale (``I``) is divided by the range of the bits per sample the file
  states (a TIFF's 8 or 16); otherwise by its values: all in [0, 255] are 8-bit (255), a
  maximum in (255, 65535] is 16-bit (65535); negative values or values above 65535 are
  refused (no scale can be told).
* 32-bit float grayscale (``F``): values in [0, 1] are used as they are; whole numbers up
  to 255 are 8-bit values (divided by 255), whole numbers up to 65535 are 16-bit values
  (65535); anything else (negative, NaN or infinite values, fractions above 1, whole
  numbers above 65535) is refused: [0, 1] with overshoot cannot be told from [0, 255].

EXIF orientation is not applied: pixels are used as stored, as IQA datasets rate them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "check_image",
    "grey_scale",
    "list_images",
    "load_image",
    "pil_to_tensor",
    "scaled_size",
    "walk_following_links",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # grayscale read at full depth


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or truncated; the message names it."""


def _stated_bits(img: Image.Image) -> int | None:
    """Bits per sample a TIFF states (tag 258), when it is 8 or 16; else None."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return None
    try:
        bits = tags.get(258)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return int(bits) if bits in (8, 16) else None


def grey_scale(mode: str, values: np.ndarray, source: str | Path, stated_bits: int | None = None) -> float:
    """The number a high-depth grayscale image is divided by to lie in [0, 1] (see the module docstring).

    Args:
        mode: ``I;16*``, ``I`` or ``F``.
        values: the pixel values.
        source: the file (or ``PIL image``), named in errors.
        stated_bits: the bits per sample the file states (8 or 16), if any.

    Raises:
        ImageReadError: a scale that cannot be told from the data type and the values.
    """
    if mode.startswith("I;16"):
        return 65535.0
    if values.size == 0:
        return 1.0
    lo, hi = float(np.min(values)), float(np.max(values))
    if mode == "I":
        if stated_bits is not None:
            return 255.0 if stated_bits == 8 else 65535.0
        if lo >= 0 and hi <= 255:
            return 255.0
        if lo >= 0 and hi <= 65535:
            return 65535.0
        raise ImageReadError(
            f"{source}: 32-bit integer image (mode I) with values in [{lo:g}, {hi:g}]: neither 8-bit nor 16-bit, "
            "so its scale cannot be told; save it with 8 or 16 bits per sample"
        )
    if mode != "F":
        raise ImageReadError(f"{source}: unsupported grayscale mode {mode}")
    if not np.isfinite(values).all():
        raise ImageReadError(f"{source}: float image (mode F) with NaN or infinite pixels")
    whole = bool(np.all(values == np.floor(values)))
    if lo >= 0 and hi <= 1.0:
        return 1.0
    if lo >= 0 and whole and hi <= 255:
        return 255.0
    if lo >= 0 and whole and hi <= 65535:
        return 65535.0
    raise ImageReadError(
        f"{source}: float image (mode F) with values in [{lo:g}, {hi:g}]"
        f"{'' if whole else ', not whole numbers'}: its scale cannot be told ([0, 1], [0, 255] or [0, 65535]); "
        "scale it to [0, 1], or save it with 8 or 16 bits per sample"
    )


def _to_rgb_tensor(img: Image.Image, path: str | Path) -> Tensor:
    """(3, H, W) float32 in [0, 1] from an open Pillow image, with one full-size float copy.

    Memory: about 15 bytes per pixel at the peak (the 8-bit array, then the float tensor),
    instead of the 40 of a float array, a scaled copy and a transposed copy.
    """
    mode = img.mode
    if mode in _HIGH_DEPTH:
        a = np.asarray(img, dtype=np.float64)
        a = a / grey_scale(mode, a, path, _stated_bits(img))
        grey = torch.from_numpy(a.clip(0.0, 1.0).astype(np.float32))
        return grey.unsqueeze(0).repeat(3, 1, 1)
    img = _as_rgb(img, path)
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ImageReadError(f"{path}: unsupported image layout (mode {mode}, array {a.dtype} {a.shape})")
    out = torch.empty((3, a.shape[0], a.shape[1]), dtype=torch.float32)
    with warnings.catch_warnings():  # Pillow's array is read-only; it is only read here
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(a)
    out.copy_(src.permute(2, 0, 1))  # uint8 -> float32, straight into (3, H, W)
    del src
    del a
    return out.div_(255.0)  # the same IEEE values as float32(a) / 255


def _as_rgb(img: Image.Image, path: str | Path) -> Image.Image:
    """An 8-bit mode converted to RGB (transparent palettes expanded first, ``La`` via ``LA``)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "La":  # premultiplied: Pillow converts it to LA only
        img = img.convert("LA")
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError as err:
            raise ImageReadError(f"{path}: image mode {img.mode} cannot be converted to RGB ({err})") from None
    return img


def scaled_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Size after downscaling so the longer side equals ``max_side`` (aspect kept, rounded).

    Returns ``(height, width)`` unchanged when the longer side is at most ``max_side``.
    """
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    if height >= width:
        return max_side, max(round(width * scale), 1)
    return max(round(height * scale), 1), max_side


def _downscale_planes(img: Image.Image, size: tuple[int, int], path: str | Path) -> Tensor:
    """The 8-bit RGB image downscaled one channel at a time (no full-size float RGB copy).

    Bit-identical to converting the whole image to float and then downscaling it, because
    bilinear antialiased interpolation treats channels independently.
    """
    img = _as_rgb(img, path)  # as _to_rgb_tensor does
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ImageReadError(f"{path}: unsupported image layout (mode {img.mode}, array {a.dtype} {a.shape})")
    out = torch.empty((3, *size), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(a)
    for c in range(3):
        plane = torch.empty(a.shape[:2], dtype=torch.float32)
        plane.copy_(src[:, :, c])
        plane.div_(255.0)
        out[c] = F.interpolate(plane[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)[0, 0]
        del plane
    return out.clamp_(0.0, 1.0)


def pil_to_tensor(img: Image.Image, source: str = "PIL image") -> Tensor:
    """Convert an open Pillow image as :func:`load_image` does (same modes, same values).

    Args:
        img: Any mode Pillow supports (8-bit, 16-bit and 32-bit grayscale, palette, RGBA, ...).
        source: Name used in error messages.

    Returns:
        ``(3, H, W)`` float32 in [0, 1].

    Raises:
        ImageReadError: Unsupported layout, or an image with no pixels.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"{source}: expected a PIL.Image.Image, got {type(img).__name__}")
    if img.width < 1 or img.height < 1:
        raise ImageReadError(f"{source}: image has no pixels")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{source}: corrupt or truncated image ({err})") from None
    return _to_rgb_tensor(img, source)


def _open(
    path: str | os.PathLike[str], convert: bool, max_side: int | None = None
) -> tuple[Tensor | None, tuple[int, int]]:
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such image file")
    if not p.is_file():
        raise ImageReadError(f"{p}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img.load()
                size = (img.height, img.width)
                small = scaled_size(*size, max_side) if max_side is not None else size
                if not convert:
                    tensor = None
                elif small != size and img.mode not in _HIGH_DEPTH:
                    tensor = _downscale_planes(img, small, p)
                else:
                    tensor = _to_rgb_tensor(img, p)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{p}: image too large to decode safely ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{p}: corrupt or truncated image ({err})") from None
    if size[0] < 1 or size[1] < 1:
        raise ImageReadError(f"{p}: image has no pixels")
    return tensor, size


def _check_sides(path: str | os.PathLike[str], size: tuple[int, int], min_side: int, max_side: int | None) -> None:
    """Refuse an image with a side under ``min_side``, at full size or once downscaled to ``max_side``."""
    height, width = size
    if height < min_side or width < min_side:
        raise ImageReadError(f"{Path(path)}: image is {height}x{width} pixels, smaller than {min_side} on a side")
    if max_side is not None:
        small = scaled_size(height, width, max_side)
        if min(small) < min_side:
            raise ImageReadError(
                f"{Path(path)}: image is {height}x{width} pixels; downscaled to at most {max_side} pixels on the "
                f"longer side it would be {small[0]}x{small[1]}, smaller than {min_side} on a side "
                "(aspect ratio too extreme)"
            )


def load_image(path: str | os.PathLike[str], max_side: int | None = None, min_side: int | None = None) -> Tensor:
    """Load an image file as an RGB float tensor.

    Args:
        path: a JPEG, PNG, BMP, TIFF, ... file Pillow can read.
        max_side: None (default): full size. Otherwise an image whose longer side exceeds
            it is downscaled (bilinear, antialiased, aspect kept, see :func:`scaled_size`)
            channel by channel while it is converted, so the full-size float image never
            exists; the result is bit-identical to downscaling the full-size tensor with
            ``F.interpolate(..., antialias=True)`` (what :func:`shamisa_bench.iqa.head.prepare_images`
            does).
        min_side: refuse an image with a side shorter than this, at full size or after the
            downscale (the message gives the file's real size).

    Returns:
        ``(3, H, W)`` float32 in [0, 1] on the CPU.

    Raises:
        ImageReadError: (a ``ValueError``) if the file is missing, is not an image, is
            corrupt or truncated, is too large to decode safely (more than Pillow's
            ``MAX_IMAGE_PIXELS``, about 89 megapixels), has a mode whose scale cannot be
            told, or is smaller than ``min_side``; the message names the file and the problem.
    """
    tensor, size = _open(path, convert=True, max_side=max_side)
    if min_side is not None:
        _check_sides(path, size, min_side, max_side)
    if tensor is None:  # pragma: no cover - _open(convert=True) always converts
        raise RuntimeError(f"{path}: image was not converted")
    return tensor


def check_image(path: str | os.PathLike[str], min_side: int = 1, max_side: int | None = None) -> tuple[int, int]:
    """Decode an image fully (as :func:`load_image` would) without converting it; return its size.

    Cheaper than :func:`load_image` (no float copy): for checking a whole list of images
    before any work is done.

    Args:
        path: The image file.
        min_side: Refuse images with a side shorter than this.
        max_side: The downscale :func:`load_image` will apply (None: none); an image whose
            shorter side falls under ``min_side`` once downscaled is refused too.

    Returns:
        ``(height, width)``.

    Raises:
        ImageReadError: As :func:`load_image`, or a side shorter than ``min_side``.
    """
    _, (height, width) = _open(path, convert=False)
    _check_sides(path, (height, width), min_side, max_side)
    return height, width


def walk_following_links(folder: str | os.PathLike[str]) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` that follows symlinked folders, each real folder once (no loop).

    A folder reached a second time (a link back to a parent, or two links to one folder) is
    skipped with everything below it. Subfolders are visited in sorted order.
    """
    seen: set[str] = set()
    for dirpath, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        yield dirpath, dirs, files


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files (JPEG, PNG, BMP, TIFF; suffix case-insensitive) under ``folder``.

    Args:
        folder: the directory to scan.
        recursive: also scan sub-directories.

    Returns:
        Paths sorted by their path relative to ``folder`` (POSIX form), so the order is the
        same on every machine. Symlinked files and folders are followed; a folder reached
        twice (a link loop, or two links to one folder) is listed once.

    Raises:
        FileNotFoundError: if ``folder`` does not exist.
        NotADirectoryError: if ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such image folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    if recursive:  # not rglob: symlinked folders are followed
        candidates = [Path(d) / f for d, _dirs, files in walk_following_links(root) for f in files]
    else:
        candidates = list(root.glob("*"))
    found = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
