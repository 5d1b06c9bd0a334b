"""``shamisa-bench datasets`` and ``shamisa-bench data fetch`` (offline, atomic)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from shamisa_bench.cli import main
from shamisa_bench.harness.data import fetch as fetch_mod
from shamisa_bench.harness.data.fetch import FETCHABLE, FetchError, fetch_dataset
from shamisa_bench.harness.registry import load_registry
from tests import REPO
from tests.fixtures.iqa_datasets import build

REG = load_registry()


def _registry_with(tmp_path: Path, **n_images: int) -> Path:
    """A copy of the shipped registry with some datasets' expected counts changed."""
    dst = tmp_path / "registry"
    shutil.copytree(REPO / "registry", dst)
    for name, n in n_images.items():
        path = dst / "datasets" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        data["n_images"] = n
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def test_datasets_table_reports_found_complete_partial_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    kadid = build("kadid10k", data, "official")
    spaq = build("spaq", data, "pyiqa")
    (data / "SPAQ" / "TestImage" / spaq[0].name).unlink()
    reg = _registry_with(tmp_path, kadid10k=len(kadid), spaq=len(spaq))
    code = main(["data", "ls", "--registry", str(reg), "--data-root", str(data), "kadid10k", "spaq", "live"])
    out = capsys.readouterr().out
    assert code == 0
    lines = {ln.split("│")[1].strip(): ln for ln in out.splitlines() if ln.startswith("│") and ln.split("│")[1].strip()}
    assert (
        "complete" in lines["kadid10k"]
        and f"{len(kadid)}/{len(kadid)}" in lines["kadid10k"]
        and "official" in lines["kadid10k"]
    )
    assert "partial" in lines["spaq"] and f"{len(spaq) - 1}/{len(spaq)}" in lines["spaq"] and "pyiqa" in lines["spaq"]
    assert "not found" in lines["live"]
    assert f"spaq: 1 listed image(s) missing under {data / 'SPAQ' / 'TestImage'}" in out


def test_datasets_verify_lists_corrupt_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    truth = build("tid2013", data, "pyiqa")
    (data / "tid2013" / "distorted_images" / truth[2].name).write_bytes(b"BM garbage")
    reg = _registry_with(tmp_path, tid2013=len(truth))
    assert main(["data", "ls", "--registry", str(reg), "--data-root", str(data), "tid2013"]) == 0  # no decoding
    assert "complete" in capsys.readouterr().out
    assert main(["data", "verify", "--registry", str(reg), "--data-root", str(data), "tid2013"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert f"decoded {len(truth)} images, 1 corrupt" in out and truth[2].name in out
    row = next(ln for ln in out.splitlines() if ln.startswith("│") and "tid2013" in ln)
    assert "complete" not in row and "1 corrupt" in row
    assert "1 corrupt image(s)" in captured.err


def test_fetchable_names_are_pyiqa_download_keys() -> None:
    from pyiqa.data.dataset_api import dataset_download_name

    assert set(FETCHABLE) <= set(dataset_download_name)
    assert set(FETCHABLE) <= set(REG.datasets)


def test_fetch_offline_fails_fast_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the connectivity check answers without touching the network
    calls = []
    monkeypatch.setattr(fetch_mod, "_pyiqa_download", lambda *a: calls.append(a))
    data = tmp_path / "data"
    data.mkdir()
    start = time.monotonic()
    code = main(["data", "fetch", "live", "--data-root", str(data)])
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert code == 2 and "offline" in err and "Nothing was written" in err
    assert list(data.iterdir()) == [] and calls == []


def test_fetch_unreachable_host_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("Name or service not known")

    monkeypatch.setattr(fetch_mod.socket, "create_connection", refuse)
    reason = fetch_mod.check_connectivity(timeout=0.5)
    assert reason is not None and "cannot reach" in reason and "Name or service not known" in reason


def test_fetch_not_fetchable(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot be fetched automatically"):
        fetch_dataset(REG.dataset("clive-dev"), tmp_path)


def test_fetch_moves_a_finished_download_into_place(tmp_path: Path) -> None:
    def fake(name: str, folder: Path) -> None:
        build("kadid10k", folder, "pyiqa")
        (folder / "kadid10k.tgz").write_bytes(b"archive")

    data = tmp_path / "data"
    (data / "meta_info").mkdir(parents=True)
    (data / "meta_info" / "meta_info_OtherDataset.csv").write_text("keep me")
    moved = fetch_dataset(REG.dataset("kadid10k"), data, downloader=fake)
    assert data / "kadid10k" in moved and (data / "meta_info" / "meta_info_KADID10kDataset.csv").is_file()
    assert (data / "meta_info" / "meta_info_OtherDataset.csv").read_text() == "keep me"
    assert not (data / "kadid10k.tgz").exists() and not any(p.name.startswith(".fetch-") for p in data.iterdir())


def test_fetch_failure_leaves_no_half_written_folder(tmp_path: Path) -> None:
    def dies_midway(name: str, folder: Path) -> None:
        (folder / "kadid10k" / "images").mkdir(parents=True)
        (folder / "kadid10k" / "images" / "I01_01_01.png").write_bytes(b"partial")
        raise ConnectionError("connection reset")

    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(FetchError, match="connection reset"):
        fetch_dataset(REG.dataset("kadid10k"), data, downloader=dies_midway)
    assert list(data.iterdir()) == []

    def wrong_content(name: str, folder: Path) -> None:
        (folder / "something").mkdir()

    with pytest.raises(FetchError, match="does not read back"):
        fetch_dataset(REG.dataset("kadid10k"), data, downloader=wrong_content)
    assert list(data.iterdir()) == []
