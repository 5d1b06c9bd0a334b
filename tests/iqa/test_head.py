"""Tests for shamisa_bench.iqa.head (format, fitting, preprocessing) and the fit-head CLI.

The generated dataset: seeded random textures at 64-96 px, blurred at four levels; quality
is the blur level (sharper = better), so a head on a random-init encoder can learn it.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy.stats import spearmanr

from shamisa_bench import cli
from shamisa_bench.archs.shamisa_arch import SHAMISA
from shamisa_bench.iqa.head import (
    FitConfig,
    HeadError,
    QualityHead,
    extract_features,
    fit_head,
    load_head,
    prepare_images,
    save_head,
    scale_mos,
    validation_splits,
)
from shamisa_bench.iqa.ridge import fit_ridge
from shamisa_bench.model import load_encoder_export
from tests.helpers import (
    MIN_SIZE,
    csv_dataset_yaml,
    tiny_export,
    write_labelled_images,
    write_text,
)

SIGMAS = (0.0, 1.0, 2.0, 3.5)  # blur level 0..3; quality = 3 - level


pytestmark = pytest.mark.usefixtures("one_thread")


def blur_images(n: int, seed: int) -> tuple[list[torch.Tensor], np.ndarray]:
    """n images (3, s, s), s in [64, 96], and their quality 3 - blur level (levels cycle)."""
    gen = torch.Generator().manual_seed(seed)
    images, quality = [], []
    for i in range(n):
        side = int(torch.randint(64, 97, (1,), generator=gen))
        base = torch.rand(3, side, side, generator=gen)
        level = i % len(SIGMAS)
        sigma = SIGMAS[level]
        img = base if sigma == 0 else TF.gaussian_blur(base, [2 * math.ceil(2 * sigma) + 1] * 2, [sigma, sigma])
        images.append(img.clamp(0, 1))
        quality.append(float(len(SIGMAS) - 1 - level))
    return images, np.array(quality)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("heads")
    export = tiny_export(root, seed=1)
    encoder = load_encoder_export(export)
    train, q_train = blur_images(24, seed=10)
    test, q_test = blur_images(12, seed=20)
    kw = {"feature_mode": "whole", "min_size": MIN_SIZE}
    return {
        "root": root,
        "export": export,
        "encoder": encoder,
        "train": train,
        "q_train": q_train,
        "x_train": extract_features(encoder, train, **kw),
        "test": test,
        "q_test": q_test,
        "x_test": extract_features(encoder, test, **kw),
    }


def _fit(setup: dict[str, object], y: np.ndarray, lower_better: bool, **kw: object) -> QualityHead:
    encoder = setup["encoder"]
    return fit_head(
        setup["x_train"],
        y,
        mos_range=(0.0, 3.0),
        lower_better=lower_better,
        dataset="blur",
        feature_mode="whole",
        min_size=MIN_SIZE,
        encoder_sha256=encoder.weights_sha256,  # type: ignore[attr-defined]
        backbone="resnet18",
        **kw,
    )


# ----------------------------------------------------------------------------- fitting


def test_fit_head_ranks_held_out_images(setup: dict[str, object], tmp_path: Path) -> None:
    head = _fit(setup, setup["q_train"], lower_better=False)
    assert head.val_srcc is not None and head.val_srcc > 0.5
    assert head.n_train == 24 and head.n_splits == 10 and 1e-3 <= head.alpha <= 1e3
    path = save_head(head, tmp_path / "blur.pt")
    metric = SHAMISA(setup["export"], path)
    with torch.no_grad():
        scores = torch.cat([metric(x) for x in setup["test"]]).flatten().numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    rho = spearmanr(scores, setup["q_test"])[0]
    assert rho > 0.5, f"held-out SRCC {rho:.3f}"


def test_lower_better_labels_keep_higher_better_scores(setup: dict[str, object]) -> None:
    dmos = 3.0 - setup["q_train"]  # 0 = sharp (best), 3 = blurriest
    head = _fit(setup, dmos, lower_better=True)
    pred = head.predict(setup["x_test"])
    assert spearmanr(pred, setup["q_test"])[0] < -0.5  # raw prediction is DMOS-like
    scores = scale_mos(torch.from_numpy(pred), head.mos_range, head.lower_better).numpy()
    assert spearmanr(scores, setup["q_test"])[0] > 0.5


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("crops", [1, 5])
def test_fit_matches_closed_form_ridge(standardize: bool, crops: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, crops, 6)) * np.array([1.0, 10.0, 0.1, 1.0, 3.0, 0.5])
    y = x.mean(axis=1) @ rng.normal(size=6) + 0.1 * rng.normal(size=30)
    head = fit_head(
        x, y, mos_range=(-5.0, 5.0), lower_better=False, dataset="synthetic", feature_mode="whole",
        config=FitConfig(alphas=(0.5,), standardize=standardize),
    )
    assert head.alpha == 0.5 and head.standardize is standardize
    ref = fit_ridge(x.reshape(-1, 6), np.repeat(y, crops), 0.5, standardize=standardize)
    expected = ref.predict(x.reshape(-1, 6)).reshape(30, crops).mean(axis=1)
    np.testing.assert_allclose(head.predict(x), expected, rtol=1e-4, atol=1e-4)
    if not standardize:
        assert torch.equal(head.feature_std, torch.ones(6))


def test_alpha_is_chosen_on_validation() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 200))  # many more features than images: needs strong ridge
    y = x[:, 0] + 0.3 * rng.normal(size=40)
    head = fit_head(x, y, mos_range=(-3.0, 3.0), lower_better=False, dataset="s", feature_mode="whole",
                    config=FitConfig(alphas=(1e-6, 1e2), seed=3))
    again = fit_head(x, y, mos_range=(-3.0, 3.0), lower_better=False, dataset="s", feature_mode="whole",
                     config=FitConfig(alphas=(1e-6, 1e2), seed=3))
    assert head.alpha == again.alpha and head.val_srcc == again.val_srcc
    assert head.val_srcc is not None and -1.0 <= head.val_srcc <= 1.0


def test_validation_splits_are_seeded_and_group_disjoint() -> None:
    groups = [f"ref{i // 5}" for i in range(40)]  # 8 references x 5 images
    a = validation_splits(40, 6, 0.25, seed=7, groups=groups)
    b = validation_splits(40, 6, 0.25, seed=7, groups=groups)
    c = validation_splits(40, 6, 0.25, seed=8, groups=groups)
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a, b))
    assert any(not np.array_equal(p[1], q[1]) for p, q in zip(a, c))
    for tr, va in a:
        assert len(va) == 10 and len(tr) == 30  # 2 of 8 references
        assert not {groups[i] for i in tr} & {groups[i] for i in va}
        assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(40))
    with pytest.raises(ValueError, match="at least 2"):
        validation_splits(3, 2, 0.5, seed=0, groups=["a", "a", "a"])


def test_fit_head_rejects_bad_input() -> None:
    x = np.zeros((10, 4))
    kw = {"mos_range": (0.0, 1.0), "lower_better": False, "dataset": "d", "feature_mode": "whole"}
    with pytest.raises(ValueError, match="at least 5"):
        fit_head(x[:4], np.arange(4.0), **kw)
    with pytest.raises(ValueError, match="all mos values are equal"):
        fit_head(x, np.ones(10), **kw)
    with pytest.raises(ValueError, match="mos has 9 values"):
        fit_head(x, np.arange(9.0), **kw)
    with pytest.raises(ValueError, match="finite"):
        fit_head(np.full((10, 4), np.nan), np.arange(10.0), **kw)
    with pytest.raises(ValueError, match="feature mode"):
        fit_head(np.random.default_rng(0).normal(size=(10, 4)), np.arange(10.0), **{**kw, "feature_mode": "tiles"})


# ----------------------------------------------------------------------------- file format


def _head(dim: int = 8) -> QualityHead:
    return QualityHead(
        weight=torch.arange(dim, dtype=torch.float32),
        bias=1.5,
        feature_mean=torch.zeros(dim),
        feature_std=torch.ones(dim),
        mos_range=(1.0, 100.0),
        lower_better=True,
        dataset="live",
        feature_mode="crops5",
        crop_size=224,
        alpha=0.25,
        n_train=545,
        n_splits=10,
        val_srcc=0.91,
        encoder_sha256="ab" * 32,
        backbone="resnet50",
    )


def test_head_roundtrip_is_a_plain_state_dict(tmp_path: Path) -> None:
    head = _head()
    path = save_head(head, tmp_path / "sub" / "live.pt")
    state = torch.load(path, weights_only=True)
    assert isinstance(state, dict)
    assert all(isinstance(v, (torch.Tensor, str, int, float, bool, type(None))) for v in state.values())
    assert state["weight"].shape == (1, 8) and state["bias"].shape == (1,)
    assert state["lower_better"] is True and state["dataset"] == "live" and state["protocol"] == "crops5"  # the feature mode, format-1 key
    loaded = load_head(path)
    assert torch.equal(loaded.weight, head.weight) and loaded.bias == head.bias
    for name in ("mos_range", "lower_better", "dataset", "feature_mode", "alpha", "n_train", "val_srcc",
                 "encoder_sha256", "backbone", "crop_size", "min_size"):
        assert getattr(loaded, name) == getattr(head, name), name
    assert loaded.package_version


class _Payload:
    pass


def test_head_files_are_never_unpickled(tmp_path: Path) -> None:
    state = _head().to_state_dict()
    state["extra"] = _Payload()
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    with pytest.raises(HeadError, match="evil.pt: not a SHAMISA head .*weights_only"):
        load_head(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"kind": "shamisa_head", "x": _Payload()}, protocol=2))
    with pytest.raises(HeadError, match="raw.pt: not a SHAMISA head"):
        load_head(raw)


def test_bad_head_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(HeadError, match="no such head file"):
        load_head(tmp_path / "missing.pt")
    with pytest.raises(HeadError, match="is a folder"):
        load_head(tmp_path)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(1, 4)}, other)
    with pytest.raises(HeadError, match="other.pt: not a SHAMISA head"):
        load_head(other)
    state = _head().to_state_dict()
    state["feature_mean"] = torch.zeros(9)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(HeadError, match="bad.pt: .*same length"):
        load_head(bad)
    state = _head().to_state_dict()
    state["format_version"] = 99
    torch.save(state, bad)
    with pytest.raises(HeadError, match="format_version 99"):
        load_head(bad)


# ----------------------------------------------------------------------------- preprocessing


def test_prepare_images_channels_and_padding() -> None:
    gray = torch.rand(2, 1, 50, 300)
    out = prepare_images(gray, 224)
    assert out.shape == (2, 3, 224, 300)
    assert torch.equal(out[:, 1, :50], gray[:, 0]) and float(out[:, :, 50:].abs().sum()) == 0.0
    rgba = torch.rand(4, 230, 240)
    assert torch.equal(prepare_images(rgba, 224), rgba[None, :3])
    with pytest.raises(TypeError, match="divide uint8 by 255"):
        prepare_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        prepare_images(torch.zeros(1, 2, 8, 8))


# ----------------------------------------------------------------------------- CLI


def _write_csv_dataset(folder: Path, n: int, seed: int) -> Path:
    images, quality = blur_images(n, seed)
    return write_labelled_images(folder, images, [q * 10 + 20 for q in quality])


def test_fit_head_cli_on_csv(setup: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _write_csv_dataset(tmp_path / "ds", 24, seed=10)
    out = tmp_path / "heads" / "blur.pt"
    rc = cli.main(["fit-head", "--encoder", str(setup["export"]), "--csv", str(csv), "--out", str(out),
                   "--min-size", str(MIN_SIZE), "--n-splits", "4", "--val-fraction", "0.25"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "labels" and summary["n_train"] == 24 and summary["n_splits"] == 4
    assert summary["mos_range"] == [20.0, 50.0] and summary["lower_better"] is False
    head = load_head(out)
    assert head.encoder_sha256 == setup["encoder"].weights_sha256  # type: ignore[attr-defined]
    assert head.min_size == MIN_SIZE and head.feature_mode == "whole"
    pred = head.predict(setup["x_test"])
    assert spearmanr(pred, setup["q_test"])[0] > 0.5


def test_fit_head_cli_names_bad_rows(setup: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _write_csv_dataset(tmp_path / "ds", 6, seed=3)
    text = csv.read_text().splitlines()
    csv.write_text("\n".join(text + ["img/nope.png,3"]) + "\n")
    args = ["fit-head", "--encoder", str(setup["export"]), "--csv", str(csv), "--out", str(tmp_path / "h.pt")]
    assert cli.main(args) == 2
    assert "labels.csv, row 8: " in capsys.readouterr().err and not (tmp_path / "h.pt").exists()
    csv.write_text("\n".join(text[:3] + ["img/00.png,abc"]) + "\n")
    assert cli.main(args) == 2
    assert "labels.csv, row 4: MOS 'abc' is not a number" in capsys.readouterr().err
    csv.write_text("file,score\nimg/00.png,1\n")
    assert cli.main(args) == 2
    assert "needs columns 'image' and 'mos'" in capsys.readouterr().err


def test_fit_head_cli_on_a_registered_dataset(
    setup: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    write_text(tmp_path / "registry" / "datasets" / "tinyblur.yaml",
               csv_dataset_yaml("tinyblur", 24, csv="dmos.csv", mos_column="dmos", kind="synthetic", label_type="dmos",
                                lower_better=True, split="reference", n_references=6, options="  ref_column: ref\n"))
    folder = tmp_path / "data" / "tinyblur"
    (folder / "img").mkdir(parents=True)
    gen = torch.Generator().manual_seed(5)
    lines = ["image,dmos,ref"]
    for ref in range(6):  # 6 references x 4 blur levels; DMOS grows with blur
        base = torch.rand(3, 80, 72, generator=gen)
        for level, sigma in enumerate(SIGMAS):
            img = base if sigma == 0 else TF.gaussian_blur(base, [2 * math.ceil(2 * sigma) + 1] * 2, [sigma, sigma])
            arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(folder / "img" / f"r{ref}_{level}.png")
            lines.append(f"img/r{ref}_{level}.png,{10 + 25 * level},r{ref}")
    (folder / "dmos.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "tinyblur.pt"
    rc = cli.main(["fit-head", "--encoder", str(setup["export"]), "--dataset", "tinyblur",
                   "--registry", str(tmp_path / "registry"), "--data-root", str(tmp_path / "data"),
                   "--out", str(out), "--min-size", str(MIN_SIZE), "--n-splits", "4", "--val-fraction", "0.34"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reference_disjoint"] is True and summary["n_train"] == 24
    head = load_head(out)
    assert head.dataset == "tinyblur" and head.lower_better is True and head.mos_range == (0.0, 100.0)
    scores = scale_mos(torch.from_numpy(head.predict(setup["x_test"])), head.mos_range, head.lower_better)
    assert spearmanr(scores.numpy(), setup["q_test"])[0] > 0.5  # higher score = sharper
