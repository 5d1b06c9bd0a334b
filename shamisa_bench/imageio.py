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
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "list_images", "load_image"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or truncated; the message names it."""


def _to_rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64) / 65535.0
        return np.repeat(a[..., None], 3, axis=2).clip(0.0, 1.0).astype(np.float32)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        return np.repeat(a[..., None], 3, axis=2).clip(0.0, 1.0).astype(np.float32)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ImageReadError(f"{path}: unsupported image layout (mode {mode}, array {a.dtype} {a.shape})")
    return a.astype(np.float32) / 255.0


def load_image(path: str | os.PathLike[str]) -> Tensor:
    """Load an image file as an RGB float tensor.

    Args:
        path: a JPEG, PNG, BMP, TIFF, ... file Pillow can read.

    Returns:
        ``(3, H, W)`` float32 in [0, 1] on the CPU.

    Raises:
        ImageReadError: (a ``ValueError``) if the file is missing, is not an image, is
            corrupt or truncated, or is too large to decode safely; the message names the
            file and the problem.
    """
    from PIL import Image, UnidentifiedImageError

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
                arr = _to_rgb_array(img, p)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{p}: image too large to decode safely ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{p}: corrupt or truncated image ({err})") from None
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(f"{p}: image has no pixels")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


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
