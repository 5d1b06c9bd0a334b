"""``run --suite cross`` with only some datasets present (the shipped registry, fixture data).

Two of the four synthetic datasets are built in their official layouts (tiny fixtures from
``tests/fixtures/iqa_datasets.py``): the pairs between them run, every pair touching a
missing dataset is recorded as unavailable, and the console names the command that fetches
each missing dataset. With none present, ``run`` stops with every fetch command.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shamisa_bench.cli import main
from shamisa_bench.harness.results import load_unit
from tests import REPO
from tests.fixtures.iqa_datasets import build, write_image

PRESENT = ("tid2013", "kadid10k")
MISSING = ("live", "csiq")


def _registry(tmp_path: Path, counts: dict[str, int]) -> Path:
    """The shipped registry with the fixture counts and a cheap score metric."""
    dst = tmp_path / "registry"
    shutil.copytree(REPO / "registry", dst)
    for name, n in counts.items():
        path = dst / "datasets" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data["n_images"] = n
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    (dst / "metrics" / "brightness.yaml").write_text(
        "name: brightness\nversion: 1\nkind: dummy\nparams:\n  statistic: mean\n")
    suite = dst / "suites" / "cross.yaml"  # --metrics chooses among the suite's metrics
    data = yaml.safe_load(suite.read_text())
    data["metrics"] = [*data["metrics"], "brightness"]
    suite.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def _run(reg: Path, data: Path, results: Path, *extra: str) -> int:
    return main(["run", "--suite", "cross", "--metrics", "brightness", "--registry", str(reg),
                 "--data-root", str(data), "--results", str(results), "--cache-dir",
                 str(results.parent / "cache"), "--device", "cpu", "--no-progress", *extra])


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    counts = {name: len(build(name, data, "official")) for name in PRESENT}
    for i, path in enumerate(sorted(data.rglob("*.png")) + sorted(data.rglob("*.bmp"))):
        write_image(path, seed=i)  # distinct images, so the scores are not all equal
    return {"registry": _registry(tmp_path, counts), "data": data, "results": tmp_path / "results"}


def test_cross_runs_the_pairs_it_can_and_reports_the_rest(env, capsys):
    assert _run(env["registry"], env["data"], env["results"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in MISSING:
        assert f"dataset '{name}' not found" in out
        assert f"shamisa-bench data fetch {name} --data-root" in out
    runs = env["results"] / "runs" / "cross" / "cross" / "brightness"
    pairs = {p.stem: load_unit(p) for p in runs.glob("*.json")}
    assert len(pairs) == 12  # every ordered pair of the four datasets has a unit file
    ok = {k for k, r in pairs.items() if r["status"] == "ok"}
    assert ok == {"tid2013--kadid10k", "kadid10k--tid2013"}
    for token, rec in pairs.items():
        if token not in ok:
            assert rec["status"] == "unavailable"
            absent = [d for d in MISSING if d in token.split("--")]
            assert all(f"'{d}'" in rec["reason"] for d in absent)
            assert "shamisa-bench data fetch" in rec["reason"]
    md = (env["results"] / "tables" / "cross.md").read_text()
    assert "tid2013 → kadid10k" in md and "unavailable" in md
    # the cross cells have a value but no interval, and say why
    srcc = md.split("## SRCC")[1].split("##")[0]
    row = next(line for line in srcc.splitlines() if line.startswith("| brightness |"))
    assert row.count("‡") == 2 and "[" not in row and "nan" not in row
    assert "whole test set is scored once per pair" in md
    assert (env["results"] / "tables" / "cross.png").stat().st_size > 1000


def test_cross_with_no_dataset_present_names_every_fetch_command(tmp_path, capsys):
    reg = _registry(tmp_path, {})
    assert _run(reg, tmp_path / "empty", tmp_path / "results") == 2
    err = capsys.readouterr().err
    for name in PRESENT + MISSING:
        assert f"shamisa-bench data fetch {name} --data-root" in err
    assert not (tmp_path / "results" / "runs").exists()
