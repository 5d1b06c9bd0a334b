"""SRCC per distortion type: in the intra unit JSON and as ``<suite>-by-type`` tables.

Fixture: a csv dataset whose label file carries a ``distortion`` column. Type ``up``: the
label rises with brightness; type ``down``: it falls. A dummy metric scoring brightness is
then right on ``up`` (SRCC 1) and wrong on ``down`` (SRCC -1), on every split. The same
images without the column give no by-type table, and the other tables do not change.
Then the demo (a small recipe, built offline): its units carry SRCC for each of its types.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from shamisa_bench.cli import main
from shamisa_bench.harness.adapters.runner import MetricOutputs
from shamisa_bench.harness.protocols import run_intra
from shamisa_bench.harness.protocols.intra import srcc_by_type
from tests.helpers import csv_dataset_yaml, write_text

N = 32


def _dataset(root: Path, name: str, typed: bool) -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    (root / name / "img").mkdir(parents=True)
    rows = ["image,mos" + (",distortion" if typed else "")]
    for i in range(N):
        level = 0.1 + 0.8 * (i // 2) / (N // 2)
        kind = "up" if i % 2 == 0 else "down"
        arr = np.clip(level + rng.uniform(0, 0.02, size=(32, 32, 3)), 0, 1)
        Image.fromarray((arr * 255).astype(np.uint8)).save(root / name / "img" / f"i{i:02d}.png")
        mos = 100 * level if kind == "up" else 100 * (1 - level)
        rows.append(f"img/i{i:02d}.png,{mos:.3f}" + (f",{kind}" if typed else ""))
    write_text(root / name / "mos.csv", "\n".join(rows) + "\n")


SUITE = """\
name: {name}
version: 1
datasets: [{dataset}]
metrics: [bright, grad]
protocol: intra
columns: [srcc, plcc]
higher_is_better: true
main_score: srcc
"""


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    reg, data = tmp_path / "registry", tmp_path / "data"
    _dataset(data, "typed", True)
    _dataset(data, "plain", False)
    write_text(reg / "datasets/typed.yaml", csv_dataset_yaml("typed", N, options="  extra_columns: [distortion]\n"))
    write_text(reg / "datasets/plain.yaml", csv_dataset_yaml("plain", N))
    write_text(reg / "metrics/bright.yaml", "name: bright\nversion: 1\nkind: dummy\nparams:\n  statistic: mean\n")
    write_text(reg / "metrics/grad.yaml", "name: grad\nversion: 1\nkind: dummy\nparams:\n  statistic: gradient\n")
    write_text(reg / "protocols/intra.yaml", "name: intra\nversion: 1\nkind: intra\nratios: [0.4, 0.1, 0.5]\n"
               "n_splits: 4\nbase_seed: 0\nalpha_grid: {lo: 1.0e-3, hi: 1.0e+3, n: 7}\n")
    write_text(reg / "suites/typed.yaml", SUITE.format(name="typed", dataset="typed"))
    write_text(reg / "suites/plain.yaml", SUITE.format(name="plain", dataset="plain"))
    return {"registry": reg, "data": data, "results": tmp_path / "results", "cache": tmp_path / "cache"}


def _run(env: dict[str, Path], suite: str) -> int:
    return main(["run", "--suite", suite, "--registry", str(env["registry"]), "--data-root", str(env["data"]),
                 "--results", str(env["results"]), "--cache-dir", str(env["cache"]), "--device", "cpu",
                 "--no-progress"])


def test_srcc_by_type_on_known_scores():
    # 12 images: type a ranked right by the metric, type b backwards, type c never has 3 test images
    mos = np.arange(12, dtype=float)
    pred = np.where(np.arange(12) % 3 == 1, -mos, mos)
    types = np.array(["a", "b", "c"] * 4)
    types[[2, 5]] = ""  # untyped images are left out
    outputs = MetricOutputs("m", "score", tuple(f"i{i}" for i in range(12)), pred, np.zeros(12, dtype=bool))
    split = {"train": np.arange(0), "val": np.arange(0), "test": np.arange(12)}
    res = run_intra(outputs, mos, labels_lower_better=False, metric_lower_better=False, splits=[split],
                    alphas=[1.0])
    got = srcc_by_type(res, mos, types, labels_lower_better=False)
    assert got["per_split"] == [{"a": 1.0, "b": -1.0, "c": None}]
    assert got["aggregate"]["a"] == {"median": 1.0, "n_splits": 1, "n_images": 4}
    assert got["aggregate"]["c"] == {"median": None, "n_splits": 0, "n_images": 2}
    # DMOS labels: turned to the quality direction first
    dmos = srcc_by_type(res, -mos, types, labels_lower_better=True)
    assert dmos["per_split"] == got["per_split"]
    assert srcc_by_type(res, mos, [""] * 12, labels_lower_better=False) is None


def test_by_type_in_units_and_tables(env, capsys):
    assert _run(env, "typed") == 0
    unit = json.loads((env["results"] / "runs/typed/intra/bright/typed.json").read_text())
    agg = unit["by_type"]["aggregate"]
    assert agg["up"]["median"] == 1.0 and agg["down"]["median"] == -1.0
    assert agg["up"]["n_splits"] == len(unit["by_type"]["per_split"]) == 4
    tables = env["results"] / "tables"
    md = (tables / "typed-by-type.md").read_text()
    assert "| metric | up | down | all |" in md and "| bright | **1.000** | " in md
    rows = (tables / "typed-by-type.csv").read_text().splitlines()
    assert rows[0] == "suite,metric,dataset,type,srcc_median,n_splits,n_images,best"
    assert "typed,bright,typed,up,1.000000,4,16,true" in rows
    assert (tables / "typed-by-type.png").read_bytes()[:4] == b"\x89PNG"
    # report rebuilds them from the units, byte for byte
    before = {p.name: p.read_bytes() for p in tables.iterdir()}
    assert main(["report", "--suite", "typed", "--results", str(env["results"]),
                 "--registry", str(env["registry"])]) == 0
    assert {p.name: p.read_bytes() for p in tables.iterdir()} == before
    # the same images without types: no by-type files, no by_type key
    assert _run(env, "plain") == 0
    assert "by_type" not in json.loads((env["results"] / "runs/plain/intra/bright/plain.json").read_text())
    assert not (tables / "plain-by-type.md").exists()
    capsys.readouterr()


def test_by_type_on_the_demo(tmp_path, capsys):
    reg = tmp_path / "registry"
    demo = yaml.safe_load((Path(__file__).resolve().parents[2] / "registry/datasets/demo.yaml").read_text())
    demo["options"].update(sources=["astronaut", "camera", "coins", "chelsea", "coffee"],
                           distortions=["gaussian_blur", "white_noise"], severities=[1, 2, 4], size=48)
    demo["n_images"], demo["n_references"] = 30, 5
    write_text(reg / "datasets/demo.yaml", yaml.safe_dump(demo))
    write_text(reg / "metrics/bright.yaml", "name: bright\nversion: 1\nkind: dummy\nparams:\n  statistic: gradient\n")
    write_text(reg / "protocols/intra.yaml", "name: intra\nversion: 1\nkind: intra\nratios: [0.4, 0.2, 0.4]\n"
               "n_splits: 3\nbase_seed: 0\nalpha_grid: {lo: 1.0e-3, hi: 1.0e+3, n: 7}\n")
    write_text(reg / "suites/demo.yaml", SUITE.format(name="demo", dataset="demo").replace("[bright, grad]", "[bright]"))
    results = tmp_path / "results"
    assert main(["run", "--suite", "demo", "--registry", str(reg), "--results", str(results),
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--no-progress"]) == 0
    unit = json.loads((results / "runs/demo/intra/bright/demo.json").read_text())
    agg = unit["by_type"]["aggregate"]
    assert list(agg) == ["gaussian_blur", "white_noise"]
    # a gradient statistic: falls with blur (right), rises with noise (wrong)
    assert agg["gaussian_blur"]["median"] > 0.5 and agg["white_noise"]["median"] < 0
    assert "| metric | gaussian_blur | white_noise | all |" in (results / "tables/demo-by-type.md").read_text()
    capsys.readouterr()
