"""Reading images: one function that gives an RGB tensor or a clear error naming the file.

Every mode Pillow can open becomes 8-bit-equivalent RGB in [0, 1]: grayscale is repeated
over the three channels, palette images are expanded, alpha is dropped (the colour values
are kept as stored, no compositing), and 16/32-bit grayscale is scaled by its full range
(65535) rather than truncated. EXIF orientation is not applied: pixels are used as stored,
as IQA datasets rate them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "check_image", "list_images", "load_image", "pil_to_tensor", "scaled_size"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # grayscale read at full depth


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or truncated; the message names it."""


def _to_rgb_tensor(img: Image.Image, path: str | Path) -> Tensor:
    """(3, H, W) float32 in [0, 1] from an open Pillow image, with one full-size float copy.

    Memory: about 15 bytes per pixel at the peak (the 8-bit array, then the float tensor),
    instead of the 40 of a float array, a scaled copy and a transposed copy.
    """
    mode = img.mode
    if mode in _HIGH_DEPTH:
        a = np.asarray(img, dtype=np.float64)
        if mode != "F":
            a = a / 65535.0
        grey = torch.from_numpy(a.clip(0.0, 1.0).astype(np.float32))
        return grey.unsqueeze(0).repeat(3, 1, 1)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
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
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # as _to_rgb_tensor does
    if img.mode != "RGB":
        img = img.convert("RGB")
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


def load_image(path: str | os.PathLike[str], max_side: int | None = None) -> Tensor:
    """Load an image file as an RGB float tensor.

    Args:
        path: a JPEG, PNG, BMP, TIFF, ... file Pillow can read.
        max_side: None (default): full size. Otherwise an image whose longer side exceeds
            it is downscaled (bilinear, antialiased, aspect kept, see :func:`scaled_size`)
            channel by channel while it is converted, so the full-size float image never
            exists; the result is bit-identical to downscaling the full-size tensor with
            ``F.interpolate(..., antialias=True)`` (what :func:`shamisa_bench.iqa.head.prepare_images`
            does).

    Returns:
        ``(3, H, W)`` float32 in [0, 1] on the CPU.

    Raises:
        ImageReadError: (a ``ValueError``) if the file is missing, is not an image, is
            corrupt or truncated, or is too large to decode safely (more than Pillow's
            ``MAX_IMAGE_PIXELS``, about 89 megapixels); the message names the file and
            the problem.
    """
    tensor, _ = _open(path, convert=True, max_side=max_side)
    if tensor is None:  # pragma: no cover - _open(convert=True) always converts
        raise RuntimeError(f"{path}: image was not converted")
    return tensor


def check_image(path: str | os.PathLike[str], min_side: int = 1) -> tuple[int, int]:
    """Decode an image fully (as :func:`load_image` would) without converting it; return its size.

    Cheaper than :func:`load_image` (no float copy): for checking a whole list of images
    before any work is done.

    Args:
        path: The image file.
        min_side: Refuse images with a side shorter than this.

    Returns:
        ``(height, width)``.

    Raises:
        ImageReadError: As :func:`load_image`, or a side shorter than ``min_side``.
    """
    _, (height, width) = _open(path, convert=False)
    if height < min_side or width < min_side:
        raise ImageReadError(f"{Path(path)}: image is {height}x{width} pixels, smaller than {min_side} on a side")
    return height, width


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files (JPEG, PNG, BMP, TIFF; suffix case-insensitive) under ``folder``.

    Args:
        folder: the directory to scan.
        recursive: also scan sub-directories.

    Returns:
        Paths sorted by their path relative to ``folder`` (POSIX form), so the order is the
        same on every machine.

    Raises:
        FileNotFoundError: if ``folder`` does not exist.
        NotADirectoryError: if ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such image folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    pattern = root.rglob("*") if recursive else root.glob("*")
    found = [p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
