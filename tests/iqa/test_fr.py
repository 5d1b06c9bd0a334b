"""Tests for SHAMISA's full-reference extension: ``pyiqa.create_metric('shamisa-fr')``, the
feature distance, the FR head and its refusal by the NR metric (and the other way round).

A tiny random-init ResNet-18 export stands in for real weights (padding target 96 px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import shamisa_bench
from shamisa_bench.archs.shamisa_arch import SHAMISA
from shamisa_bench.archs.shamisa_fr_arch import FR_HEAD_ENV, SHAMISAFR
from shamisa_bench.common.imageio import load_image
from shamisa_bench.iqa.fr import (
    feature_distance,
    fit_anchored_path,
    fit_fr_head,
    load_fr_head,
    save_fr_head,
)
from shamisa_bench.iqa.head import FitConfig, HeadError, load_head, save_head
from tests.helpers import MIN_SIZE, random_head, tiny_export, write_photo

pyiqa = pytest.importorskip("pyiqa")
from shamisa_bench.iqa import plugin

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shamisa-fr-weights")
    export = tiny_export(root, seed=3)
    sha = shamisa_bench.model.read_encoder_export(export).weights_sha256
    nr_head = save_head(random_head(1024, sha), root / "nr-head.pt")
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(40, 1, 1024, generator=gen) * 0.05
    mos = 5.0 - 40.0 * u.mean(dim=(1, 2)).numpy() + 0.01 * torch.randn(40, generator=gen).numpy()
    head = fit_fr_head(u.numpy(), mos, mos_range=(1.0, 5.0), lower_better=False, dataset="unit-fr",
                       feature_mode="whole", min_size=MIN_SIZE, encoder_sha256=sha, backbone="resnet18",
                       groups=[i // 4 for i in range(40)], config=FitConfig(n_splits=3))
    fr_head = save_fr_head(head, root / "fr-head.pt")
    return {"export": export, "nr_head": nr_head, "fr_head": fr_head}


@pytest.fixture(scope="module")
def metric(weights: dict[str, Path]) -> torch.nn.Module:
    plugin.register()
    return pyiqa.create_metric("shamisa-fr", device="cpu", pretrained_model_path=str(weights["export"]),
                               min_size=MIN_SIZE)


def _pair(seed: int = 0, h: int = 72, w: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ref = torch.rand(2, 3, h, w, generator=gen)
    dist = (ref + 0.2 * torch.randn(2, 3, h, w, generator=gen)).clamp(0, 1)
    return dist, ref


def test_registered_as_fr_lower_better(metric: torch.nn.Module) -> None:
    assert metric.metric_mode == "FR"
    assert metric.lower_better is True
    assert isinstance(metric.net, SHAMISAFR) and metric.net.mode == "distance"


def test_identical_pair_scores_exactly_zero_and_distortion_scores_more(metric: torch.nn.Module) -> None:
    dist, ref = _pair()
    same = metric(ref, ref.clone())
    assert same.shape == (2, 1)
    assert torch.equal(same, torch.zeros(2, 1))
    other = metric(dist, ref)
    assert bool((other > 0).all()) and bool((other <= 1).all())
    milder = metric(ref + 0.2 * (dist - ref), ref)  # a fifth of the same noise: a smaller distance
    assert bool((milder < other).all())


def test_paths_pil_and_tensors_give_one_score(metric: torch.nn.Module, tmp_path: Path) -> None:
    ref_path = write_photo(tmp_path / "ref.png")
    arr = np.asarray(Image.open(ref_path)).astype(np.int16)
    noisy = np.clip(arr + np.random.default_rng(0).integers(-40, 41, arr.shape), 0, 255).astype(np.uint8)
    dist_path = tmp_path / "dist.png"
    Image.fromarray(noisy).save(dist_path)
    by_path = metric(str(dist_path), str(ref_path))
    by_pil = metric(Image.open(dist_path), Image.open(ref_path))
    by_tensor = metric(load_image(dist_path).unsqueeze(0), load_image(ref_path))
    assert float(by_path) > 0
    assert torch.equal(by_path, by_pil) and torch.equal(by_path, by_tensor)
    assert float(metric(str(ref_path), str(ref_path))) == 0.0


def test_one_loader_shared_with_shamisa(metric: torch.nn.Module, tmp_path: Path) -> None:
    assert SHAMISAFR.prepare_inputs is SHAMISA.prepare_inputs
    good = write_photo(tmp_path / "good.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    for args in ((str(bad), str(good)), (str(good), str(bad))):  # the reference is read by it too
        with pytest.raises(ValueError, match="broken.png"):
            metric(*args)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric(torch.full((1, 3, 72, 72), 255.0), torch.rand(1, 3, 72, 72))


def test_pair_of_different_sizes_is_refused(metric: torch.nn.Module) -> None:
    dist, ref = _pair()
    with pytest.raises(ValueError, match="72x80 pixels but its reference is 72x64"):
        metric(dist, ref[..., :64])


def test_feature_distance_range_and_symmetry() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 5, 16, generator=gen), torch.randn(4, 5, 16, generator=gen)
    d = feature_distance(a, b)
    assert d.shape == (4,)
    assert bool(((d >= 0) & (d <= 1)).all())
    assert torch.allclose(d, feature_distance(b, a))
    assert torch.allclose(feature_distance(a, -a), torch.ones(4))  # opposite features: 1
    assert torch.equal(feature_distance(a, a.clone()), torch.zeros(4))


def test_anchored_ridge_has_no_intercept() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((30, 6))
    w_true = np.array([-1.0, -2.0, 0.0, 0.5, -0.3, 0.0])
    w = fit_anchored_path(x, x @ w_true, [1e-8, 1e3])
    assert np.allclose(w[0], w_true, atol=1e-4)
    assert np.abs(w[1]).sum() < np.abs(w[0]).sum()  # shrinks


def test_fr_head_mode_scores_identical_pair_zero_and_ranks(weights: dict[str, Path]) -> None:
    plugin.register()
    m = pyiqa.create_metric("shamisa-fr", device="cpu", pretrained_model_path=str(weights["export"]),
                            head_path=str(weights["fr_head"]))
    assert m.net.mode == "head" and m.net.min_size == MIN_SIZE
    dist, ref = _pair(seed=2)
    assert torch.equal(m(ref, ref.clone()), torch.zeros(2, 1))
    scores = m(dist, ref)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    head = load_fr_head(weights["fr_head"])
    assert float(head.feature_mean.abs().max()) == 0.0 and head.bias == 5.0  # anchored at the best label


def test_fr_head_from_environment(weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FR_HEAD_ENV, str(weights["fr_head"]))
    assert SHAMISAFR(pretrained_model_path=weights["export"]).mode == "head"


def test_nr_metric_refuses_fr_head_and_fr_metric_refuses_nr_head(weights: dict[str, Path]) -> None:
    with pytest.raises(HeadError, match="full-reference head.*shamisa-fr"):
        load_head(weights["fr_head"])
    with pytest.raises(HeadError, match="full-reference head"):
        SHAMISA(pretrained_model_path=weights["export"], head_path=weights["fr_head"])
    with pytest.raises(HeadError, match="no-reference head.*fit-head --fr"):
        SHAMISAFR(pretrained_model_path=weights["export"], head_path=weights["nr_head"])


def _pair_csv(folder: Path, with_ref: bool = True) -> Path:
    rng = np.random.default_rng(0)
    rows = ["image,ref,mos" if with_ref else "image,mos"]
    for r in range(4):
        ref = rng.uniform(0.2, 0.8, (64, 64, 3))
        Image.fromarray((ref * 255).astype(np.uint8)).save(folder / f"ref{r}.png")
        for k, sigma in enumerate((0.02, 0.1, 0.3)):
            dist = np.clip(ref + rng.normal(0, sigma, ref.shape), 0, 1)
            Image.fromarray((dist * 255).astype(np.uint8)).save(folder / f"d{r}_{k}.png")
            rows.append(f"d{r}_{k}.png," + (f"ref{r}.png," if with_ref else "") + f"{5 - 10 * sigma:.3f}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def test_fit_head_fr_from_csv(weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shamisa_bench.cli import main

    csv = _pair_csv(tmp_path)
    out = tmp_path / "fr.pt"
    args = ["fit-head", "--fr", "--encoder", str(weights["export"]), "--csv", str(csv), "--out", str(out),
            "--min-size", str(MIN_SIZE), "--n-splits", "2", "--val-fraction", "0.5", "--device", "cpu"]
    assert main(args) == 0
    assert '"mode": "FR"' in capsys.readouterr().out
    head = load_fr_head(out)
    assert head.n_train == 12 and head.bias == pytest.approx(max(head.mos_range))
    with pytest.raises(HeadError, match="full-reference head"):
        load_head(out)
    nocsv = tmp_path / "noref"
    nocsv.mkdir()
    assert main([*args[:5], str(_pair_csv(nocsv, with_ref=False)), *args[6:]]) != 0
    assert "needs a 'ref' column" in capsys.readouterr().err
