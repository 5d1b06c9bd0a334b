"""Compression group: JPEG (Pillow/libjpeg) and JPEG 2000 (Pillow/OpenJPEG).

Both round-trip through 8-bit RGB on the CPU, whatever the input's device: the image is
rounded to uint8, encoded, decoded and moved back. JPEG 2000 encodes one image at a time
(Pillow holds the GIL while OpenJPEG encodes, so Python threads do not help); it is the
engine's most expensive type. OpenJPEG can spread one encode over its own threads, which
it reads from the ``OPJ_NUM_THREADS`` environment variable at every encode. Unless the user
set that variable, :func:`jpeg2000` sets it to ``torch.get_num_threads()`` for the duration
of its encodes and removes it afterwards (so a data-loader worker limited to one torch
thread also encodes on one thread). The output does not depend on the thread count.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image, features
from torch import Tensor

from shamisa_bench.distortions.base import DistortionOp, Draws

__all__ = ["OPS", "jpeg", "jpeg2000", "to_uint8"]


def to_uint8(x: Tensor) -> Tensor:
    """``(N, 3, H, W)`` float in [0, 1] -> uint8 on the CPU (rounded to nearest)."""
    return (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()


def _from_uint8(u: Tensor, like: Tensor) -> Tensor:
    return u.to(device=like.device, dtype=like.dtype) / 255.0


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


def jpeg(x: Tensor, quality: Tensor, draws: Draws = ()) -> Tensor:
    """JPEG encode/decode at integer ``quality`` ``(N,)`` in 1..100 (libjpeg via Pillow).

    Pillow's defaults: standard quantisation tables scaled by the quality, 4:2:0 chroma
    subsampling, baseline.
    """
    u8 = to_uint8(x).permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(u8)
    for i, q in enumerate(quality.tolist()):
        out[i] = _jpeg_roundtrip(u8[i], min(100, max(1, round(q))))
    return _from_uint8(torch.from_numpy(out).permute(0, 3, 1, 2), x)


def _check_openjpeg() -> None:
    if not features.check("jpg_2000"):
        raise RuntimeError(
            "jpeg2000 needs Pillow built with OpenJPEG (PIL.features.check('jpg_2000') is False); "
            "install a Pillow wheel that includes it"
        )


@contextmanager
def _openjpeg_threads() -> Iterator[None]:
    """Let OpenJPEG use torch's thread count, unless the user set ``OPJ_NUM_THREADS``."""
    if "OPJ_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OPJ_NUM_THREADS"] = str(max(1, torch.get_num_threads()))
    try:
        yield
    finally:
        os.environ.pop("OPJ_NUM_THREADS", None)


def _j2k_roundtrip(img: np.ndarray, ratio: float) -> np.ndarray:
    h, w = img.shape[:2]
    # OpenJPEG needs every resolution level to keep at least one pixel. The reference asks
    # for 8 levels, which 224-pixel crops allow.
    levels = max(1, min(8, math.floor(math.log2(max(1, min(h, w)))) + 1))
    buf = io.BytesIO()
    Image.fromarray(img).save(
        buf,
        format="JPEG2000",
        quality_mode="rates",
        quality_layers=[float(ratio)],
        num_resolutions=levels,
        irreversible=False,  # the reversible 5/3 wavelet, Pillow's default, as the reference
    )
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


def jpeg2000(x: Tensor, ratio: Tensor, draws: Draws = ()) -> Tensor:
    """JPEG 2000 (9/7 wavelet) encode/decode at compression ``ratio`` ``(N,)`` (>= 1).

    The ratio is OpenJPEG's rate: uncompressed 24-bit size over coded size.
    """
    _check_openjpeg()
    u8 = to_uint8(x).permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(u8)
    with _openjpeg_threads():
        for i, r in enumerate(ratio.tolist()):
            out[i] = _j2k_roundtrip(u8[i], max(1.0, float(round(r))))
    return _from_uint8(torch.from_numpy(out).permute(0, 3, 1, 2), x)


OPS: dict[str, DistortionOp] = {
    "jpeg2000": DistortionOp(jpeg2000),
    "jpeg": DistortionOp(jpeg),
}
