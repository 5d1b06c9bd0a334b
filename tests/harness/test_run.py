"""The harness end to end on a fixture registry: CLI -> JSON -> table, resume, cache, bad input.

Everything lives in pytest's tmp_path: a registry with two tiny csv datasets (one MOS, one
DMOS), dummy metrics (including ones that give NaN, fail on an image, or are unavailable),
and a resnet18 random-init feature probe on 64 px images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shamisa_bench.cli import main
from shamisa_bench.harness import run as harness
from shamisa_bench.harness.adapters.dummy import DummyMetric
from shamisa_bench.harness.results import load_unit
from tests.helpers import csv_dataset_yaml, write_text

N_IMAGES = 16


def _make_dataset(root: Path, name: str, *, dmos: bool) -> None:
    from PIL import Image

    rng = np.random.default_rng(7)
    folder = root / name
    (folder / "img").mkdir(parents=True)
    rows = ["image,mos"]
    for i in range(N_IMAGES):
        level = (i + 0.5) / N_IMAGES  # brightness drives the label and the dummy metrics
        noise = rng.uniform(0, 0.15, size=(64, 64, 3))
        arr = np.clip(level * 0.8 + noise, 0, 1)
        Image.fromarray((arr * 255).astype(np.uint8)).save(folder / "img" / f"img{i:02d}.png")
        mos = 100 * level + rng.normal(0, 3)
        rows.append(f"img/img{i:02d}.png,{(100 - mos) if dmos else mos:.3f}")
    write_text(folder / "mos.csv", "\n".join(rows) + "\n")


METRICS = {
    "dummy-score": "kind: dummy\nparams:\n  statistic: mean\n",
    "dummy-lower": "kind: dummy\nlower_better: true\nparams:\n  negate: true\n",
    "dummy-feat": "kind: dummy\nparams:\n  output: features\n",
    "dummy-nan": "kind: dummy\nparams:\n  nan_for: [img03, img04]\n  fail_for: [img05]\n",
    "dummy-off": "kind: dummy\nparams:\n  unavailable: 'weights not downloaded (offline)'\n",
    "dummy-fit": "kind: dummy\nparams:\n  trained_on: [tiny]\n",
    "probe18": "kind: feature-probe\nbackbone: resnet18\ninit: random\nprotocol: whole\n",
}

PROTOCOL_YAML = """\
name: {name}
version: 1
kind: {name}
ratios: [0.5, 0.25, 0.25]
n_splits: 3
base_seed: 0
alpha_grid: {{lo: 1.0e-3, hi: 1.0e+3, n: 7}}
"""


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    return make_env(tmp_path)


def make_env(tmp_path: Path) -> dict[str, Path]:
    """The fixture registry, its two tiny datasets, and where results and the cache go."""
    reg = tmp_path / "registry"
    data = tmp_path / "data"
    _make_dataset(data, "tiny", dmos=False)
    _make_dataset(data, "tinyd", dmos=True)
    write_text(reg / "datasets/tiny.yaml", csv_dataset_yaml("tiny", N_IMAGES))
    write_text(reg / "datasets/tinyd.yaml", csv_dataset_yaml("tinyd", N_IMAGES, label_type="dmos", lower_better=True))
    for name, body in METRICS.items():
        write_text(reg / f"metrics/{name}.yaml", f"name: {name}\nversion: 1\n{body}")
    for p in ("intra", "cross"):
        write_text(reg / f"protocols/{p}.yaml", PROTOCOL_YAML.format(name=p))
    write_text(reg / "suites/tiny.yaml", """\
name: tiny
version: 1
datasets: [tiny]
metrics: [dummy-score, dummy-lower, dummy-feat, dummy-nan, dummy-off]
protocol: intra
columns: [srcc, plcc, plcc_logistic, krcc]
higher_is_better: true
main_score: srcc
""")
    write_text(reg / "suites/tinycross.yaml", """\
name: tinycross
version: 1
datasets: [tiny, tinyd]
metrics: [dummy-feat, dummy-score]
protocol: cross
pair_rule: all-ordered
columns: [srcc, plcc]
higher_is_better: true
main_score: srcc
""")
    # metrics run on their own: the fit-on-tiny head and the feature probe
    write_text(reg / "suites/tinyextra.yaml", """\
name: tinyextra
version: 1
datasets: [tiny]
metrics: [dummy-fit, probe18]
protocol: intra
columns: [srcc, plcc]
higher_is_better: true
""")
    write_text(reg / "suites/tinycrossfit.yaml", """\
name: tinycrossfit
version: 1
datasets: [tiny, tinyd]
metrics: [dummy-fit]
protocol: cross
pair_rule: all-ordered
columns: [srcc, plcc]
higher_is_better: true
""")
    return {"registry": reg, "data": data, "results": tmp_path / "results",
            "cache": tmp_path / "cache"}


def _run(env: dict[str, Path], *extra: str) -> int:
    return main(["run", "--registry", str(env["registry"]), "--data-root", str(env["data"]),
                 "--results", str(env["results"]), "--cache-dir", str(env["cache"]),
                 "--device", "cpu", "--no-progress", *extra])


def _unit(env: dict[str, Path], suite: str, proto: str, metric: str, token: str) -> dict:
    return load_unit(env["results"] / "runs" / suite / proto / metric / f"{token}.json")


def test_end_to_end_cli_json_table_and_report(env, capsys):
    assert _run(env, "--suite", "tiny") == 0
    runs = env["results"] / "runs" / "tiny" / "intra"
    assert sorted(p.parent.name for p in runs.glob("*/tiny.json")) == sorted(
        ["dummy-score", "dummy-lower", "dummy-feat", "dummy-nan", "dummy-off"])

    score = _unit(env, "tiny", "intra", "dummy-score", "tiny")
    assert score["status"] == "ok" and score["schema_version"] == 1
    assert len(score["scores"]["per_split"]) == 3
    agg = score["scores"]["aggregate"]
    assert agg["srcc"]["median"] > 0.5  # brightness drives the labels
    assert set(agg) >= {"srcc", "plcc", "plcc_logistic", "krcc"}
    assert score["n_images"] == N_IMAGES and score["n_excluded"] == 0
    hashes = score["splits"]["hashes"]
    assert len(hashes) == 3 and len(set(hashes)) == 3
    prov = score["provenance"]
    for key in ("package_version", "pyiqa_version", "torch_version", "git_sha", "git_dirty",
                "device", "seed", "checkpoint_sha256", "started_at", "duration_s",
                "registry_versions"):
        assert key in prov
    assert prov["registry_versions"]["datasets/tiny"] == 1
    # a lower-is-better metric is flipped into the quality direction
    lower = _unit(env, "tiny", "intra", "dummy-lower", "tiny")
    assert lower["scores"]["aggregate"]["srcc"]["median"] == pytest.approx(agg["srcc"]["median"])
    # same splits for every metric
    feat = _unit(env, "tiny", "intra", "dummy-feat", "tiny")
    assert feat["splits"]["hashes"] == hashes
    assert feat["ridge"]["chosen_alpha"] in [pytest.approx(a) for a in np.geomspace(1e-3, 1e3, 7)]
    # NaN outputs are counted with their names, failures keep the file name
    bad = _unit(env, "tiny", "intra", "dummy-nan", "tiny")
    assert bad["status"] == "ok"
    assert bad["nonfinite"]["nan"] == 2 and sorted(bad["nonfinite"]["names"]) == [
        "img/img03.png", "img/img04.png"]
    assert bad["n_excluded"] == 3 and bad["n_images"] == N_IMAGES - 3
    assert [f["name"] for f in bad["failures"]] == ["img/img05.png"]
    assert "dummy failure" in bad["failures"][0]["reason"]
    # unavailable: recorded with the reason, not dropped
    off = _unit(env, "tiny", "intra", "dummy-off", "tiny")
    assert off["status"] == "unavailable" and "offline" in off["reason"]

    md = (env["results"] / "tables" / "tiny.md").read_text()
    csv_text = (env["results"] / "tables" / "tiny.csv").read_text()
    assert "## SRCC" in md and "unavailable" in md and "**" in md
    assert "dummy-off" in md and "NaN/Inf" in md
    header = csv_text.splitlines()[0].split(",")
    assert header[:4] == ["suite", "protocol", "metric", "dataset"]
    best = [line for line in csv_text.splitlines() if ",srcc,median," in line and ",true," in line]
    assert best, "the best SRCC cell is marked in the csv"
    # report rebuilds identical tables from the JSON alone (no registry, no data)
    (env["results"] / "tables" / "tiny.md").unlink()
    (env["results"] / "tables" / "tiny.csv").unlink()
    assert main(["report", "--suite", "tiny", "--results", str(env["results"])]) == 0
    assert (env["results"] / "tables" / "tiny.md").read_text() == md
    assert (env["results"] / "tables" / "tiny.csv").read_text() == csv_text
    assert "dummy-score" in capsys.readouterr().out


def test_resume_after_interruption_no_unit_lost_or_duplicated(env, monkeypatch):
    real_write = harness.write_unit
    calls: list[Path] = []

    def flaky(path, record):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the 2nd and 3rd unit
        calls.append(Path(path))
        return real_write(path, record)

    monkeypatch.setattr(harness, "write_unit", flaky)
    try:  # the CLI turns Ctrl-C into exit status 130 with one line
        code = _run(env, "--suite", "tiny")
    except KeyboardInterrupt:
        code = 130
    assert code == 130
    done = sorted((env["results"] / "runs").rglob("*.json"))
    assert len(done) == 2 and not list((env["results"] / "runs").rglob(".tmp-*"))
    before = {p: p.read_bytes() for p in done}

    written: list[Path] = []
    monkeypatch.setattr(harness, "write_unit",
                        lambda path, record: (written.append(Path(path)), real_write(path, record))[1])
    assert _run(env, "--suite", "tiny") == 0
    all_units = sorted((env["results"] / "runs").rglob("*.json"))
    assert len(all_units) == 5
    assert not set(written) & set(before)  # finished units are not redone
    assert len(written) == len(set(written)) == 3
    assert {p: p.read_bytes() for p in done} == before


def test_cache_hit_second_run_does_not_call_metric(env, monkeypatch):
    counter = {"n": 0}
    real = DummyMetric.compute

    def counting(self, x, name):
        counter["n"] += 1
        return real(self, x, name)

    monkeypatch.setattr(DummyMetric, "compute", counting)
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score", "dummy-feat") == 0
    assert counter["n"] == 2 * N_IMAGES  # every image once per metric, over all 3 splits
    first = _unit(env, "tiny", "intra", "dummy-feat", "tiny")
    counter["n"] = 0
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score", "dummy-feat",
                "--overwrite") == 0
    assert counter["n"] == 0
    second = _unit(env, "tiny", "intra", "dummy-feat", "tiny")
    assert second["cache"] == {"n_cached": N_IMAGES, "n_computed": 0}
    assert second["scores"] == first["scores"]
    # --no-cache computes again
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score", "--overwrite",
                "--no-cache") == 0
    assert counter["n"] == N_IMAGES


def test_corrupt_image_is_a_recorded_failure_naming_the_file(env):
    (env["data"] / "tiny" / "img" / "img09.png").write_bytes(b"not a png at all")
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    rec = _unit(env, "tiny", "intra", "dummy-score", "tiny")
    assert rec["n_images"] == N_IMAGES - 1 and rec["n_excluded"] == 1
    (failure,) = rec["failures"]
    assert failure["name"] == "img/img09.png" and "img09.png" in failure["reason"]


def test_cross_handles_dmos_direction(env):
    assert _run(env, "--suite", "tinycross") == 0
    for metric in ("dummy-feat", "dummy-score"):
        for token in ("tiny--tinyd", "tinyd--tiny"):
            rec = _unit(env, "tinycross", "cross", metric, token)
            assert rec["status"] == "ok", rec.get("reason")
            assert rec["scores"]["aggregate"]["srcc"]["median"] > 0.5, (metric, token)
    feat = _unit(env, "tinycross", "cross", "dummy-feat", "tiny--tinyd")
    assert len(feat["scores"]["per_split"]) == 3 and feat["n_images"] == N_IMAGES
    md = (env["results"] / "tables" / "tinycross.md").read_text()
    assert "tiny → tinyd" in md


def test_metric_fit_on_the_dataset_is_not_tested_on_it(env):
    # A head fit on tiny's labels would be scored on its own training images there.
    assert _run(env, "--suite", "tinycrossfit") == 0
    tested_on_own = _unit(env, "tinycrossfit", "cross", "dummy-fit", "tinyd--tiny")
    assert tested_on_own["status"] == "unavailable" and "fit on tiny's labels" in tested_on_own["reason"]
    tested_elsewhere = _unit(env, "tinycrossfit", "cross", "dummy-fit", "tiny--tinyd")
    assert tested_elsewhere["status"] == "ok"
    assert _run(env, "--suite", "tinyextra", "--metrics", "dummy-fit") == 0
    assert _unit(env, "tinyextra", "intra", "dummy-fit", "tiny")["status"] == "unavailable"


@pytest.mark.slow
def test_feature_probe_runs_and_caches(env):
    assert _run(env, "--suite", "tinyextra", "--metrics", "probe18") == 0
    rec = _unit(env, "tinyextra", "intra", "probe18", "tiny")
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["metric"]["output"] == "features" and rec["ridge"]["n_crops"] == 1
    assert rec["cache"]["n_computed"] == N_IMAGES
    chunks = list((env["cache"] / "features").glob("*/chunk-*.npz"))
    assert chunks
    with np.load(chunks[0]) as z:
        assert z["values"].shape[1:] == (1, 2 * 512)  # two-scale resnet18 features


@pytest.mark.parametrize(
    "args, message",
    [
        (("--suite", "nope"), "valid suites: tiny, tinycross, tinycrossfit, tinyextra"),
        (("--suite", "tiny", "--metrics", "nope"), "valid metrics:"),
        (("--suite", "tiny", "--datasets", "nope"), "valid datasets: tiny, tinyd"),
    ],
)
def test_unknown_names_list_valid_ones(env, capsys, args, message):
    assert _run(env, *args) == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_is_a_clear_error(env, capsys, tmp_path):
    code = main(["run", "--registry", str(env["registry"]), "--data-root", str(tmp_path / "x"),
                 "--results", str(env["results"]), "--no-progress", "--suite", "tiny"])
    assert code == 2
    err = capsys.readouterr().err
    assert "tiny" in err and "mos.csv" in err


def test_report_without_results_fails_cleanly(tmp_path, capsys):
    assert main(["report", "--suite", "tiny", "--results", str(tmp_path)]) == 2
    assert "no results for suite 'tiny'" in capsys.readouterr().err


def test_bench_ridge_cli_prints_json(capsys):
    assert main(["perf", "ridge", "--n", "200", "--d", "32", "--splits", "2", "--alphas",
                 "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_splits"] == 2 and out["n_alphas"] == 4 and out["total_s"] >= 0


def test_bench_run_times_cold_warm_and_resume(env):
    from shamisa_bench.harness.cli import bench_run

    out = bench_run("tiny", metrics=("dummy-score", "dummy-feat"), data_root=env["data"],
                    registry_root=env["registry"], device="cpu")
    assert out["n_units"] == 2 and out["statuses"] == {"ok": 2}
    assert out["n_images"] == {"tiny": N_IMAGES}
    assert out["cold_s"] > 0 and out["warm_overwrite_s"] > 0 and out["warm_resume_s"] > 0
    assert out["speedup_warm_overwrite"] == pytest.approx(
        out["cold_s"] / out["warm_overwrite_s"], rel=0.05, abs=0.1)


def test_bad_device_is_a_clear_error(env, capsys):
    assert _run(env, "--suite", "tiny", "--device", "tpu") == 2
    assert "--device must be cpu or cuda" in capsys.readouterr().err


def test_invalid_result_file_is_named_by_report_and_recomputed_by_run(env, capsys):
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    path = env["results"] / "runs" / "tiny" / "intra" / "dummy-score" / "tiny.json"
    good = load_unit(path)
    raw = json.loads(path.read_text())
    raw["scores"]["aggregate"]["srcc"]["median"] = "abc"
    path.write_text(json.dumps(raw))
    capsys.readouterr()
    assert main(["report", "--suite", "tiny", "--results", str(env["results"])]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "scores.aggregate.srcc.median must be a finite number or null, not str" in err
    # run does not take the unit as done: it says so and recomputes it
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    out = capsys.readouterr().out
    assert "recomputing an invalid result file" in out and "tiny.json" in out and "not str" in out
    assert load_unit(path)["scores"] == good["scores"]
    # a per-split value edited so that the summary no longer matches is caught as well
    raw = json.loads(path.read_text())
    raw["scores"]["per_split"][0]["srcc"] = -0.5
    path.write_text(json.dumps(raw))
    assert _run(env, "--suite", "tiny", "--metrics", "dummy-score") == 0
    assert "but the per-split values give" in capsys.readouterr().out
    assert load_unit(path)["scores"] == good["scores"]


def test_debug_flag_shows_the_traceback_of_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shamisa_bench.cli import main

    assert main(["report", "--suite", "nothing-here", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shamisa-bench: error: ") and "\n" not in err and "Traceback" not in err
    assert err.endswith("(rerun with --debug for the traceback)")
    with pytest.raises(FileNotFoundError):
        main(["--debug", "report", "--suite", "nothing-here", "--results", str(tmp_path)])
