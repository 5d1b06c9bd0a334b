"""Real label layouts and the one label-range rule of data verify, run and fit-head."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml

from shamisa_bench.cli import main
from shamisa_bench.harness.data import LabelFileError, load_dataset
from shamisa_bench.harness.registry import load_registry
from tests import REPO
from tests.fixtures.iqa_datasets import build
from tests.harness.test_run import make_env


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, Path]:
    """test_run's registry with two tiny csv datasets (tiny, tinyd), dummy metrics and suites."""
    return make_env(tmp_path)


def _label_150(env: dict[str, Path]) -> None:
    csv = env["data"] / "tiny" / "mos.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",150"
    csv.write_text("\n".join(lines) + "\n")


def test_one_range_rule_for_data_verify_run_and_fit_head(env, capsys, tmp_path):
    _label_150(env)
    message = ("row 4: 1 label(s) of dataset 'tiny' lie outside [0, 100], the mos_range of "
               "registry/datasets/tiny.yaml (labels span")
    common = ["--registry", str(env["registry"]), "--data-root", str(env["data"])]
    assert main(["data", "verify", "tiny", *common]) == 1
    assert message in " ".join(capsys.readouterr().out.split())
    assert main(["run", "--suite", "tiny", "--metrics", "dummy-score", *common, "--results", str(env["results"]),
                 "--no-cache", "--no-progress", "--device", "cpu"]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert main(["fit-head", "--dataset", "tiny", *common, "--encoder", str(tmp_path / "enc"),
                 "--out", str(tmp_path / "head.pt")]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert main(["fit-head", "--dataset", "tiny", *common, "--encoder", str(tmp_path / "enc"),
                 "--mos-range", "0", "200", "--out", str(tmp_path / "head.pt")]) == 2
    assert "--mos-range goes with --csv" in capsys.readouterr().err


def _live_registry(tmp_path: Path) -> Path:
    reg = tmp_path / "registry"
    shutil.copytree(REPO / "registry", reg)
    path = reg / "datasets" / "live.yaml"
    data = yaml.safe_load(path.read_text())
    data["options"]["dmos_file"] = "dmos_realigned.mat"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return reg


@pytest.mark.slow  # the LIVE fixture writes 982 images
def test_live_realigned_dmos_have_their_own_range(tmp_path: Path):
    truth = build("live", tmp_path / "data", "official")
    root = tmp_path / "data" / "databaserelease2"
    mat = scipy.io.loadmat(root / "dmos.mat")
    realigned = mat["dmos"].astype(np.float64) * 1.2 - 8.0  # below 1 and above 100, as the real file
    scipy.io.savemat(root / "dmos_realigned.mat", {"dmos_new": realigned, "orgs": mat["orgs"]})
    spec = dataclasses.replace(load_registry(_live_registry(tmp_path)).dataset("live"), n_images=len(truth))
    table = load_dataset(spec, tmp_path / "data")
    assert table.label_file.name == "dmos_realigned.mat" and table.mos_range is None
    assert table.frame["mos"].min() < 1 and table.frame["mos"].max() > 100
    # the original file keeps the registry's range, and is checked against it
    plain = dataclasses.replace(load_registry().dataset("live"), n_images=len(truth))
    assert load_dataset(plain, tmp_path / "data").mos_range == (1.0, 100.0)
    scipy.io.savemat(root / "dmos.mat", {"dmos": realigned, "orgs": mat["orgs"]})
    with pytest.raises(LabelFileError, match=r"dmos\.mat, row \d+: \d+ label\(s\) of dataset 'live' lie outside"):
        load_dataset(plain, tmp_path / "data")


def _flive_registry(tmp_path: Path, counts: dict[str, int]) -> Path:
    reg = tmp_path / "registry"
    if not reg.exists():
        shutil.copytree(REPO / "registry", reg)
    for name, n in counts.items():
        path = reg / "datasets" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data["n_images"] = n
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    (reg / "metrics" / "brightness.yaml").write_text(
        "name: brightness\nversion: 1\nkind: dummy\nparams:\n  statistic: mean\n")
    (reg / "suites" / "two.yaml").write_text(
        "name: two\nversion: 1\ndatasets: [livec, flive]\nmetrics: [brightness]\nprotocol: intra\n"
        "columns: [srcc]\nhigher_is_better: true\n")
    return reg


@pytest.mark.slow
def test_flive_without_its_split_file_is_unavailable_not_fatal(tmp_path: Path, capsys):
    data = tmp_path / "data"
    counts = {name: len(build(name, data, "official")) for name in ("livec", "flive")}
    padded = next(data.rglob("labels=640_padded.csv"))
    padded.unlink()
    reg = _flive_registry(tmp_path, counts)
    assert main(["data", "ls", "flive", "--registry", str(reg), "--data-root", str(data)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no split" in out and "labels=640_padded.csv not found in" in out
    assert main(["data", "verify", "flive", "--registry", str(reg), "--data-root", str(data)]) == 1
    capsys.readouterr()
    results = tmp_path / "results"
    assert main(["run", "--suite", "two", "--registry", str(reg), "--data-root", str(data), "--results",
                 str(results), "--no-cache", "--no-progress", "--device", "cpu"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "dataset 'flive' has no official split (labels=640_padded.csv not found in" in out
    runs = results / "runs" / "two" / "intra" / "brightness"
    assert json.loads((runs / "livec.json").read_text())["status"] == "ok"
    flive = json.loads((runs / "flive.json").read_text())
    assert flive["status"] == "unavailable" and "has no official split" in flive["reason"]


def _spec(name: str, n: int):
    return dataclasses.replace(load_registry().dataset(name), n_images=n)


def test_spaq_in_the_authors_tree_and_images_found_by_name(tmp_path: Path):
    truth = build("spaq", tmp_path / "data", "official")
    spaq = tmp_path / "data" / "SPAQ"
    (spaq / "SPAQ zip").mkdir()
    for part in ("Annotations", "TestImage"):
        (spaq / part).rename(spaq / "SPAQ zip" / part)
    table = load_dataset(_spec("spaq", len(truth)), tmp_path / "data")
    assert table.frame["name"].tolist() == [t.name for t in truth] and table.missing == ()
    assert table.summary()["image_dirs"] == ["SPAQ zip/TestImage"]
    # images kept in some other folder under the dataset: found by file name, and said so
    (spaq / "SPAQ zip" / "TestImage").rename(spaq / "photos")
    table = load_dataset(_spec("spaq", len(truth)), tmp_path / "data")
    assert table.missing == () and table.summary()["image_dirs"] == ["."]
    assert all(Path(p).parent.name == "photos" for p in table.frame["image"])


def test_csiq_label_txt_as_hyperiqa_ships_it(tmp_path: Path):
    truth = build("csiq", tmp_path / "data", "official")
    csiq = tmp_path / "data" / "CSIQ"
    (csiq / "csiq.DMOS.txt").unlink()
    flat = csiq / "dst_imgs_all"
    flat.mkdir()
    for image in sorted((csiq / "dst_imgs").rglob("*.png")):
        image.rename(flat / image.name)
    lines = [f"{t.name if i % 2 else t.name[:-4]} {t.mos}" for i, t in enumerate(truth)]  # some without .png
    (csiq / "csiq_label.txt").write_text("\n".join(lines) + "\n")
    table = load_dataset(_spec("csiq", len(truth)), tmp_path / "data")
    assert table.label_file.name == "csiq_label.txt" and table.missing == ()
    assert table.frame["name"].tolist() == [t.name for t in truth]
    assert table.frame["ref"].tolist() == [t.ref for t in truth]
    assert table.frame["mos"].tolist() == pytest.approx([t.mos for t in truth])
    assert table.frame["distortion"].tolist()[:4] == ["awgn", "awgn", "jpeg", "jpeg"]
    (csiq / "csiq_label.txt").write_text("1600.WARP.1.png 0.1\n")
    with pytest.raises(LabelFileError, match=r"csiq_label\.txt, row 1: image name '1600\.WARP\.1\.png' is not"):
        load_dataset(_spec("csiq", len(truth)), tmp_path / "data")


def test_openpyxl_is_a_dependency_so_xlsx_labels_are_read():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.replace(" ", "").startswith("openpyxl") for dep in project["dependencies"])


def test_symlinked_image_folders_are_followed_without_loops(tmp_path: Path):
    from shamisa_bench.common.imageio import list_images

    truth = build("livec", tmp_path / "real", "official")
    data = tmp_path / "data"
    (data / "ChallengeDB_release").mkdir(parents=True)
    (data / "ChallengeDB_release" / "Data").symlink_to(tmp_path / "real" / "ChallengeDB_release" / "Data")
    (data / "ChallengeDB_release" / "Images").symlink_to(tmp_path / "real" / "ChallengeDB_release" / "Images")
    table = load_dataset(_spec("livec", len(truth)), data)
    assert table.missing == () and table.n_images == len(truth)

    pristine = tmp_path / "pristine"
    pristine.mkdir()
    (pristine / "linked").symlink_to(tmp_path / "real" / "ChallengeDB_release" / "Images")
    (pristine / "linked" / "loop").symlink_to(pristine)  # a link back up: listed once, no loop
    names = [p.relative_to(pristine).as_posix() for p in list_images(pristine)]
    assert "linked/3.bmp" in names and "linked/trainingImages/t1.bmp" in names
    assert len(names) == len(set(names)) == 13


def test_a_symlinked_image_subfolder_of_a_csv_dataset_is_read(env, tmp_path):
    folder = env["data"] / "tiny" / "img"
    folder.rename(tmp_path / "elsewhere")
    folder.symlink_to(tmp_path / "elsewhere")
    table = load_dataset(load_registry(env["registry"]).dataset("tiny"), env["data"])
    assert table.missing == () and table.n_images == 16
