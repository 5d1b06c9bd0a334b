"""Dataset readers on fixtures in each release's exact official format and in pyiqa's layout."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from shamisa_bench.harness.data import (
    DatasetNotFoundError,
    LabelFileError,
    PartialDatasetError,
    exclude,
    load_dataset,
    verify_images,
)
from shamisa_bench.harness.data.table import dataset_status
from shamisa_bench.harness.registry import DatasetSpec, load_registry
from tests import REPO
from tests.fixtures.iqa_datasets import BUILDERS, TruthRow, build, write_image

REG = load_registry()
SHARED = REPO / ".." / "shared" / "data"


def _spec(name: str, truth: list[TruthRow]) -> DatasetSpec:
    """The registry entry with ``n_images`` set to the fixture's size."""
    return dataclasses.replace(REG.dataset(name), n_images=len(truth))


@pytest.mark.parametrize("layout", ["official", "pyiqa"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reader_reads_fixture(tmp_path: Path, name: str, layout: str) -> None:
    truth = build(name, tmp_path, layout)
    table = load_dataset(_spec(name, truth), tmp_path)
    frame = table.frame
    assert table.layout == layout and not table.partial and table.missing == ()
    assert frame["name"].tolist() == [t.name for t in truth]
    assert frame["ref"].tolist() == [t.ref for t in truth]
    assert frame["mos"].tolist() == pytest.approx([t.mos for t in truth], abs=1e-9)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["image"])
    if truth[0].split is not None:
        assert frame["official_split"].tolist() == [t.split for t in truth]
        assert table.has_official_split
    else:
        assert "official_split" not in frame.columns
    assert table.label_sha256 == hashlib.sha256(table.label_file.read_bytes()).hexdigest()
    summary = table.summary()
    assert summary["n_images"] == len(truth) and summary["layout"] == layout and summary["pseudo_mos"] is False


def test_both_layouts_give_the_same_identities(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    truth = build("csiq", a, "official")
    build("csiq", b, "pyiqa")
    ta, tb = load_dataset(_spec("csiq", truth), a), load_dataset(_spec("csiq", truth), b)
    cols = ["name", "mos", "ref", "distortion"]
    assert ta.frame[cols].equals(tb.frame[cols])


def test_data_root_env_is_the_default_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shamisa_bench.harness.data import default_data_root

    truth = build("csiq", tmp_path / "elsewhere", "official")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAMISA_BENCH_DATA", raising=False)
    assert default_data_root() == Path("datasets")
    with pytest.raises(DatasetNotFoundError):
        load_dataset(_spec("csiq", truth), None)
    monkeypatch.setenv("SHAMISA_BENCH_DATA", str(tmp_path / "elsewhere"))
    assert default_data_root() == tmp_path / "elsewhere"
    # data_root=None is what run, robustness, fit-head and pretrain --val-dataset pass without --data-root
    assert len(load_dataset(_spec("csiq", truth), None).frame) == len(truth)


def test_official_layout_is_preferred_when_both_exist(tmp_path: Path) -> None:
    truth = build("kadid10k", tmp_path, "official")
    build("kadid10k", tmp_path, "pyiqa")
    assert load_dataset(_spec("kadid10k", truth), tmp_path).layout == "official"


def test_live_skips_reference_copies_and_records_distortion(tmp_path: Path) -> None:
    truth = build("live", tmp_path, "official")
    frame = load_dataset(_spec("live", truth), tmp_path).frame
    assert len(frame) == 786  # 982 entries, every fifth flagged orgs == 1
    assert set(frame["distortion"]) == {"jp2k", "jpeg", "wn", "gblur", "fastfading"}
    assert set(frame["ref"]) == {"bikes", "caps", "house", "parrots"}


def test_livec_leaves_out_the_training_images(tmp_path: Path) -> None:
    truth = build("livec", tmp_path, "official")
    names = load_dataset(_spec("livec", truth), tmp_path).frame["name"].tolist()
    assert not any(n.startswith("t") for n in names) and len(names) == 6


def test_missing_dataset_names_paths_and_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(REG.dataset("live"), tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "LIVEIQA_release2" / "dmos.mat") in msg
    assert str(tmp_path / "meta_info" / "meta_info_LIVEIQADataset.csv") in msg
    assert f"shamisa-bench data fetch live --data-root {tmp_path}" in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError, match="cannot be fetched automatically"):
        load_dataset(REG.dataset("clive-dev"), tmp_path)


def test_partial_dataset_needs_allow_partial(tmp_path: Path) -> None:
    truth = build("kadid10k", tmp_path, "official")
    gone = tmp_path / "kadid10k" / "images" / truth[3].name
    gone.unlink()
    spec = _spec("kadid10k", truth)
    with pytest.raises(PartialDatasetError) as info:
        load_dataset(spec, tmp_path)
    assert info.value.n_present == len(truth) - 1 and info.value.missing == [truth[3].name]
    assert "11 of 12" in str(info.value) and "allow_partial" in str(info.value)
    table = load_dataset(spec, tmp_path, allow_partial=True)
    assert table.partial and table.missing == (truth[3].name,) and table.n_images == len(truth) - 1
    assert truth[3].name not in set(table.frame["name"])
    assert table.summary()["partial"] is True and "missing" in table.summary()["partial_reason"]
    st = dataset_status(spec, tmp_path)
    assert st.found and not st.complete and st.n_present == 11 and st.missing == (truth[3].name,)


def test_count_differing_from_the_registry_is_partial(tmp_path: Path) -> None:
    truth = build("spaq", tmp_path, "official")
    spec = dataclasses.replace(REG.dataset("spaq"), n_images=len(truth) + 1)
    with pytest.raises(PartialDatasetError, match="lists 6 images, the registry expects 7"):
        load_dataset(spec, tmp_path)


def _replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_unparsable_mos_names_file_and_row(tmp_path: Path) -> None:
    truth = build("kadid10k", tmp_path, "official")
    label = tmp_path / "kadid10k" / "dmos.csv"
    _replace_line(label, 4, f"{truth[2].name},I01.png,abc,0.5")
    with pytest.raises(LabelFileError) as info:
        load_dataset(_spec("kadid10k", truth), tmp_path)
    assert info.value.row == 4 and info.value.path == label
    assert str(label) in str(info.value) and "row 4" in str(info.value) and "'abc'" in str(info.value)


def test_duplicate_and_missing_names_name_the_row(tmp_path: Path) -> None:
    truth = build("tid2013", tmp_path, "official")
    label = tmp_path / "tid2013" / "mos_with_names.txt"
    _replace_line(label, 5, f"4.0 {truth[1].name}")
    with pytest.raises(LabelFileError, match=r"row 5: duplicate image name .*first on row 2"):
        load_dataset(_spec("tid2013", truth), tmp_path)

    truth = build("spaq", tmp_path / "s", "official")
    label = tmp_path / "s" / "SPAQ" / "Annotations" / "MOS and Image attribute scores.csv"
    _replace_line(label, 3, ",55.0,50,50,50,50,50")
    with pytest.raises(LabelFileError, match=r"row 3: missing image name"):
        load_dataset(_spec("spaq", truth), tmp_path / "s")


def test_non_finite_mos_and_bad_split_are_errors(tmp_path: Path) -> None:
    truth = build("koniq10k", tmp_path, "pyiqa")
    meta = tmp_path / "meta_info" / "meta_info_KonIQ10kDataset.csv"
    _replace_line(meta, 2, f"{truth[0].name},nan,0.5,train,1,2,3,4,5,15")
    with pytest.raises(LabelFileError, match="row 2: MOS 'nan' is not finite"):
        load_dataset(_spec("koniq10k", truth), tmp_path)
    _replace_line(meta, 2, f"{truth[0].name},50,0.5,holdout,1,2,3,4,5,15")
    with pytest.raises(LabelFileError, match="row 2: split value 'holdout'"):
        load_dataset(_spec("koniq10k", truth), tmp_path)


def test_corrupt_mat_file_is_named(tmp_path: Path) -> None:
    truth = build("livec", tmp_path, "official")
    mat = tmp_path / "ChallengeDB_release" / "Data" / "AllMOS_release.mat"
    mat.write_bytes(b"not a mat file")
    with pytest.raises(LabelFileError, match="AllMOS_release.mat"):
        load_dataset(_spec("livec", truth), tmp_path)


def test_xlsx_without_openpyxl_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    truth = build("spaq", tmp_path, "official")
    ann = tmp_path / "SPAQ" / "Annotations"
    (ann / "MOS and Image attribute scores.csv").unlink()
    (ann / "MOS and Image attribute scores.xlsx").write_bytes(b"PK\x03\x04")
    real_import = builtins.__import__

    def no_openpyxl(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "openpyxl":
            raise ImportError("No module named 'openpyxl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openpyxl)
    with pytest.raises(LabelFileError, match="needs openpyxl, a dependency of shamisa-bench.*export the sheet as CSV"):
        load_dataset(_spec("spaq", truth), tmp_path)


def test_csiq_xlsx_when_openpyxl_is_installed(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl (a dependency) is not installed here")
    truth = build("csiq", tmp_path, "official")
    root = tmp_path / "CSIQ"
    txt = root / "csiq.DMOS.txt"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "all_by_image"
    for line in txt.read_text().splitlines():
        cells = line.split("\t")
        ws.append([c if i in (0, 2) or not c.replace(".", "").isdigit() else float(c) for i, c in enumerate(cells)])
    wb.save(root / "csiq.DMOS.xlsx")
    txt.unlink()
    table = load_dataset(_spec("csiq", truth), tmp_path)
    assert table.frame["name"].tolist() == [t.name for t in truth]


def test_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    truth = build("kadid10k", tmp_path, "official")
    spec = dataclasses.replace(_spec("kadid10k", truth), checksums={"dmos.csv": "0" * 64})
    with pytest.raises(LabelFileError, match="sha256"):
        load_dataset(spec, tmp_path)
    good = hashlib.sha256((tmp_path / "kadid10k" / "dmos.csv").read_bytes()).hexdigest()
    assert load_dataset(dataclasses.replace(spec, checksums={"dmos.csv": good}), tmp_path).n_images == len(truth)


def _csv_spec(**options: object) -> DatasetSpec:
    base = REG.dataset("clive-dev")
    opts = {"csv": "labels.csv", "image_column": "file", "mos_column": "score", **options}
    return dataclasses.replace(base, name="mine", n_images=4, options=opts)


def test_generic_csv_with_ref_split_and_image_dir(tmp_path: Path) -> None:
    root = tmp_path / "clive-dev"
    rows = [
        ("a.png", 1.5, "r1", "train"),
        ("b.png", 2.5, "r1", "train"),
        ("c.png", 3.5, "r2", "val"),
        ("d.png", 4.5, "r3", "test"),
    ]
    (root / "pics").mkdir(parents=True)
    (root / "labels.csv").write_text("file,score,group,part\n" + "".join(f"{n},{m},{g},{s}\n" for n, m, g, s in rows))
    for n, *_ in rows:
        write_image(root / "pics" / n)
    spec = _csv_spec(ref_column="group", split_column="part", image_dir="pics")
    table = load_dataset(spec, tmp_path)
    assert table.frame["ref"].tolist() == ["r1", "r1", "r2", "r3"]
    assert table.frame["official_split"].tolist() == ["train", "train", "val", "test"]
    assert table.frame["mos"].tolist() == [1.5, 2.5, 3.5, 4.5]


def test_verify_finds_corrupt_images_and_exclude_records_them(tmp_path: Path) -> None:
    truth = build("kadid10k", tmp_path, "official")
    (tmp_path / "kadid10k" / "images" / truth[5].name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    table = load_dataset(_spec("kadid10k", truth), tmp_path)
    bad = verify_images(table)
    assert [n for n, _ in bad] == [truth[5].name] and bad[0][1]
    clean = exclude(table, [n for n, _ in bad], [r for _, r in bad])
    assert clean.n_images == len(truth) - 1 and truth[5].name not in set(clean.frame["name"])
    assert clean.excluded == (bad[0],) and clean.summary()["n_excluded"] == 1
    assert list(clean.frame.index) == list(range(len(truth) - 1))
    with pytest.raises(ValueError, match="not in dataset"):
        exclude(clean, ["ghost.png"], "x")


@pytest.mark.skipif(
    not (SHARED / "clive-dev" / "mos.csv").is_file(),
    reason="../shared/data/clive-dev is not present (shared data is optional for the unit tests)",
)
def test_clive_dev_reads_from_shared_data() -> None:
    table = load_dataset(REG.dataset("clive-dev"), SHARED)
    assert table.n_images == 627 and not table.partial and table.layout == "csv"
    assert table.frame["name"].str.startswith("Images/").all()
    assert table.frame["mos"].between(0, 100).all()
    assert (table.frame["ref"] == table.frame["name"]).all()
