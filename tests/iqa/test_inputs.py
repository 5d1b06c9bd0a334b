"""Every input a user can give gets the right score or a clear refusal.

pyiqa inputs (16-bit files, PIL ``I;16``, [0, 255] and NaN tensors under ``python -O``,
truncated files, 1x1 and very large images) and the ``fit-head`` command's checks, which
all run before any feature is computed. A tiny random-init ResNet-18 export and a random
head stand in for real weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import shamisa_bench
from shamisa_bench import cli
from shamisa_bench.iqa.head import MAX_SIDE, prepare_images, save_head
from tests import REPO
from tests.helpers import MIN_SIZE, random_head, tiny_export, write_labelled_images

pyiqa = pytest.importorskip("pyiqa")
from PIL import Image

from shamisa_bench.iqa import plugin as pyiqa_plugin

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    export = tiny_export(root, seed=3)
    head = random_head(1024, shamisa_bench.model.read_encoder_export(export).weights_sha256)
    return {"export": export, "head": save_head(head, root / "head.pt")}


@pytest.fixture(scope="module")
def metric(weights: dict[str, Path]) -> torch.nn.Module:
    pyiqa_plugin.register()
    return pyiqa.create_metric(
        "shamisa", device="cpu", pretrained_model_path=str(weights["export"]), head_path=str(weights["head"])
    )


def _gray8(h: int = 100, w: int = 120) -> np.ndarray:
    return (np.random.default_rng(0).random((h, w)) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- pyiqa inputs


def test_16_bit_png_and_pil_i16_score_like_the_8_bit_image(metric: torch.nn.Module, tmp_path: Path) -> None:
    a8 = _gray8()
    Image.fromarray(a8, "L").save(tmp_path / "g8.png")
    Image.fromarray(a8.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # same picture, 16 bits
    pil16 = Image.open(tmp_path / "g16.png")
    assert pil16.mode == "I;16"
    s8 = metric(str(tmp_path / "g8.png"))
    white = metric(torch.ones(1, 1, 100, 120))
    assert not torch.allclose(s8, white)
    torch.testing.assert_close(metric(str(tmp_path / "g16.png")), s8)
    torch.testing.assert_close(metric(pil16), s8)
    torch.testing.assert_close(metric(tmp_path / "g16.png"), s8)  # a Path, too
    torch.testing.assert_close(metric((tmp_path / "g16.png").read_bytes()), s8)


def test_other_pyiqa_metrics_keep_pyiqa_s_own_loader() -> None:
    from pyiqa.models.inference_model import InferenceModel

    pyiqa_plugin.register()
    pyiqa_plugin.register()  # idempotent: wrapped once
    wrapped = InferenceModel._prepare_inputs
    assert wrapped._shamisa_wrapped and not getattr(wrapped.__wrapped__, "_shamisa_wrapped", False)

    class Other:
        net = torch.nn.Identity()
        check_input_range = True
        metric_mode = "NR"

        def _to_batched_tensor(self, img: object) -> str:
            return "pyiqa's loader"

        def is_valid_input(self, x: object) -> None:
            pass

    assert wrapped(Other(), "x.png") == ("pyiqa's loader", None)


def test_truncated_jpeg_error_names_the_file(metric: torch.nn.Module, tmp_path: Path) -> None:
    Image.fromarray(_gray8()).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.jpg: corrupt or truncated"):
        metric(str(tmp_path / "cut.jpg"))


@pytest.mark.parametrize("size", [(1, 1), (16, 200), (31, 64)])
def test_images_under_32_pixels_on_a_side_are_refused(metric: torch.nn.Module, size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="at least 32 pixels on each side"):
        metric(torch.rand(1, 3, *size))
    assert 0.0 <= float(metric(torch.rand(1, 3, 32, 32))) <= 1.0  # 32 is enough (padded to min_size)


@pytest.mark.slow
def test_bad_tensors_are_refused_under_python_O(weights: dict[str, Path]) -> None:
    """pyiqa's checks are asserts (gone under -O); ours are real if tests."""
    code = textwrap.dedent(
        """
        import sys, torch, pyiqa, shamisa_bench
        assert False, "this interpreter must run with -O (asserts stripped)"
        torch.set_num_threads(1)
        m = pyiqa.create_metric('shamisa', device='cpu', pretrained_model_path=sys.argv[1], head_path=sys.argv[2])
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        nan = x.clone(); nan[0, 1, 5, 5] = float('nan')
        for name, bad in (('255', x * 255), ('nan', nan), ('uint8', (x * 255).to(torch.uint8)), ('2d', x[0, 0])):
            try:
                print(name, 'SCORED', float(m(bad).reshape(-1)[0]))
            except (ValueError, TypeError) as err:
                print(name, type(err).__name__, err)
        print('ok', float(m(x).reshape(())) >= 0)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-O", "-c", code, str(weights["export"]), str(weights["head"])],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["255"].startswith("ValueError images must be in [0, 1]") and "divide" in lines["255"]
    assert lines["nan"] == "ValueError images contain NaN or infinite pixel values"
    assert lines["uint8"].startswith("TypeError") and lines["2d"].startswith("ValueError")
    assert lines["ok"] == "True"


def test_as_loss_and_unchecked_range_still_refuse_nan(weights: dict[str, Path]) -> None:
    m = pyiqa.create_metric("shamisa", device="cpu", pretrained_model_path=str(weights["export"]),
                            head_path=str(weights["head"]), check_input_range=False)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert m(x * 1.01).shape == (1, 1)  # out of range allowed when the user turns the check off
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        m(x)


def test_large_images_are_downscaled_to_max_side_and_smaller_ones_untouched(metric: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 40, MAX_SIDE, generator=gen)
    assert torch.equal(prepare_images(x, 32), x)  # up to MAX_SIDE: exactly as before
    big = torch.rand(1, 3, 150, 2 * MAX_SIDE + 6, generator=gen)
    small = F.interpolate(big, size=(75, MAX_SIDE), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(prepare_images(big, 32), small.clamp(0, 1))
    assert prepare_images(torch.rand(1, 3, 3000, 200), 32).shape == (1, 3, MAX_SIDE, 68)
    torch.testing.assert_close(metric(big), metric(small.clamp(0, 1)))
    with pytest.raises(ValueError, match="aspect ratio too extreme"):
        prepare_images(torch.rand(1, 3, 40, 4000), 32)


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_large_files_decode_straight_to_max_side_with_the_same_values(
    metric: torch.nn.Module, tmp_path: Path, mode: str
) -> None:
    from shamisa_bench.common.imageio import load_image

    arr = (np.random.default_rng(3).random((90, 1300, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"wide-{mode}.png"
    Image.fromarray(arr).convert(mode).save(path)
    full = load_image(path)
    assert full.shape == (3, 90, 1300)
    reduced = load_image(path, max_side=MAX_SIDE)
    assert reduced.shape == (3, 71, MAX_SIDE)
    assert torch.equal(reduced[None], prepare_images(full[None], 32))  # bit-identical to the tensor route
    assert torch.equal(load_image(path, max_side=2000), full)  # under max_side: untouched
    torch.testing.assert_close(metric(str(path)), metric(full[None]), rtol=0, atol=0)


# ----------------------------------------------------------------------------- fit-head


def _dataset(folder: Path, n: int, mos: list[float] | None = None) -> Path:
    """n small PNGs (64-80 px noise, blurred by level) and a CSV image,mos."""
    gen = torch.Generator().manual_seed(n)
    images, labels = [], []
    for i in range(n):
        side = int(torch.randint(64, 81, (1,), generator=gen))
        img = torch.rand(3, side, side, generator=gen)
        level = i % 4
        if level:
            img = F.avg_pool2d(img[None], 2 * level + 1, stride=1, padding=level)[0]
        images.append(img)
        labels.append(mos[i] if mos else 30 + 10 * (3 - level))
    return write_labelled_images(folder, images, labels)


def _fit_args(weights: dict[str, Path], csv: Path, out: Path, *extra: str) -> list[str]:
    return ["fit-head", "--encoder", str(weights["export"]), "--csv", str(csv), "--out", str(out),
            "--min-size", str(MIN_SIZE), "--n-splits", "3", "--val-fraction", "0.25", *extra]


@pytest.fixture()
def no_features(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fail the test if fit-head computes a single feature."""
    from shamisa_bench.iqa import cli as iqa_cli

    calls: list[int] = []

    def forbidden(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise AssertionError("features were computed before the input was checked")

    monkeypatch.setattr(iqa_cli, "extract_features", forbidden)
    return calls


def test_fit_head_mos_range_must_contain_the_labels(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_features: list[int]
) -> None:
    csv = _dataset(tmp_path / "ds", 24, mos=[29.5 + 44.1 * i / 23 for i in range(24)])
    out = tmp_path / "h.pt"
    assert cli.main(_fit_args(weights, csv, out, "--mos-range", "1", "5")) == 2
    err = capsys.readouterr().err
    assert "24 label(s)" in err and "outside the mos range [1, 5]" in err
    assert f"{csv}, row 2: 29.5" in err and f"{csv}, row 3:" in err and "and 19 more" in err
    assert not out.exists() and not no_features


@pytest.mark.parametrize("dup", ["img/00.png,40", "./img/00.png,99"])
def test_fit_head_csv_duplicate_images_are_refused(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_features: list[int], dup: str
) -> None:
    csv = _dataset(tmp_path / "ds", 24)
    csv.write_text(csv.read_text() + dup + "\n")
    assert cli.main(_fit_args(weights, csv, tmp_path / "h.pt")) == 2
    assert f"{csv}, row 26: duplicate image name 'img/00.png' (first on row 2)" in capsys.readouterr().err


def test_fit_head_reads_a_latin_1_csv(weights: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    csv = _dataset(tmp_path / "ds", 24)
    (tmp_path / "ds" / "img" / "00.png").rename(tmp_path / "ds" / "img" / "café.png")
    text = csv.read_text().replace("img/00.png", "img/café.png")
    csv.write_bytes(text.encode("latin-1"))
    out = tmp_path / "h.pt"
    assert cli.main(_fit_args(weights, csv, out)) == 0
    assert json.loads(capsys.readouterr().out)["n_train"] == 24 and out.is_file()


def test_fit_head_label_errors_name_the_csv(weights: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    csv = _dataset(tmp_path / "ds", 6)
    csv.write_bytes(b"image,mos\nimg/00.png,\xff\xfe3\n")  # not UTF-8: Latin-1 fallback, then a bad number
    assert cli.main(_fit_args(weights, csv, tmp_path / "h.pt")) == 2
    err = capsys.readouterr().err
    assert f"{csv}, row 2: MOS" in err and "is not a number" in err


def test_fit_head_too_few_images_is_refused_before_features(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_features: list[int]
) -> None:
    csv = _dataset(tmp_path / "ds", 12)
    args = _fit_args(weights, csv, tmp_path / "h.pt")
    args[args.index("--val-fraction") + 1] = "0.125"
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "too few images to fit a head: 12" in err and "at least 5" in err and not no_features


def test_fit_head_lists_every_bad_image_before_features(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_features: list[int]
) -> None:
    csv = _dataset(tmp_path / "ds", 24)
    (tmp_path / "ds" / "img" / "03.png").write_bytes(b"\x89PNG not really")
    data = (tmp_path / "ds" / "img" / "17.png").read_bytes()
    (tmp_path / "ds" / "img" / "17.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "ds" / "img" / "20.png")
    assert cli.main(_fit_args(weights, csv, tmp_path / "h.pt")) == 2
    err = capsys.readouterr().err
    assert "3 of 24 images cannot be used" in err
    assert "03.png: not a readable image" in err and "17.png: corrupt or truncated" in err
    assert "20.png: image is 1x1 pixels, smaller than 32" in err
    assert not no_features


def test_fit_head_out_is_checked_before_features(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_features: list[int]
) -> None:
    csv = _dataset(tmp_path / "ds", 24)
    folder = tmp_path / "existing"
    folder.mkdir()
    assert cli.main(_fit_args(weights, csv, folder)) == 2
    assert "is a folder; give the head file to write" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(_fit_args(weights, csv, blocker / "sub" / "h.pt")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert cli.main(_fit_args(weights, csv, locked / "h.pt")) == 2
        assert "cannot write in" in capsys.readouterr().err
    assert not no_features and sorted(p.name for p in folder.iterdir()) == []


def test_fit_head_cuda_without_gpu_is_a_clean_error(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_features: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    csv = _dataset(tmp_path / "ds", 24)
    assert cli.main(_fit_args(weights, csv, tmp_path / "h.pt", "--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert err.strip() == "shamisa-bench: error: --device cuda: CUDA is not available on this machine; use --device cpu"


def test_ctrl_c_in_fit_head_prints_one_line_and_exits_130(
    weights: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shamisa_bench.iqa import cli as iqa_cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(iqa_cli, "extract_features", interrupted)
    csv = _dataset(tmp_path / "ds", 24)
    out = tmp_path / "h.pt"
    try:
        rc = cli.main(_fit_args(weights, csv, out))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped cli.main: the user gets a traceback")
    assert rc == 130
    captured = capsys.readouterr()
    assert captured.err == "shamisa-bench: interrupted; rerun to resume\n" and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no partial head, no probe file
