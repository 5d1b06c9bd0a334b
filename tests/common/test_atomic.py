"""The atomic writers: whole new file or the old one, never a temporary file left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shamisa_bench.common.atomic import (
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_writers_create_the_folder_and_write_the_content(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01") == tmp_path / "a" / "b.bin"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    atomic_write_json(tmp_path / "j.json", {"x": [1, 2]}, indent=1)
    assert (tmp_path / "j.json").read_text() == json.dumps({"x": [1, 2]}, indent=1) + "\n"
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "w.pt")
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "j.json", "t.txt", "w.pt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old")

    def fail(fh: object) -> None:
        fh.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
