"""Full-reference units in the harness: references found per layout, self-checks, a run end to end.

The end-to-end fixture is a tiny synthetic CSV dataset (``image,ref,mos``: 4 references x
4 noise levels, 64 px), run through ``run_suite`` with pyiqa's ``psnr`` and a random-init
ResNet-18 read out as SHAMISA's pair feature (ridge head) and as the feature distance, next
to an authentic dataset, which has no references and is skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shamisa_bench.harness import pairs
from shamisa_bench.harness import run as harness
from shamisa_bench.harness.data import load_dataset
from shamisa_bench.harness.registry import load_registry
from shamisa_bench.harness.results import load_unit
from tests.fixtures.iqa_datasets import build
from tests.helpers import csv_dataset_yaml, write_text

pytest.importorskip("pyiqa")
pytestmark = pytest.mark.usefixtures("one_thread")

LEVELS = (0.02, 0.08, 0.16, 0.3)


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)


def _fr_dataset(folder: Path) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    rows = ["image,ref,mos"]
    for r in range(4):
        ref = np.stack([xx, yy, 0.5 + 0.4 * np.sin((xx + r) * 6)], axis=-1) * (0.6 + 0.1 * r)
        _save(ref, folder / "refs" / f"r{r}.png")
        for k, sigma in enumerate(LEVELS):
            _save(ref + rng.normal(0, sigma, ref.shape), folder / "dist" / f"r{r}_{k}.png")
            rows.append(f"dist/r{r}_{k}.png,refs/r{r}.png,{100 - 250 * sigma + rng.normal(0, 1):.3f}")
    write_text(folder / "labels.csv", "\n".join(rows) + "\n")
    rows = ["image,mos"]
    for i in range(8):
        _save(rng.uniform(0, 1, (64, 64, 3)), folder / "auth" / f"a{i}.png")
        rows.append(f"auth/a{i}.png,{i}")
    write_text(folder / "auth.csv", "\n".join(rows) + "\n")


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    reg, data = tmp_path / "registry", tmp_path / "data"
    _fr_dataset(data / "fr")
    write_text(reg / "datasets/tinyfr.yaml", csv_dataset_yaml("tinyfr", 16, root="fr", csv="labels.csv", kind="synthetic",
                                                              split="reference", options="  ref_column: ref\n"))
    write_text(reg / "datasets/tinyauth.yaml", csv_dataset_yaml("tinyauth", 8, root="fr", csv="auth.csv"))
    probe = "kind: feature-probe\nbackbone: resnet18\ninit: random\nfeature_mode: whole\n"
    metrics = {
        "psnr": "kind: pyiqa-score\npyiqa_name: psnr\nparams:\n  reference: true\n",
        "probe-fr": probe + "params:\n  reference: true\n  pair: difference\n",
        "probe-dist": probe + "params:\n  reference: true\n  pair: distance\n",
    }
    for name, body in metrics.items():
        write_text(reg / f"metrics/{name}.yaml", f"name: {name}\nversion: 1\n{body}")
    write_text(reg / "protocols/intra.yaml", "name: intra\nversion: 1\nkind: intra\nratios: [0.5, 0.25, 0.25]\n"
                                             "n_splits: 3\nbase_seed: 0\nalpha_grid: {lo: 1.0e-3, hi: 1.0e+3, n: 7}\n")
    write_text(reg / "suites/frtiny.yaml", "name: frtiny\nversion: 1\ndatasets: [tinyfr, tinyauth]\n"
                                           "metrics: [psnr, probe-fr, probe-dist]\nprotocol: intra\n"
                                           "columns: [srcc, plcc]\nhigher_is_better: true\nmain_score: srcc\n")
    return {"registry": reg, "data": data, "results": tmp_path / "results", "cache": tmp_path / "cache"}


def test_fr_suite_end_to_end(env: dict[str, Path]) -> None:
    cfg = harness.RunConfig(suite="frtiny", data_root=env["data"], results_dir=env["results"],
                            cache_dir=env["cache"], registry_root=env["registry"], progress=False)
    summary = harness.run_suite(cfg)
    assert summary.n_failed == 0
    runs = env["results"] / "runs" / "frtiny" / "intra"
    for metric in ("psnr", "probe-fr", "probe-dist"):
        rec = load_unit(runs / metric / "tinyfr.json")
        assert rec["status"] == "ok", rec.get("reason")
        checks = rec["fr"]["self_checks"]
        assert checks["identical"]["passed"] and checks["sign"]["passed"], checks
        assert rec["fr"]["n_references"] == {"tinyfr": 4}
        assert rec["scores"]["aggregate"]["srcc"]["median"] > 0.5
        skipped = load_unit(runs / metric / "tinyauth.json")
        assert skipped["status"] == "unavailable" and "no reference column" in skipped["reason"]
    assert load_unit(runs / "probe-fr" / "tinyfr.json")["fr"]["self_checks"]["identical"]["value"] == 0.0
    dist = load_unit(runs / "probe-dist" / "tinyfr.json")
    assert dist["metric"]["lower_better"] is True and dist["fr"]["self_checks"]["identical"]["value"] == 0.0
    assert load_unit(runs / "psnr" / "tinyfr.json")["ridge"] is None  # a score: no head
    assert load_unit(runs / "probe-fr" / "tinyfr.json")["ridge"]["n_crops"] == 1
    checks_md = (env["results"] / "tables" / "frtiny-fr-checks.md").read_text()
    assert "| probe-fr | tinyfr | 0 | yes |" in checks_md
    # splits are reference-disjoint
    split = json.loads((runs / "psnr" / "tinyfr.json").read_text())["scores"]["per_split"][0]
    assert split["n_test"] % len(LEVELS) == 0


@pytest.mark.parametrize("name", ["live", "csiq", "tid2013", "kadid10k"])
def test_references_found_in_official_layouts(name: str, tmp_path: Path) -> None:
    truth = build(name, tmp_path, "official")
    table = load_dataset(load_registry().dataset(name), tmp_path, allow_partial=True)
    refs = pairs.find_references(table)
    assert len(refs) == len(truth)
    for row in truth[:5]:
        assert Path(refs[row.name]).stem.lower() == row.ref


def test_missing_references_named(tmp_path: Path) -> None:
    build("live", tmp_path, "pyiqa")  # pyiqa's LIVE layout without the refimgs folder
    table = load_dataset(load_registry().dataset("live"), tmp_path, allow_partial=True)
    with pytest.raises(pairs.NoReferences, match=r"no reference image found for \d+ of \d+ images"):
        pairs.find_references(table)
