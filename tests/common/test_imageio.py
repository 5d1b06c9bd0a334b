"""Image loading: modes converted to RGB, clear errors for bad files, deterministic listing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shamisa_bench.common.imageio import ImageReadError, list_images, load_image


def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path)
    return path


def test_rgb_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    x = load_image(_save(tmp_path / "rgb.png", arr))
    assert x.shape == (3, 9, 13) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)


def test_modes_become_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (8, 10), dtype=np.uint8)
    g = load_image(_save(tmp_path / "grey.png", grey))
    assert g.shape == (3, 8, 10) and torch.equal(g[0], g[2])
    assert torch.equal(g[1], torch.from_numpy(grey).float() / 255)

    rgba = rng.integers(0, 256, (8, 10, 4), dtype=np.uint8)
    a = load_image(_save(tmp_path / "rgba.PNG", rgba))
    assert torch.equal(a, torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float() / 255)

    rgb = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    p = load_image(_save(tmp_path / "pal.bmp", rgb, mode="P"))
    assert p.shape == (3, 8, 10) and 0 <= float(p.min()) and float(p.max()) <= 1

    deep = (np.arange(80, dtype=np.uint16).reshape(8, 10) * 800).astype(np.uint16)
    d = load_image(_save(tmp_path / "deep16.png", deep))
    assert d.shape == (3, 8, 10)
    assert float(d[0, 7, 9]) == pytest.approx(79 * 800 / 65535, abs=1e-6)  # full range, not truncated

    t = load_image(_save(tmp_path / "tiff.tif", rgb))
    assert torch.equal(t, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="missing.png.*no such"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"definitely not a PNG")
    with pytest.raises(ImageReadError, match="junk.png"):
        load_image(tmp_path / "junk.png")
    rng = np.random.default_rng(2)
    _save(tmp_path / "whole.jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg.*truncated"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageReadError, match="not a file"):
        load_image(tmp_path)
    assert issubclass(ImageReadError, ValueError)


def test_list_images_is_sorted_and_case_insensitive(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ["b.PNG", "a.jpg", "sub/c.TIFF", "sub/d.bmp", "notes.txt", "e.JPEG", "f.webp"]:
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "e.JPEG", "sub/c.TIFF", "sub/d.bmp"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["a.jpg", "b.PNG", "e.JPEG"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "a.jpg")
