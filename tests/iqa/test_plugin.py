"""Tests for the pyiqa integration: registration, the SHAMISA arch, weight resolution.

A tiny random-init ResNet-18 export and a random head (padding target 96 px) stand in for
real weights, so nothing is downloaded and every test runs on CPU in seconds.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import shamisa_bench
from shamisa_bench.archs import shamisa_arch
from shamisa_bench.archs.shamisa_arch import (
    ENCODER_ENV,
    HEAD_ENV,
    SHAMISA,
    WeightsNotFoundError,
    resolve_weights,
)
from shamisa_bench.iqa.head import HeadError, save_head, scale_mos
from tests import REPO
from tests.helpers import MIN_SIZE, random_head, tiny_export

pyiqa = pytest.importorskip("pyiqa")
from pyiqa.default_model_configs import DEFAULT_CONFIGS
from pyiqa.utils.registry import ARCH_REGISTRY

from shamisa_bench import pyiqa_plugin as legacy_plugin
from shamisa_bench.iqa import plugin as pyiqa_plugin
from shamisa_bench.iqa import weights as iqa_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shamisa-weights")
    export = tiny_export(root, seed=3)
    sha = shamisa_bench.model.read_encoder_export(export).weights_sha256
    head = save_head(random_head(1024, sha), root / "head.pt")
    crops = save_head(random_head(1024, sha, feature_mode="crops5", crop_size=64), root / "head-crops5.pt")
    other = save_head(random_head(1024, "0" * 64), root / "head-other-encoder.pt")
    return {"root": root, "export": export, "head": head, "crops5": crops, "other": other}


@pytest.fixture(scope="module")
def metric(weights: dict[str, Path]) -> torch.nn.Module:
    pyiqa_plugin.register()
    return pyiqa.create_metric(
        "shamisa", device="cpu", pretrained_model_path=str(weights["export"]), head_path=str(weights["head"])
    )


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SHAMISA env vars; TORCH_HOME is an empty tmp folder; nothing ships in the package."""
    monkeypatch.delenv(ENCODER_ENV, raising=False)
    monkeypatch.delenv(HEAD_ENV, raising=False)
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(iqa_weights, "shipped_dir", lambda: tmp_path / "no-shipped-weights")
    return home


def _images(n: int, h: int = 96, w: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


_SCRIPTS = {
    # pyiqa alone registers the metrics (the installed .pth hook, test_plugin_install.py);
    # then the `import pyiqa, shamisa_bench` order and create_metric
    "pyiqa_first": """
        import sys
        import pyiqa
        from pyiqa.utils.registry import ARCH_REGISTRY
        print('shamisa_bench' in sys.modules, 'SHAMISA' in ARCH_REGISTRY, ARCH_REGISTRY.get('SHAMISA').__module__)
        import shamisa_bench
        m = pyiqa.create_metric('shamisa', device='cpu', pretrained_model_path=sys.argv[1], head_path=sys.argv[2])
        import torch
        s = m(torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
        print(tuple(s.shape), 'shamisa' in pyiqa.list_models(metric_mode='NR'), m.lower_better)
        """,
    # `import shamisa_bench, pyiqa`: the import itself loads neither pyiqa nor torch
    "shamisa_first": """
        import sys
        import shamisa_bench
        print('pyiqa' in sys.modules, 'torch' in sys.modules)
        import pyiqa
        m = pyiqa.create_metric('shamisa', device='cpu', pretrained_model_path=sys.argv[1], head_path=sys.argv[2])
        import torch
        print(float(m(torch.rand(1, 3, 96, 96)).reshape(())) >= 0.0, 'shamisa' in pyiqa.list_models(metric_mode='NR'))
        """,
}


@pytest.fixture(scope="module")
def fresh_interpreters(weights: dict[str, Path]) -> dict[str, str]:
    """Run each script of ``_SCRIPTS`` in its own fresh interpreter (concurrently); stdout by name."""
    env = dict(os.environ)
    env.pop(ENCODER_ENV, None)
    env.pop(HEAD_ENV, None)
    env["OMP_NUM_THREADS"] = "1"
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(weights["export"]), str(weights["head"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for name, code in _SCRIPTS.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)  # a hang guard: a busy machine is slow
        assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
        out[name] = stdout
    return out


# ----------------------------------------------------------------------------- registration


@pytest.mark.slow
def test_create_metric_after_import_pyiqa_first(fresh_interpreters: dict[str, str]) -> None:
    lines = fresh_interpreters["pyiqa_first"].splitlines()
    assert lines[0].split() == ["True", "True", "shamisa_bench.archs.shamisa_arch"]
    assert lines[1].split() == ["(2,", "1)", "True", "False"]


@pytest.mark.slow
def test_create_metric_after_import_shamisa_first_and_import_is_cheap(fresh_interpreters: dict[str, str]) -> None:
    assert fresh_interpreters["shamisa_first"].split() == ["False", "False", "True", "True"]


def test_entry_point_declared_and_registers_the_arch() -> None:
    eps = [ep for ep in importlib.metadata.entry_points(group="pyiqa.archs") if ep.name == "shamisa"]
    assert len(eps) == 1, "reinstall the project (pip install -e .) so its entry points are in the metadata"
    declared = "shamisa_bench.iqa.plugin:register"
    assert f'[project.entry-points."pyiqa.archs"]\nshamisa = "{declared}"' in (REPO / "pyproject.toml").read_text()
    # an install made before the plugin moved still names shamisa_bench.pyiqa_plugin: both must work
    assert eps[0].value in (declared, "shamisa_bench.pyiqa_plugin:register")
    assert eps[0].load() is pyiqa_plugin.register
    assert legacy_plugin.register is pyiqa_plugin.register


def test_register_is_idempotent_and_lists_metrics() -> None:
    first = pyiqa_plugin.register()
    snapshot = {k: dict(v) for k, v in DEFAULT_CONFIGS.items() if k.startswith("shamisa")}
    second = pyiqa_plugin.register()
    pyiqa_plugin.register_when_pyiqa_loads()
    assert first == second and "shamisa" in first
    assert {k: dict(v) for k, v in DEFAULT_CONFIGS.items() if k.startswith("shamisa")} == snapshot
    assert ARCH_REGISTRY.get("SHAMISA") is SHAMISA
    assert "shamisa" in pyiqa.list_models(metric_mode="NR")
    assert "shamisa" not in pyiqa.list_models(metric_mode="FR")
    cfg = DEFAULT_CONFIGS["shamisa"]
    assert cfg["metric_mode"] == "NR" and cfg["score_range"] == "0, 1" and cfg["lower_better"] is False
    assert cfg["metric_opts"] == {"type": "SHAMISA", "head_dataset": "default"}


def test_shipped_heads_become_variants(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "heads").mkdir()
    for name in ("live", "koniq10k", "default"):
        (tmp_path / "heads" / f"{name}.pt").write_bytes(b"")
    monkeypatch.setattr(iqa_weights, "shipped_dir", lambda: tmp_path)
    assert shamisa_arch.shipped_head_datasets() == ("koniq10k", "live")
    try:
        names = pyiqa_plugin.register()
        assert set(names) == {"shamisa", "shamisa-koniq10k", "shamisa-live", "shamisa-fr"}
        nr = pyiqa.list_models(metric_mode="NR")
        assert "shamisa-live" in nr and "shamisa-koniq10k" in nr
        assert DEFAULT_CONFIGS["shamisa-live"]["metric_opts"]["head_dataset"] == "live"
    finally:
        for name in ("shamisa-live", "shamisa-koniq10k"):
            DEFAULT_CONFIGS.pop(name, None)


def test_register_leaves_a_foreign_entry_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = {"metric_opts": {"type": "Other"}, "metric_mode": "NR", "score_range": "0, 1"}
    monkeypatch.setitem(DEFAULT_CONFIGS, "shamisa", foreign)
    with pytest.warns(RuntimeWarning, match="leaves it alone"):
        names = pyiqa_plugin.register()
    assert "shamisa" not in names and DEFAULT_CONFIGS["shamisa"] is foreign


# ----------------------------------------------------------------------------- scoring


def test_scores_deterministic_in_range_one_per_image(metric: torch.nn.Module, weights: dict[str, Path]) -> None:
    x = _images(3)
    a, b = metric(x), metric(x)
    assert a.shape == (3, 1)
    assert torch.equal(a, b)
    assert bool(((a >= 0) & (a <= 1)).all())
    assert len(set(a.flatten().tolist())) == 3, "different images should get different scores"
    singles = torch.cat([metric(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(singles, a, rtol=1e-5, atol=1e-6)
    again = pyiqa.create_metric(
        "shamisa", device="cpu", pretrained_model_path=str(weights["export"]), head_path=str(weights["head"])
    )
    assert torch.equal(again(x), a)
    assert metric.lower_better is False and metric.score_range == "0, 1"


def test_file_pil_and_tensor_inputs_agree(metric: torch.nn.Module, tmp_path: Path) -> None:
    from PIL import Image

    arr = (np.random.default_rng(0).random((100, 120, 3)) * 255).astype(np.uint8)
    pil = Image.fromarray(arr, "RGB")
    path = tmp_path / "img.png"
    pil.save(path)
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float().div(255).unsqueeze(0)
    s_tensor = metric(tensor)
    torch.testing.assert_close(metric(str(path)), s_tensor)
    torch.testing.assert_close(metric(pil), s_tensor)

    # RGBA: alpha dropped; grayscale: repeated to RGB (PIL and 1-channel tensor agree)
    rgba = Image.fromarray(np.dstack([arr, np.full(arr.shape[:2], 77, np.uint8)]), "RGBA")
    torch.testing.assert_close(metric(rgba), s_tensor)
    gray = pil.convert("L")
    gray.save(tmp_path / "gray.png")
    g_tensor = torch.from_numpy(np.array(gray)).float().div(255)[None, None]
    s_gray = metric(g_tensor)
    torch.testing.assert_close(metric(gray), s_gray)
    torch.testing.assert_close(metric(str(tmp_path / "gray.png")), s_gray)
    assert 0.0 <= float(s_gray) <= 1.0


def test_small_images_are_zero_padded(metric: torch.nn.Module) -> None:
    x = _images(1, 40, 70, seed=4)
    padded = torch.zeros(1, 3, MIN_SIZE, MIN_SIZE)
    padded[:, :, :40, :70] = x
    s = metric(x)
    assert 0.0 <= float(s) <= 1.0
    torch.testing.assert_close(s, metric(padded))


def test_to_after_creation(weights: dict[str, Path]) -> None:
    m = pyiqa.create_metric(
        "shamisa", device="cpu", pretrained_model_path=str(weights["export"]), head_path=str(weights["head"])
    )
    x = _images(2, seed=5)
    ref = m(x)
    m.to(torch.float64)
    assert m.net.head.linear.weight.dtype == torch.float64
    out = m(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), ref, rtol=1e-4, atol=1e-5)
    m.to(torch.float32)
    if torch.cuda.is_available():
        m.to("cuda")
        torch.testing.assert_close(m(x.cuda()).cpu(), ref, rtol=1e-3, atol=1e-3)
    m.train()  # the frozen encoder must stay in eval mode
    assert not m.net.encoder.training
    torch.testing.assert_close(m(x.to(next(m.net.parameters()).device)).cpu(), ref, rtol=1e-3, atol=1e-3)


def test_as_loss_gradient_reaches_input(weights: dict[str, Path]) -> None:
    loss_metric = pyiqa.create_metric(
        "shamisa",
        as_loss=True,
        device="cpu",
        pretrained_model_path=str(weights["export"]),
        head_path=str(weights["head"]),
    )
    x = _images(1, seed=6).requires_grad_(True)
    loss = loss_metric(x)
    assert loss.dim() == 0 and loss.requires_grad
    loss.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in loss_metric.net.parameters())


def test_crops5_feature_mode_and_its_override(weights: dict[str, Path]) -> None:
    m = pyiqa.create_metric(
        "shamisa", device="cpu", pretrained_model_path=str(weights["export"]), head_path=str(weights["crops5"])
    )
    assert m.net.feature_mode == "crops5" and m.net.crop_size == 64
    s = m(_images(1, 100, 130, seed=7))
    assert s.shape == (1, 1) and bool(((s >= 0) & (s <= 1)).all())
    with pytest.warns(UserWarning, match="fit on 'whole' features"):
        net = SHAMISA(weights["export"], weights["head"], feature_mode="crops5")
    assert net.feature_mode == "crops5"


def test_protocol_keyword_is_the_former_name_of_feature_mode(weights: dict[str, Path]) -> None:
    with pytest.warns(UserWarning, match="fit on 'whole' features"):
        net = SHAMISA(weights["export"], weights["head"], protocol="crops5")
    assert net.feature_mode == "crops5"
    with pytest.raises(ValueError, match="disagree"):
        SHAMISA(weights["export"], weights["head"], feature_mode="whole", protocol="crops5")
    with pytest.raises(ValueError, match="unknown feature mode"):
        SHAMISA(weights["export"], weights["head"], feature_mode="tiles")


def test_scale_mos_direction_and_clip() -> None:
    mos = torch.tensor([1.0, 50.5, 100.0, 150.0, -20.0], requires_grad=True)
    up = scale_mos(mos, (1.0, 100.0), lower_better=False)
    down = scale_mos(mos, (1.0, 100.0), lower_better=True)
    torch.testing.assert_close(up.detach(), torch.tensor([0.0, 0.5, 1.0, 1.0, 0.0]))
    torch.testing.assert_close(down.detach(), torch.tensor([1.0, 0.5, 0.0, 0.0, 1.0]))
    down.sum().backward()
    # the clip is straight-through: every element, clipped or not, passes a gradient
    torch.testing.assert_close(mos.grad, torch.full((5,), -1.0 / 99.0))


# ----------------------------------------------------------------------------- weights


def test_missing_weights_error_says_how_to_get_them(clean_env: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        pyiqa.create_metric("shamisa", device="cpu")
    msg = str(info.value)
    for needle in (
        "no SHAMISA encoder export found",
        "shamisa-bench pretrain",
        "shamisa-bench fit-head",
        ENCODER_ENV,
        HEAD_ENV,
        "pretrained_model_path=",
        str(clean_env / "shamisa" / "encoder"),
        "no weights ship with this installation",
    ):
        assert needle in msg, needle


def test_shipped_weights_score_offline_with_no_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hashlib

    monkeypatch.delenv(ENCODER_ENV, raising=False)
    monkeypatch.delenv(HEAD_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-home"))
    shipped = shamisa_arch.shipped_dir()
    # every shipped file is listed with its sha256, and the encoder is the fp16 export (<= 12 MB)
    sums = dict(reversed(line.split(maxsplit=1)) for line in (shipped / "SHA256SUMS").read_text().splitlines())
    files = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file() and p.suffix != ".md"
                   and p.name != "SHA256SUMS")
    assert sorted(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((shipped / name).read_bytes()).hexdigest() == digest, name
    assert (shipped / "encoder" / "encoder.pt").stat().st_size <= 12 * 1024 * 1024
    pyiqa_plugin.register()
    assert {"shamisa", "shamisa-clivedev"} <= set(pyiqa.list_models(metric_mode="NR"))
    for name in ("shamisa", "shamisa-clivedev"):
        m = pyiqa.create_metric(name, device="cpu")
        assert m.net.weights.encoder_source == "shipped" and m.net.weights.head_source == "shipped"
        scores = m(_images(2, 224, 256))
        assert scores.shape == (2, 1) and bool(((scores >= 0) & (scores <= 1)).all())


def test_named_but_missing_paths_are_errors(clean_env: Path, weights: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="pretrained_model_path='.*nowhere' does not exist"):
        resolve_weights(tmp_path / "nowhere", weights["head"])
    env = {ENCODER_ENV: str(weights["export"]), HEAD_ENV: str(tmp_path / "gone.pt"), "TORCH_HOME": str(clean_env)}
    with pytest.raises(WeightsNotFoundError, match=r"\$SHAMISA_HEAD='.*gone.pt' does not exist"):
        resolve_weights(environ=env)
    with pytest.raises(ValueError, match="plain name"):
        resolve_weights(head_dataset="../etc")


def test_resolution_order(weights: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    cache = home / "shamisa"
    shutil.copytree(weights["export"], cache / "encoder")
    (cache / "heads").mkdir()
    shutil.copy(weights["head"], cache / "heads" / "default.pt")
    shutil.copy(weights["head"], cache / "heads" / "live.pt")
    base = {"TORCH_HOME": str(home)}

    r = resolve_weights(environ=base)
    assert (r.encoder_source, r.head_source) == ("cache", "cache")
    assert r.encoder == cache / "encoder" and r.head == cache / "heads" / "default.pt"

    env = {**base, ENCODER_ENV: str(weights["export"]), HEAD_ENV: str(weights["crops5"])}
    r = resolve_weights(environ=env)
    assert (r.encoder, r.head, r.encoder_source, r.head_source) == (weights["export"], weights["crops5"], "env", "env")

    r = resolve_weights(weights["export"], weights["head"], environ=env)
    assert (r.head, r.encoder_source, r.head_source) == (weights["head"], "keyword", "keyword")

    # a named head (shamisa-<dataset>) never comes from $SHAMISA_HEAD
    r = resolve_weights(head_dataset="live", environ=env)
    assert (r.head, r.head_source) == (cache / "heads" / "live.pt", "cache")

    # the cached default works through pyiqa with no keyword at all
    m = SHAMISA(environ=base)
    assert m.weights.encoder_source == "cache" and m(_images(1)).shape == (1, 1)


def test_head_for_another_encoder_is_rejected(weights: dict[str, Path]) -> None:
    with pytest.raises(HeadError, match="head was fit on encoder weights 000000000000"):
        SHAMISA(weights["export"], weights["other"])
