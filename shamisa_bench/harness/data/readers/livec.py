"""LIVE In the Wild Image Quality Challenge Database (CLIVE, ``livec``).

Official layout: ``Data/AllImages_release.mat`` (``AllImages_release``: cell of file names)
and ``Data/AllMOS_release.mat`` (``AllMOS_release``), ``Images/`` with the 1162 test images
and ``Images/trainingImages/`` with the 7 training images ``t1.bmp`` .. ``t7.bmp``, which are
listed first in the .mat files and, as in pyiqa and the literature, left out.
Identity: the file name as the .mat file gives it.
"""

from __future__ import annotations

import re
from pathlib import Path

from shamisa_bench.harness.data.errors import LabelFileError
from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import (
    Row,
    canonical_name,
    load_mat,
    mat_numbers,
    mat_strings,
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["is_training_image", "official_files", "read_official", "read_pyiqa_layout"]

_TRAINING = re.compile(r"^t\d+\.bmp$", re.IGNORECASE)


def is_training_image(name: str) -> bool:
    """True for the 7 CLIVE training images (``t1.bmp`` .. ``t7.bmp``)."""
    return bool(_TRAINING.match(name.rsplit("/", 1)[-1]))


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return ("Data/AllMOS_release.mat",)


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    mos = mat_numbers(load_mat(label_file), "AllMOS_release", label_file)
    names_path = label_file.parent / "AllImages_release.mat"
    if not names_path.is_file():
        raise LabelFileError(names_path, None, "file not found (the CLIVE release ships it next to AllMOS_release.mat)")
    names = mat_strings(load_mat(names_path), "AllImages_release", names_path)
    if len(names) != len(mos):
        raise LabelFileError(label_file, None, f"{len(mos)} MOS values but {names_path.name} lists {len(names)} images")
    rows = []
    for i, (name, m) in enumerate(zip(names, mos), start=1):
        name = canonical_name(name)
        if not name:
            raise LabelFileError(names_path, i, "missing image name")
        if is_training_image(name):
            continue
        if not (m == m and abs(m) != float("inf")):
            raise LabelFileError(label_file, i, f"MOS {m!r} is not finite")
        rows.append(Row(name=name, mos=float(m), ref=name, line=i))
    dirs = [root / d for d in layout.images] if layout.images else [root / "Images"]
    return ReadResult(rows=rows, image_dirs=dirs)


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(
        spec, layout, root, meta, full_reference=False, fix_name=lambda n: None if is_training_image(n) else n
    )
