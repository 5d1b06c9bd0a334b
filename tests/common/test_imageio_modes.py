"""Every Pillow mode is scaled from its data type and values, or refused naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shamisa_bench.common.imageio import (
    ImageReadError,
    check_image,
    load_image,
    pil_to_tensor,
)

GREY = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5).astype(np.uint8)  # 0..235, whole numbers


def _eight_bit(tmp_path: Path) -> torch.Tensor:
    Image.fromarray(GREY).save(tmp_path / "grey8.png")
    return load_image(tmp_path / "grey8.png")


def test_float_tiff_with_8bit_values_scores_like_its_8bit_file(tmp_path: Path) -> None:
    Image.fromarray(GREY.astype(np.float32), mode="F").save(tmp_path / "f255.tif")
    assert torch.equal(load_image(tmp_path / "f255.tif"), _eight_bit(tmp_path))


def test_int32_image_with_8bit_values_scores_like_its_8bit_file(tmp_path: Path) -> None:
    Image.fromarray(GREY.astype(np.int32), mode="I").save(tmp_path / "i255.tif")
    assert torch.equal(load_image(tmp_path / "i255.tif"), _eight_bit(tmp_path))
    wide = GREY.astype(np.int32) * 257  # 16-bit values in a 32-bit image
    Image.fromarray(wide, mode="I").save(tmp_path / "i16.tif")
    assert torch.allclose(load_image(tmp_path / "i16.tif"), _eight_bit(tmp_path), atol=1e-6)


def test_float_in_unit_range_and_16bit_whole_numbers(tmp_path: Path) -> None:
    unit = Image.fromarray(GREY.astype(np.float32) / 255, mode="F")
    assert torch.allclose(pil_to_tensor(unit), _eight_bit(tmp_path), atol=1e-6)
    deep = Image.fromarray(GREY.astype(np.float32) * 257, mode="F")
    assert torch.allclose(pil_to_tensor(deep), _eight_bit(tmp_path), atol=1e-6)


@pytest.mark.parametrize(
    "values, mode, message",
    [
        (GREY.astype(np.float32) + 0.5, "F", r"f\.tif: float image \(mode F\) with values in \[0\.5, 235\.5\], not whole"),
        (GREY.astype(np.float32) - 1, "F", r"f\.tif: float image .*\[-1, 234\]"),
        (GREY.astype(np.int32) - 3, "I", r"f\.tif: 32-bit integer image \(mode I\) with values in \[-3, 232\]"),
        (GREY.astype(np.int32) * 70000, "I", r"f\.tif: 32-bit integer image .*neither 8-bit nor 16-bit"),
    ],
)
def test_scales_that_cannot_be_told_are_refused(tmp_path: Path, values, mode, message) -> None:
    Image.fromarray(values, mode=mode).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=message):
        load_image(tmp_path / "f.tif")


def test_nonfinite_float_pixels_are_refused() -> None:
    a = GREY.astype(np.float32) / 255
    a[2, 3] = np.nan
    with pytest.raises(ImageReadError, match="PIL image: float image .*NaN"):
        pil_to_tensor(Image.fromarray(a, mode="F"))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK",
                                  "YCbCr", "LAB", "HSV", "I;16", "I;16B", "I;16L", "I;16N"])
def test_every_mode_gives_rgb_in_unit_range(mode: str) -> None:
    img = Image.new(mode, (5, 4))
    x = pil_to_tensor(img)
    assert x.shape == (3, 4, 5) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_premultiplied_grey_alpha_is_read() -> None:
    img = Image.new("La", (3, 3), (50, 128))
    x = pil_to_tensor(img)
    assert float(x[0, 0, 0]) == pytest.approx(99 / 255)  # un-premultiplied, as Pillow's LA


def test_an_extreme_aspect_ratio_names_the_file_and_its_real_size(tmp_path: Path) -> None:
    Image.new("RGB", (5000, 40)).save(tmp_path / "strip.png")
    message = r"strip\.png: image is 40x5000 pixels; downscaled to at most 1024 .* would be 8x1024, smaller than 32"
    with pytest.raises(ImageReadError, match=message):
        check_image(tmp_path / "strip.png", min_side=32, max_side=1024)
    with pytest.raises(ImageReadError, match=message):
        load_image(tmp_path / "strip.png", max_side=1024, min_side=32)
    assert check_image(tmp_path / "strip.png", min_side=32) == (40, 5000)  # no downscale: large enough
