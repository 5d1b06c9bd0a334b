"""Command-line smoke tests of the engine: distortions ls, distortions sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shamisa_bench.cli import main
from shamisa_bench.distortions import CATALOG, GROUPS


def test_distortions_json_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distortions", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["type"] for r in rows if r["group"] == "blur"] == ["gaussian_blur", "lens_blur", "motion_blur"]
    assert len(rows) == 26 and {r["group"] for r in rows} == set(GROUPS)
    by_type = {r["type"]: r for r in rows}
    assert by_type["jpeg"]["anchors"] == [43, 36, 24, 7, 4] and by_type["jpeg"]["integer"] is True
    assert by_type["white_noise"]["integer"] is False
    assert all(r["description"] for r in rows)
    assert set(by_type) == set(CATALOG)


def test_distortions_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["distortions", "ls"]) == 0
    out = capsys.readouterr().out
    for name in ("gaussian_blur", "nonlinear_contrast", "sharpness_contrast"):
        assert name in out


def test_distort_writes_a_labelled_contact_sheet(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    def write_sheet(target: Path) -> int:
        return main(["distortions", "sheet", str(photo), "--out", str(target),
                     "--types", "gaussian_blur", "jpeg", "color_block", "--seed", "3", "--size", "40"])

    out = tmp_path / "sheets" / "sheet.png"
    assert write_sheet(out) == 0
    assert "wrote" in capsys.readouterr().out
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 3 type rows + the composition row, reference + 5 levels per row
    assert sheet.shape[0] > 4 * 40 and sheet.shape[1] > 6 * 40
    # The cells differ: level 5 of the blur row is not the reference.
    ref_cell = sheet[22 : 22 + 40, 210 : 210 + 40]
    blur5 = sheet[22 : 22 + 40, 210 + 5 * 44 : 210 + 5 * 44 + 40]
    assert np.abs(ref_cell.astype(int) - blur5.astype(int)).mean() > 2
    # Same seed, same sheet.
    again = tmp_path / "again.png"
    assert write_sheet(again) == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out)))


def test_distort_all_types(photo: Path, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "all.png"
    assert main(["distortions", "sheet", str(photo), "--out", str(out), "--size", "32"]) == 0
    _w, h = Image.open(out).size
    assert h >= 27 * 32  # 26 types + composition group


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["--types", "gausian_blur"], "valid types"),
        (["--size", "4"], "--size"),
    ],
)
def test_distort_bad_arguments(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv_tail: list[str], message: str
) -> None:
    assert main(["distortions", "sheet", str(photo), "--out", str(tmp_path / "s.png"), *argv_tail]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_distort_bad_image_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.png"
    assert main(["distortions", "sheet", str(missing), "--out", str(tmp_path / "s.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    assert main(["distortions", "sheet", str(corrupt), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "corrupt.jpg" in err and "error" in err
    assert not (tmp_path / "s.png").exists()
