"""Heads on ``multilevel`` features: standardisation kept in the head, the round trip through a
file and the metric, and refusal of a head of another feature mode."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from shamisa_bench.archs.shamisa_arch import SHAMISA
from shamisa_bench.iqa.head import (
    FitConfig,
    HeadError,
    extract_features,
    fit_head,
    load_head,
    save_head,
)
from shamisa_bench.model import feature_width, load_encoder_export
from tests.helpers import MIN_SIZE, random_head, tiny_export

pytestmark = pytest.mark.usefixtures("one_thread")


def _blurred(n: int, seed: int) -> tuple[list[torch.Tensor], np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    images, quality = [], []
    for i in range(n):
        base = torch.rand(3, 72, 80, generator=gen)
        sigma = (0.0, 1.5, 3.0)[i % 3]
        img = base if sigma == 0 else TF.gaussian_blur(base, [2 * math.ceil(2 * sigma) + 1] * 2, [sigma, sigma])
        images.append(img.clamp(0, 1))
        quality.append(2.0 - i % 3)
    return images, np.array(quality)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("multilevel")
    export = tiny_export(root, seed=1)
    encoder = load_encoder_export(export).eval()
    images, quality = _blurred(18, seed=3)
    x = extract_features(encoder, images, feature_mode="multilevel", min_size=MIN_SIZE)
    head = fit_head(x, quality, mos_range=(0.0, 2.0), lower_better=False, dataset="blur",
                    feature_mode="multilevel", min_size=MIN_SIZE, encoder_sha256=encoder.weights_sha256,
                    backbone="resnet18", config=FitConfig(n_splits=3))
    return {"root": root, "export": export, "encoder": encoder, "images": images, "x": x, "head": head}


def test_multilevel_head_standardises_and_predicts_as_fit(fitted: dict[str, object]) -> None:
    head, x = fitted["head"], fitted["x"]
    assert head.standardize  # forced on, although the config said off
    assert head.dim == feature_width(fitted["encoder"], "multilevel") == 4864
    rows = x.reshape(-1, head.dim).astype(np.float64)
    np.testing.assert_allclose(head.feature_mean.numpy(), rows.mean(axis=0), rtol=1e-4, atol=1e-6)
    std = rows.std(axis=0)
    live = std > 1e-6
    np.testing.assert_allclose(head.feature_std.numpy()[live], std[live], rtol=1e-3)
    with pytest.raises(ValueError, match="must standardise"):
        random_head(head.dim, None, feature_mode="multilevel")


def test_multilevel_round_trip_file_and_metric(fitted: dict[str, object], tmp_path: Path) -> None:
    head = fitted["head"]
    path = save_head(head, tmp_path / "ml.pt")
    loaded = load_head(path)
    assert loaded.feature_mode == "multilevel" and loaded.standardize
    np.testing.assert_allclose(loaded.predict(fitted["x"]), head.predict(fitted["x"]), rtol=1e-5, atol=1e-5)
    metric = SHAMISA(fitted["export"], path)
    assert metric.feature_mode == "multilevel"
    with torch.no_grad():
        scores = torch.cat([metric(img) for img in fitted["images"][:4]]).flatten().numpy()
    lo, hi = head.mos_range
    expected = np.clip((head.predict(fitted["x"][:4]) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_a_head_of_another_mode_is_refused(fitted: dict[str, object], tmp_path: Path) -> None:
    sha = fitted["encoder"].weights_sha256
    whole = save_head(random_head(1024, sha), tmp_path / "whole.pt")
    with pytest.raises(HeadError, match="'whole' head .* feature_mode='multilevel'"):
        SHAMISA(fitted["export"], whole, feature_mode="multilevel")
    multilevel = save_head(fitted["head"], tmp_path / "ml.pt")
    with pytest.raises(HeadError, match="'multilevel' head .* feature_mode='whole'"):
        SHAMISA(fitted["export"], multilevel, feature_mode="whole")
