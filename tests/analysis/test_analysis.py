"""gMAD competitions and embedding maps on a fixture registry with dummy metrics.

The fixture: 2 synthetic 176 px source images (large enough for the MS-SSIM judge), 3 types
(gaussian_blur, white_noise, jpeg) at 3 severities: a pool of 2 + 2 x 3 x 3 = 20 images, and
dummy metrics of known behaviour (``dummy-sharp``: mean gradient, ``dummy-mean``: mean
intensity, ``dummy-feat``: 10 image statistics as features, with a ridge head fit on a tiny
labelled set).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from shamisa_bench.analysis import (
    group_knn_accuracy,
    judge_pair,
    ms_ssim,
    score_pool,
    select_pairs,
    severity_srcc,
    synthetic_pool,
)
from shamisa_bench.cli import main
from shamisa_bench.harness.adapters import build_metric
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.robustness.config import RobustnessParams
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
  head: {dataset: tiny}
"""

METRICS = {
    "dummy-sharp": "kind: dummy\nparams:\n  statistic: gradient\n",
    "dummy-mean": "kind: dummy\nparams:\n  statistic: mean\n",
    "dummy-feat": "kind: dummy\nparams:\n  output: features\n",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from PIL import Image

    tmp = tmp_path_factory.mktemp("analysis")
    reg, data, sources = tmp / "registry", tmp / "data", tmp / "data" / "pristine" / "bsds500" / "test"
    sources.mkdir(parents=True)
    for i in range(2):
        Image.fromarray((pattern(i, 180) * 255).astype(np.uint8)).save(sources / f"src{i}.png")
    write_tiny_mos_set(data, reg, noise=1.0)
    for name, body in METRICS.items():
        write_text(reg / f"metrics/{name}.yaml", f"name: {name}\nversion: 1\n{body}")
    write_text(reg / "protocols/robustness.yaml", PROTOCOL)
    return {"registry": reg, "data": data, "results": tmp / "results", "cache": tmp / "cache", "tmp": tmp}


def _args(env: dict[str, Path]) -> list[str]:
    return ["--registry", str(env["registry"]), "--data-root", str(env["data"]), "--results", str(env["results"]),
            "--cache-dir", str(env["cache"]), "--device", "cpu", "--no-progress", "--image-size", "176"]


# -- gMAD pair selection ------------------------------------------------------------------------

def test_select_pairs_picks_the_attackers_extremes_among_images_the_defender_rates_alike():
    # defender: range 0..6 (two images at each end), three tight clusters at the level centres 1, 3, 5
    defender = [0, 0, 1.0, 1.01, 0.99, 3.0, 3.01, 2.99, 5.0, 5.01, 4.99, 6, 6]
    attacker = [50, -50, 3.0, 1.0, 2.0, 7.0, 9.0, 8.0, 0.5, 0.7, 0.6, 100, -100]
    pairs = select_pairs(defender, attacker, levels=3, tolerance=0.05)
    assert [p.centre for p in pairs] == pytest.approx([1.0, 3.0, 5.0])
    assert [(p.better, p.worse) for p in pairs] == [(2, 3), (6, 5), (9, 8)]
    assert [p.n_candidates for p in pairs] == [3, 3, 3]  # the extremes lie in no band
    assert all(p.band[0] < p.centre < p.band[1] for p in pairs)


def test_select_pairs_leaves_out_images_a_metric_could_not_score():
    d = np.array([0, 0, 0.5, 0.5, 0.5, 0.5, 1.5, 1.5, 2, 2])
    a = np.array([9, 9, 1.0, 2.0, np.nan, 1.5, 3.0, 4.0, 9, 9])
    pairs = select_pairs(d, a, levels=2, tolerance=0.1)
    assert [(p.better, p.worse, p.n_candidates) for p in pairs] == [(3, 2, 3), (7, 6, 2)]  # image 4 (NaN) out


def test_select_pairs_bad_inputs():
    with pytest.raises(ValueError, match="too few for 6 levels"):
        select_pairs(np.arange(5.0), np.arange(5.0), levels=6)
    with pytest.raises(ValueError, match="level 1 of 3 .* holds 0 image"):  # the centres 1/6, 1/2, 5/6 are empty
        select_pairs([0, 0, 0, 10, 10, 10.0], [1, 2, 3, 4, 5, 6.0], levels=3, tolerance=0.05)
    with pytest.raises(ValueError, match="same quality"):
        select_pairs(np.ones(8), np.arange(8.0), levels=2)
    with pytest.raises(ValueError, match="levels must be"):
        select_pairs(np.arange(8.0), np.arange(8.0), levels=0)


# -- the judge --------------------------------------------------------------------------------

def test_ms_ssim_is_one_for_equal_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 176, 176, generator=g), 5, 1, 2)[0]
    noise = torch.randn(ref.shape, generator=g)
    vals = [float(ms_ssim((ref + s * noise).clamp(0, 1), ref)) for s in (0.0, 0.03, 0.3)]
    assert vals[0] == pytest.approx(1.0, abs=1e-5)
    assert vals == sorted(vals, reverse=True) and vals[-1] < 0.8
    with pytest.raises(ValueError, match="at least 176 px"):
        ms_ssim(ref[:, :100, :100], ref[:, :100, :100])
    mild, strong = (ref + 0.03 * noise).clamp(0, 1), (ref + 0.3 * noise).clamp(0, 1)
    assert judge_pair(mild, strong, ref, ref, True)["verdict"] == "agrees"
    assert judge_pair(strong, mild, ref, ref, True)["verdict"] == "disagrees"
    tie = judge_pair(ref, ref, ref, ref, False)
    assert (tie["rule"], tie["verdict"]) == ("different-reference", "tie")


# -- gmad end to end ---------------------------------------------------------------------------

def test_gmad_cli_end_to_end(env, capsys):
    assert main(["gmad", "--defender", "dummy-sharp", "--attacker", "dummy-feat", "--levels", "2",
                 "--tolerance", "0.25", *_args(env)]) == 0
    out = env["results"] / "gmad" / "dummy-sharp-vs-dummy-feat"
    rec = json.loads((out / "gmad.json").read_text())
    assert rec["pool"]["n_images"] == 20 and rec["pool"]["kind"] == "synthetic"
    assert [d["defender"] for d in rec["directions"]] == ["dummy-sharp", "dummy-feat"]
    sharp = next(m for m in rec["metrics"] if m["name"] == "dummy-sharp")
    feat = next(m for m in rec["metrics"] if m["name"] == "dummy-feat")
    assert sharp["cache"] == {"n_cached": 0, "n_computed": 20} and feat["head"]["dataset"] == "tiny"
    for block in rec["directions"]:
        a = block["attacker"]
        assert len(block["levels"]) == 2
        for lv in block["levels"]:
            # the attacker rates the pair apart, the defender's gap stays inside the band
            assert lv["better"]["quality"][a] >= lv["worse"]["quality"][a]
            assert abs(lv["defender_gap"]) <= lv["band"][1] - lv["band"][0] + 1e-9
            assert lv["judge"]["verdict"] in ("agrees", "disagrees", "tie")
        agr = block["judge_agreement"]
        assert sum(agr["all"].values()) == 2
        assert (out / block["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "proxy, not a human study" in (out / "gmad.md").read_text()
    # the same pool again: every score from the cache
    protocol = load_registry(env["registry"]).protocol("robustness")
    pool = synthetic_pool(env["data"] / "pristine" / "bsds500" / "test", image_size=176,
                          params=RobustnessParams.from_params(protocol.params))
    assert pool.record["sha256"] == rec["pool"]["sha256"]  # the same images, under the same keys
    reg = load_registry(env["registry"])
    again = score_pool(pool, [(m, build_metric(reg.metric(m))) for m in ("dummy-sharp", "dummy-feat")],
                       cache_dir=env["cache"])
    assert [(st.n_cached, st.n_computed) for st in again] == [(20, 0), (20, 0)]
    capsys.readouterr()


def test_gmad_folder_pool_has_no_judge(env, tmp_path):
    from PIL import Image

    for i in range(8):
        Image.fromarray((pattern(40 + i, 32) * (0.3 + i / 10) * 255).clip(0, 255).astype(np.uint8)).save(
            tmp_path / f"p{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert main(["gmad", "--defender", "dummy-mean", "--attacker", "dummy-sharp", "--levels", "2",
                 "--tolerance", "0.3", "--pool", str(tmp_path), "--name", "folder", *_args(env)]) == 0
    rec = json.loads((env["results"] / "gmad" / "folder" / "gmad.json").read_text())
    assert rec["judge"]["metric"] is None and "unknown" in rec["judge"]["note"]
    assert all(d["judge_agreement"] is None for d in rec["directions"])
    mean = next(m for m in rec["metrics"] if m["name"] == "dummy-mean")
    assert mean["n_failures"] == 1 and mean["failures"][0]["name"] == "broken.png"  # counted, not dropped


@pytest.mark.parametrize("argv, message", [
    (["--defender", "no-such-metric", "--attacker", "dummy-sharp"], "no-such-metric"),
    (["--defender", "dummy-sharp", "--attacker", "dummy-sharp"], "two different metrics"),
    (["--defender", "dummy-sharp", "--attacker", "dummy-mean", "--levels", "40"], "too few for 40 levels"),
    (["--defender", "dummy-sharp", "--attacker", "dummy-mean", "--severities", "3", "1"], "increasing values in [0, 4]"),
])
def test_gmad_bad_inputs(env, capsys, argv, message):
    assert main(["gmad", *argv, *_args(env)]) == 2
    assert message in capsys.readouterr().err


def test_gmad_missing_sources_says_how_to_give_them(env, tmp_path, capsys):
    args = _args(env)
    args[args.index("--data-root") + 1] = str(tmp_path)
    assert main(["gmad", "--defender", "dummy-sharp", "--attacker", "dummy-mean", *args]) == 2
    assert "pass --sources DIR" in capsys.readouterr().err


# -- embedding maps --------------------------------------------------------------------------

def test_knn_accuracy_and_severity_srcc_on_known_points():
    # two groups in two far-apart clusters, two sources each: every neighbour from another source agrees
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [10, 10], [10, 11], [11, 10], [11, 11]], dtype=float)
    groups = ["blur"] * 4 + ["noise"] * 4
    src = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    res = group_knn_accuracy(x, groups, src, k=2)
    assert res["accuracy"] == 1.0 and res["chance"] == 0.5
    # each photograph's own images are closest, but never count: the other source's say otherwise
    near = np.array([[0, 0], [0, 0.1], [1, 0], [1, 0.1]])
    assert group_knn_accuracy(near, ["blur", "blur", "noise", "noise"], np.array([0, 0, 1, 1]), k=1)[
        "accuracy"] == 0.0
    # one source, one type: distance to the pristine point grows with severity -> SRCC 1
    pool = SimpleNamespace(types=["pristine", "jpeg", "jpeg", "jpeg", "jpeg"],
                           groups=["pristine", "compression", "compression", "compression", "compression"],
                           reference=np.zeros(5, dtype=np.intp), severity=np.array([np.nan, 0, 1, 2, 4]))
    pts = np.array([[0.0], [0.5], [1.0], [3.0], [7.0]])
    assert severity_srcc(pts, pool) == {"mean": 1.0, "per_group": {"compression": 1.0}, "n_series": 1}
    closer = np.array([[0.0], [7.0], [3.0], [1.0], [0.5]])  # moves towards the pristine image instead
    assert severity_srcc(closer, pool)["mean"] == -1.0


def test_embed_cli_pca(env, capsys):
    assert main(["embed", "--metric", "dummy-feat", "--method", "pca", *_args(env)]) == 0
    out = env["results"] / "embed" / "dummy-feat"
    rec = json.loads((out / "pca.json").read_text())
    assert rec["features"]["n_images"] == 20 and rec["features"]["dims"] == 10
    for space in ("features", "map"):
        assert 0.0 <= rec["knn_group_accuracy"][space]["accuracy"] <= 1.0
        assert -1.0 <= rec["severity_srcc"][space]["mean"] <= 1.0
        assert rec["severity_srcc"][space]["n_series"] == 6  # 2 sources x 3 types
    # a noise-free statistic of blur and noise: the features move away from pristine with severity
    assert rec["severity_srcc"]["features"]["mean"] > 0.5
    for png in ("pca-group.png", "pca-severity.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "group kNN accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("metric, message", [
    ("no-such-metric", "no-such-metric"),
    ("dummy-sharp", "outputs a score, not features"),
])
def test_embed_bad_metric(env, capsys, metric, message):
    assert main(["embed", "--metric", metric, *_args(env)]) == 2
    assert message in capsys.readouterr().err


def test_embed_tsne_without_scikit_learn_says_so_in_one_line(env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    assert main(["embed", "--metric", "dummy-feat", "--method", "tsne", *_args(env)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e .[analysis]" in err
