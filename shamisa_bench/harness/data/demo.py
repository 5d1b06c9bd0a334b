"""The embedded ``demo`` dataset: bundled photographs, our distortions, pseudo-MOS.

Nothing is downloaded. The source photographs are files that ship inside scikit-image's
wheel (``skimage/data/*.png|jpg``), read directly from the package folder so that no pooch
fetch can happen. Each is centre-cropped to a square and resized to ``size`` pixels, then
distorted with :func:`shamisa_bench.distortions.distort` at fixed severities (one batched
call per distortion type, each with its own seeded ``torch.Generator``). Every distorted image
is saved as PNG and labelled with a **pseudo-MOS**: a full-reference score
(``pseudo_mos_metric``; the registry uses GMSD, mapped to ``1 - GMSD`` so that higher is
better) that pyiqa computes offline between the saved distorted image and its saved source.
These labels are not human opinion; the registry entry, the table summary and
``shamisa-bench data ls`` say so.

The set is built once into ``<cache_dir>/datasets/demo-v<version>-<recipe hash>/`` (a
temporary folder renamed into place when complete) and reused afterwards; a changed recipe
gets a new folder. Layout of the built folder::

    ref/<source>.png
    dist/<source>__<distortion>__s<severity>.png
    meta.csv      image,mos,ref,distortion,severity
    build.json    recipe, package versions, seconds taken

Why GMSD: pyiqa 0.1.16 computes these full-reference metrics without any download: psnr,
ssim, ms_ssim, fsim, vif, gmsd, vsi, nlpd, mad, cw_ssim (lpips, dists, pieapp, ahiq and ckdn
need weights). Measured on this project's 2-core CPU machine for 20 images of 256x256
(batched): GMSD 0.5 s, VSI 6 s, FSIMc 10 s, MS-SSIM 17 s. GMSD correlates with human opinion
about as well as FSIM/MS-SSIM on LIVE, CSIQ and TID2013 (SRCC 0.96 / 0.96 / 0.80 in its
paper) and keeps the build within seconds. It is computed on luminance, so the demo uses
distortions that change luminance (blur, noise, JPEG, contrast, pixelation), not pure chroma
shifts that it could not see. FSIMc (``fsim``) remains selectable for colour distortions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shamisa_bench.distortions import distort
from shamisa_bench.harness.data.readers.generic_csv import read_csv_dataset
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["SOURCE_FILES", "build_demo", "demo_cached", "demo_layout", "demo_root", "read_demo"]

# skimage/data file per source name (all bundled in the scikit-image wheel)
SOURCE_FILES: dict[str, str] = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "coins": "coins.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "moon": "moon.png",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
}
_META = "meta.csv"


def _recipe(spec: DatasetSpec) -> dict[str, Any]:
    opts = spec.options
    recipe = {
        "version": spec.version,
        "sources": list(opts.get("sources", [])),
        "size": int(opts.get("size", 256)),
        "distortions": list(opts.get("distortions", [])),
        "severities": [float(s) for s in opts.get("severities", [])],
        "pseudo_mos_metric": str(opts.get("pseudo_mos_metric", "fsim")),
        "seed": int(opts.get("seed", 0)),
    }
    if recipe["pseudo_mos_metric"] not in _TO_PSEUDO_MOS:
        raise ValueError(
            f"demo: pseudo_mos_metric must be one of {sorted(_TO_PSEUDO_MOS)}, got {recipe['pseudo_mos_metric']!r}"
        )
    unknown = [s for s in recipe["sources"] if s not in SOURCE_FILES]
    if unknown:
        raise ValueError(f"demo: unknown source photo(s) {unknown}; bundled ones: {sorted(SOURCE_FILES)}")
    if not recipe["sources"] or not recipe["distortions"] or not recipe["severities"]:
        raise ValueError("demo: options need non-empty 'sources', 'distortions' and 'severities'")
    n = len(recipe["sources"]) * len(recipe["distortions"]) * len(recipe["severities"])
    if n != spec.n_images:
        raise ValueError(f"demo: the recipe makes {n} images but n_images is {spec.n_images}")
    return recipe


def demo_root(spec: DatasetSpec, cache_dir: Path) -> Path:
    """The folder the demo set with this recipe is (or will be) built in."""
    recipe = _recipe(spec)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cache_dir) / "datasets" / f"{spec.name}-v{spec.version}-{digest}"


def demo_cached(spec: DatasetSpec, cache_dir: Path) -> bool:
    """True when the demo set is already built in ``cache_dir``."""
    return (demo_root(spec, cache_dir) / _META).is_file()


def demo_layout(spec: DatasetSpec, cache_dir: Path) -> tuple[DatasetLayout, Path, Path]:
    """(layout, root, label file) of the demo set, building it first when needed."""
    root = build_demo(spec, cache_dir)
    layout = next((lay for lay in spec.layouts if lay.type == "demo"), DatasetLayout(type="demo"))
    return layout, root, root / _META


def _load_source(name: str, size: int) -> Any:
    """A bundled photograph as a (3, size, size) float tensor in [0, 1], 8-bit quantised."""
    resource = files("skimage.data").joinpath(SOURCE_FILES[name])
    with resource.open("rb") as f, Image.open(f) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)


def _to_uint8(x: Any) -> Any:
    """(..., 3, H, W) floats in [0, 1] -> uint8 (..., H, W, 3), rounded like an 8-bit file."""
    return (x.clamp(0, 1) * 255.0).round().to(dtype=torch.uint8).movedim(-3, -1).contiguous()


def _save_png(arr: Any, path: Path) -> None:
    """Save a (H, W, 3) uint8 tensor as PNG."""
    Image.fromarray(arr.numpy()).save(path, format="PNG", compress_level=1)


# pseudo-MOS transform per supported metric: higher is better, in [0, 1]
_TO_PSEUDO_MOS = {
    "gmsd": lambda v: 1.0 - v,  # GMSD is a deviation: 0 = identical
    "fsim": lambda v: v,
    "vsi": lambda v: v,
    "ssim": lambda v: v,
    "ms_ssim": lambda v: v,
}


def _fr_metric(name: str) -> Any:
    import pyiqa  # lazy: seconds to import; only building the demo set needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pyiqa.create_metric(name, device="cpu")
        except Exception as err:  # pyiqa raises URLError & co. when weights are needed
            raise RuntimeError(
                f"demo: the full-reference metric {name!r} is not available offline ({type(err).__name__}: {err}); "
                "use one that needs no weights (fsim, ms_ssim, ssim, vsi, gmsd, vif)"
            ) from err


def build_demo(spec: DatasetSpec, cache_dir: Path | str, *, force: bool = False) -> Path:
    """Build the demo set (or reuse the cached one) and return its folder.

    Args:
        spec: the ``demo`` registry entry (its ``options`` are the recipe).
        cache_dir: cache folder.
        force: rebuild even when cached.

    Returns:
        The folder holding ``meta.csv``, ``ref/`` and ``dist/``.

    Raises:
        ValueError: the recipe is inconsistent (unknown source, count != ``n_images``).
        RuntimeError: the pseudo-MOS metric cannot run offline.
    """
    root = demo_root(spec, Path(cache_dir))
    if (root / _META).is_file() and not force:
        return root
    recipe = _recipe(spec)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    (tmp / "ref").mkdir(parents=True)
    (tmp / "dist").mkdir()
    start = time.perf_counter()
    try:
        metric = _fr_metric(recipe["pseudo_mos_metric"])
        to_mos = _TO_PSEUDO_MOS[recipe["pseudo_mos_metric"]]
        sources = recipe["sources"]
        refs = torch.stack([_load_source(src, recipe["size"]) for src in sources])  # (S, 3, H, W)
        for src, ref in zip(sources, _to_uint8(refs)):
            _save_png(ref, tmp / "ref" / f"{src}.png")
        sevs = recipe["severities"]
        x = refs.repeat_interleave(len(sevs), dim=0)  # (S * L, 3, H, W): source-major, then severity
        sev = torch.tensor(sevs * len(sources), dtype=torch.float64)
        owner = [src for src in sources for _ in sevs]
        rows: dict[tuple[str, str, float], str] = {}
        for d_index, dist in enumerate(recipe["distortions"]):
            # one seeded generator per distortion type; the whole batch is drawn from it
            gen = torch.Generator().manual_seed(recipe["seed"] * 1_000_003 + d_index)
            y8 = _to_uint8(distort(x, dist, sev, generator=gen))  # what the PNG files hold
            y = y8.movedim(-1, -3).float().div(255.0)
            with torch.no_grad():
                scores = metric(y, x).reshape(-1).tolist()
            for i, (src, level, raw) in enumerate(zip(owner, sev.tolist(), scores)):
                name = f"dist/{src}__{dist}__s{level:g}.png"
                score = to_mos(raw)
                if score != score:
                    raise RuntimeError(f"demo: {recipe['pseudo_mos_metric']} gave NaN for {name}")
                _save_png(y8[i], tmp / name)
                rows[(src, dist, level)] = f"{name},{score:.6f},{src},{dist},{level:g}"
        lines = ["image,mos,ref,distortion,severity"]
        lines += [
            rows[(src, dist, float(level))] for src in sources for dist in recipe["distortions"] for level in sevs
        ]
        (tmp / _META).write_text("\n".join(lines) + "\n", encoding="utf-8")
        info = {
            "recipe": recipe,
            "labels": f"pseudo-MOS from {recipe['pseudo_mos_metric']} (full-reference metric), not human opinion",
            "seconds": round(time.perf_counter() - start, 3),
            "versions": _versions(),
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            if force and root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        except OSError:
            if not (root / _META).is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("shamisa-bench", "pyiqa", "torch", "scikit-image", "Pillow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def read_demo(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> Any:
    """Read a built demo folder's ``meta.csv`` (a generic CSV with ref and distortion columns)."""
    csv_spec = dataclasses.replace(
        spec,
        options={
            "csv": _META,
            "image_column": "image",
            "mos_column": "mos",
            "ref_column": "ref",
            "extra_columns": ["distortion", "severity"],
        },
    )
    result = read_csv_dataset(csv_spec, layout, root, label_file)
    rows = [dataclasses.replace(r, extra={**r.extra, "severity": float(r.extra["severity"])}) for r in result.rows]
    return dataclasses.replace(result, rows=rows)
