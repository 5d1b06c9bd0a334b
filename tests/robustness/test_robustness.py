"""Robustness reports on a fixture registry: a tiny suite end to end, measurements.

The fixture: 2 synthetic 32 px source images, 3 types (gaussian_blur, white_noise, jpeg) at
3 severities, 2 compositions, and dummy metrics of known behaviour:

* ``dummy-sharp``: 100 x mean absolute pixel difference (a sharpness statistic, i.e. minus
  the blur amount): it must fall strictly with blur and rise with white noise (blind);
* ``dummy-nan``: the same, NaN for every image at blur severity 4 (counted and shown);
* ``dummy-feat``: features, so a ridge head is fit on the tiny labelled csv dataset;
* ``dummy-off``: unavailable (recorded with its reason, the run goes on).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from shamisa_bench.cli import main
from shamisa_bench.robustness import (
    RobustnessParams,
    agreement,
    build_set,
    composition_sensitivity,
    invariance_spread,
    load_sources,
    type_response,
)
from tests.helpers import pattern, write_text, write_tiny_mos_set

PROTOCOL = """\
name: robustness
version: 1
kind: robustness
base_seed: 0
ratios: [0.5, 0.25, 0.25]
n_splits: 3
alpha_grid: {lo: 1.0e-3, hi: 1.0e+3, n: 7}
params:
  types: [gaussian_blur, white_noise, jpeg]
  severities: [0, 2, 4]
  compositions: {n: 2, min_distortions: 2, max_distortions: 3, sampler: uniform}
  invariance: {transforms: [hflip, shift1, rescale], rescale_factor: 0.9}
  images: {max_images: 2, size: 32}
  head: {dataset: tiny}
  blind_srcc: -0.5
"""

METRICS = {
    "dummy-sharp": "kind: dummy\nparams:\n  statistic: gradient\n",
    "dummy-nan": "kind: dummy\nparams:\n  statistic: gradient\n  nan_for: ['gaussian_blur@s4']\n",
    "dummy-feat": "kind: dummy\nparams:\n  output: features\n",
    "dummy-off": "kind: dummy\nparams:\n  unavailable: 'weights not downloaded (offline)'\n",
}


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    from PIL import Image

    reg, data, images = tmp_path / "registry", tmp_path / "data", tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray((pattern(i) * 255).astype(np.uint8)).save(images / f"src{i}.png")
    write_tiny_mos_set(data, reg)
    for name, body in METRICS.items():
        write_text(reg / f"metrics/{name}.yaml", f"name: {name}\nversion: 1\n{body}")
    write_text(reg / "protocols/robustness.yaml", PROTOCOL)
    write_text(reg / "suites/tinyrob.yaml", """\
name: tinyrob
version: 1
datasets: [tiny]
metrics: [dummy-sharp, dummy-nan, dummy-feat, dummy-off]
protocol: robustness
columns: [srcc]
higher_is_better: false
main_score: srcc
""")
    return {"registry": reg, "data": data, "images": images, "results": tmp_path / "results",
            "cache": tmp_path / "cache", "tmp": tmp_path}


def _args(env: dict[str, Path]) -> list[str]:
    return ["--suite", "tinyrob", "--registry", str(env["registry"]), "--data-root", str(env["data"]),
            "--results", str(env["results"]), "--cache-dir", str(env["cache"]), "--device", "cpu",
            "--no-progress"]


def _record(env: dict[str, Path], metric: str) -> dict:
    return json.loads((env["results"] / "robustness" / "tinyrob" / f"{metric}.json").read_text())


def test_tiny_suite_end_to_end(env, capsys):
    # `run --suite` dispatches a robustness suite, and says so; sources = the suite's dataset (tiny)
    assert main(["run", *_args(env)]) == 0
    assert "run: suite tinyrob is a robustness suite; running it as 'shamisa-bench robustness'" in capsys.readouterr().err
    # the CLI of its own, on an image folder; then again, every metric recomputed from the cache
    assert main(["robustness", *_args(env), "--images", str(env["images"])]) == 0
    assert main(["robustness", *_args(env), "--images", str(env["images"]), "--overwrite"]) == 0
    out = env["results"] / "robustness"

    sharp = _record(env, "dummy-sharp")
    assert sharp["status"] == "ok"
    assert sharp["set"]["sources"][0]["name"] == "images/src0.png"
    blur = sharp["measurements"]["types"]["gaussian_blur"]
    assert blur["srcc"] == -1.0 and blur["non_drop_fraction"] == 0.0 and blur["n_steps"] == 4
    noise = sharp["measurements"]["types"]["white_noise"]
    assert noise["srcc"] == 1.0 and noise["non_drop_fraction"] == 1.0  # blind: quality rises
    assert sharp["raw"]["grid"]["gaussian_blur"]["severities"] == [0.0, 2.0, 4.0]
    inv = sharp["measurements"]["invariance"]
    assert inv["hflip"]["max"] == pytest.approx(0.0, abs=1e-6)  # |dx| + |dy| is flip invariant
    assert sharp["measurements"]["compositions"]["n_steps"] >= 2

    nan = _record(env, "dummy-nan")
    assert nan["measurements"]["types"]["gaussian_blur"]["n_nan"] == 2  # 2 sources x severity 4
    assert nan["measurements"]["types"]["jpeg"]["n_nan"] == 0
    assert nan["nonfinite"]["n"] == 2
    assert nan["measurements"]["types"]["gaussian_blur"]["srcc"] == -1.0  # on the 2 finite levels

    feat = _record(env, "dummy-feat")
    assert feat["status"] == "ok" and feat["head"]["dataset"] == "tiny"
    assert feat["head"]["n_images"] == 12 and len(feat["head"]["head_sha256"]) == 64
    off = _record(env, "dummy-off")
    assert off["status"] == "unavailable" and "offline" in off["reason"]

    # the second run generated nothing and computed nothing: every score came from the cache
    man = json.loads((out / "tinyrob" / "run.json").read_text())
    assert man["generation_s"] == 0.0
    for m in ("dummy-sharp", "dummy-nan", "dummy-feat"):
        assert _record(env, m)["cache"]["n_computed"] == 0, m

    md = (out / "tinyrob.md").read_text()
    assert "**dummy-sharp**: blind to 1 of 3 types: white_noise." in md
    assert "gaussian_blur: 2" in md  # NaN counts per type
    assert "weights not downloaded (offline)" in md
    for png in ("tinyrob_heatmap.png", "tinyrob_curves.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000

    # `report` rebuilds the same report from the JSON files alone
    for f in ("tinyrob.md", "tinyrob_heatmap.png", "tinyrob_curves.png"):
        (out / f).unlink()
    assert main(["report", "--suite", "tinyrob", "--results", str(env["results"])]) == 0
    assert (out / "tinyrob.md").read_text() == md
    assert (out / "tinyrob_heatmap.png").is_file() and (out / "tinyrob_curves.png").is_file()


def test_empty_image_folder_is_a_clear_error(env, capsys):
    empty = env["tmp"] / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image")
    code = main(["robustness", *_args(env), "--images", str(empty), "--metrics", "dummy-sharp"])
    assert code == 2
    err = capsys.readouterr().err
    assert "empty: no image files" in err and ".png" in err


def test_unknown_metric_lists_valid_names(env, capsys):
    code = main(["robustness", *_args(env), "--images", str(env["images"]), "--metrics", "nope"])
    assert code == 2
    assert "dummy-sharp" in capsys.readouterr().err


def test_set_is_deterministic_and_dedupes_integer_levels(env):
    src = load_sources(folders=[env["images"]], max_images=2, size=32)
    params = RobustnessParams(types=("lens_blur", "white_noise"), severities=(0.0, 0.25, 0.5, 1.0))
    a, b = build_set(src, params), build_set(src, params)
    assert a.sha256 == b.sha256
    lens = next(g for g in a.grid if g.type == "lens_blur")
    assert lens.values == (1.0, 2.0) and lens.severities == (0.0, 1.0)  # 1, 1.25->1, 1.5->2, 2
    batch = next(x for x in a.batches if x.label == "white_noise")
    imgs = batch.make()
    assert len(imgs) == 8 and all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in imgs)
    assert all(np.allclose(i.numpy() * 255, np.round(i.numpy() * 255), atol=1e-4) for i in imgs)  # 8-bit
    again = batch.make()
    assert all(bool((x == y).all()) for x, y in zip(imgs, again))
    other = build_set(src, RobustnessParams(types=("lens_blur", "white_noise"), severities=(0.0, 0.25, 0.5, 1.0),
                                            seed=1))
    assert other.sha256 != a.sha256


def test_engine_change_changes_every_key(env, monkeypatch):
    from shamisa_bench.robustness import generate

    src = load_sources(folders=[env["images"]], max_images=2, size=32)
    params = RobustnessParams(types=("jpeg",), severities=(0.0, 4.0))
    before = build_set(src, params)
    monkeypatch.setattr(generate, "engine_fingerprint", lambda: "another-engine")
    after = build_set(src, params)
    keys = lambda s: {k for b in s.batches for k in b.keys}
    assert not keys(before) & keys(after)


def test_type_response_counts_nan_and_constant_sources():
    sev = [0, 1, 2, 3]
    q = np.array([[4.0, 3.0, 2.0, 1.0],        # perfect: srcc -1, every step drops
                  [1.0, 1.0, 1.0, 1.0],        # constant: counted, srcc 0
                  [3.0, np.nan, 2.5, 2.6]])    # one NaN; one rise
    r = type_response(sev, q, width=3.0)
    assert r["n_nan"] == 1 and r["n_constant"] == 1
    assert r["srcc"] == pytest.approx((-1.0 + 0.0 - 0.5) / 3)
    assert r["n_steps"] == 3 + 3 + 1 and r["non_drop_fraction"] == pytest.approx(4 / 7)
    assert r["drop"] == pytest.approx(((4 - 1) / 3 + 0 + (3 - 2.6) / 3) / 3)
    with pytest.raises(ValueError, match="shape"):
        type_response(sev, q[:, :3], width=1.0)


def test_composition_invariance_and_agreement_on_known_values():
    chains = [np.array([[5.0, 4.0, 3.0, 3.5], [2.0, 2.5, 1.0, np.nan]])]
    c = composition_sensitivity(chains)
    # steps k>=2: 4->3 (drop), 3->3.5 (rise), 2.5->1 (drop); 1->nan skipped
    assert c["lowered_fraction"] == pytest.approx(2 / 3) and c["n_steps"] == 3
    assert c["first_lowered"] == pytest.approx(0.5) and c["by_count"] == {"2": 1.0, "3": 0.0}
    assert c["full_below_pristine"] == 1.0 and c["n_nan"] == 1
    inv = invariance_spread([1.0, 2.0], {"hflip": [1.5, 2.0], "shift1": [1.0, np.nan]}, width=2.0)
    assert inv["hflip"]["max"] == 0.25 and inv["hflip"]["median"] == 0.125
    assert inv["shift1"]["n"] == 1 and inv["all"]["n"] == 1 and inv["all"]["max"] == 0.25
    ag = agreement({"a": [1, 2, 3, 4], "b": [4, 3, 2, 1], "c": [1, np.nan, 3, 4]})
    assert ag["srcc"][0][1] == pytest.approx(-1.0) and ag["srcc"][0][2] == pytest.approx(1.0)
    assert ag["n"][0][2] == 3
    assert math.isnan(agreement({"a": [1, 2], "b": [2, 1]})["srcc"][0][1])


def test_curve_styles_tell_up_to_forty_metrics_apart():
    pytest.importorskip("matplotlib")
    from shamisa_bench.robustness.report import curve_style

    styles = [curve_style(i) for i in range(40)]
    keys = {(tuple(s["color"]), s["linestyle"], s["marker"]) for s in styles}
    assert len(keys) == 40  # e.g. the 11th metric no longer looks like the 1st
    assert styles[10]["color"] == styles[0]["color"] and styles[10]["linestyle"] != styles[0]["linestyle"]
