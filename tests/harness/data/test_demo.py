"""The embedded demo set: builds offline from bundled photos, deterministic, cached, pseudo-MOS."""

from __future__ import annotations

import dataclasses
import socket
from importlib.resources import files
from pathlib import Path

import pytest

from shamisa_bench.harness.data import load_dataset, make_splits
from shamisa_bench.harness.data.demo import (
    SOURCE_FILES,
    build_demo,
    demo_cached,
    demo_root,
)
from shamisa_bench.harness.data.table import dataset_status
from shamisa_bench.harness.registry import load_registry

REG = load_registry()


def _small(**opts: object):  # type: ignore[no-untyped-def]
    """The registry's demo entry with a tiny recipe (3 photos x 2 types x 2 severities, 64 px)."""
    base = REG.dataset("demo")
    options = {
        **base.options,
        "sources": ["astronaut", "camera", "coins"],
        "distortions": ["gaussian_blur", "white_noise"],
        "severities": [1, 4],
        "size": 64,
        **opts,
    }
    n = len(options["sources"]) * len(options["distortions"]) * len(options["severities"])  # type: ignore[arg-type]
    return dataclasses.replace(base, options=options, n_images=n, n_references=len(options["sources"]))  # type: ignore[arg-type]


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the demo build must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_registry_recipe_uses_bundled_photos_only() -> None:
    spec = REG.dataset("demo")
    assert spec.pseudo_mos and spec.label_type == "pseudo-mos" and "pseudo" in spec.title.lower()
    for src in spec.options["sources"]:
        assert files("skimage.data").joinpath(SOURCE_FILES[src]).is_file(), src
    n = len(spec.options["sources"]) * len(spec.options["distortions"]) * len(spec.options["severities"])
    assert n == spec.n_images == 160
    from shamisa_bench.distortions import CATALOG

    assert set(spec.options["distortions"]) <= set(CATALOG)


def test_demo_builds_offline_and_reads_back(tmp_path: Path, no_network: None) -> None:
    spec = _small()
    table = load_dataset(spec, None, cache_dir=tmp_path)
    frame = table.frame
    assert table.pseudo_mos and table.summary()["pseudo_mos"] is True and table.layout == "demo"
    assert len(frame) == 12 and not table.partial
    assert set(frame["ref"]) == {"astronaut", "camera", "coins"}
    assert frame["mos"].between(0, 1).all()
    # more severe -> lower pseudo-MOS for every photo and type
    by = frame.set_index(["ref", "distortion", "severity"])["mos"]
    for src in ("astronaut", "camera", "coins"):
        for dist in ("gaussian_blur", "white_noise"):
            assert by[(src, dist, 1.0)] > by[(src, dist, 4.0)]
    root = demo_root(spec, tmp_path)
    assert (root / "ref" / "astronaut.png").is_file() and (root / "build.json").is_file()
    from PIL import Image

    with Image.open(frame["image"][0]) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    split = make_splits(table, seed=0)
    refs = frame["ref"].to_numpy()
    assert not set(refs[split.train]) & set(refs[split.test]) and split.method == "reference"


def test_demo_is_deterministic_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _small(sources=["chelsea", "coffee"], distortions=["jpeg"])
    a = build_demo(spec, tmp_path / "a")
    b = build_demo(spec, tmp_path / "b")
    assert (a / "meta.csv").read_bytes() == (b / "meta.csv").read_bytes()
    assert (a / "dist" / "chelsea__jpeg__s4.png").read_bytes() == (b / "dist" / "chelsea__jpeg__s4.png").read_bytes()
    assert demo_cached(spec, tmp_path / "a")
    from shamisa_bench.harness.data import demo

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a cached demo set must not be rebuilt")

    monkeypatch.setattr(demo, "distort", fail)
    assert build_demo(spec, tmp_path / "a") == a
    assert not any(p.name.startswith(".") for p in a.parent.iterdir())  # no leftover temp folder


def test_recipe_change_gets_its_own_folder_and_status_says_not_built(tmp_path: Path) -> None:
    spec = _small()
    other = _small(size=48)
    assert demo_root(spec, tmp_path) != demo_root(other, tmp_path)
    st = dataset_status(spec, cache_dir=tmp_path)
    assert not st.found and "not built" in (st.problem or "")
    assert not (tmp_path / "datasets").exists()  # checking the status builds nothing


def test_bad_recipes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown source photo"):
        build_demo(_small(sources=["lena"]), tmp_path)
    with pytest.raises(ValueError, match="makes 12 images but n_images is 5"):
        build_demo(dataclasses.replace(_small(), n_images=5), tmp_path)
    with pytest.raises(ValueError, match="pseudo_mos_metric"):
        build_demo(_small(pseudo_mos_metric="lpips"), tmp_path)
