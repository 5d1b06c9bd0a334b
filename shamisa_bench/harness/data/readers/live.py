"""LIVE Image Quality Assessment Database, Release 2.

Official layout: ``dmos.mat`` with ``dmos`` (1x982) and ``orgs`` (1x982, 1 marks the copies of
the references), ``refnames_all.mat`` with ``refnames_all`` (1x982 cell of reference file
names), and the folders ``jp2k`` (227 images), ``jpeg`` (233), ``wn``, ``gblur``,
``fastfading`` (174 each), in that order in the .mat files, each image ``img<k>.bmp``.
``dmos_realigned.mat`` (``dmos_new``) can be chosen with ``options.dmos_file``.
Identity: ``<folder>/img<k>.bmp``.
"""

from __future__ import annotations

from pathlib import Path

from shamisa_bench.harness.data.errors import LabelFileError
from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import (
    Row,
    load_mat,
    mat_numbers,
    mat_strings,
    ref_key,
)
from shamisa_bench.harness.data.readers.pyiqa_layout import read_pyiqa
from shamisa_bench.harness.registry import DatasetLayout, DatasetSpec

__all__ = ["FOLDERS", "official_files", "read_official", "read_pyiqa_layout"]

FOLDERS: tuple[tuple[str, int], ...] = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


def official_files(spec: DatasetSpec) -> tuple[str, ...]:
    return (str(spec.options.get("dmos_file", "dmos.mat")),)


def read_official(spec: DatasetSpec, layout: DatasetLayout, root: Path, label_file: Path) -> ReadResult:
    mat = load_mat(label_file)
    key = "dmos_new" if "dmos_new" in mat else "dmos"
    dmos = mat_numbers(mat, key, label_file)
    orgs = mat_numbers(mat, "orgs", label_file)
    refs_path = root / "refnames_all.mat"
    if not refs_path.is_file():
        raise LabelFileError(refs_path, None, "file not found (the LIVE release ships it next to dmos.mat)")
    refnames = mat_strings(load_mat(refs_path), "refnames_all", refs_path)
    total = sum(n for _, n in FOLDERS)
    for what, values, path in (
        ("dmos", dmos, label_file),
        ("orgs", orgs, label_file),
        ("refnames_all", refnames, refs_path),
    ):
        if len(values) != total:
            raise LabelFileError(path, None, f"{what} has {len(values)} entries; LIVE release 2 has {total}")
    names = [f"{folder}/img{k}.bmp" for folder, n in FOLDERS for k in range(1, n + 1)]
    rows = []
    for i, (name, d, o, ref) in enumerate(zip(names, dmos, orgs, refnames), start=1):
        if o == 1:
            continue  # a copy of the reference
        if not ref:
            raise LabelFileError(refs_path, i, "missing reference name")
        rows.append(Row(name=name, mos=d, ref=ref_key(ref), line=i, extra={"distortion": name.split("/")[0]}))
    return ReadResult(rows=rows, image_dirs=[root / d for d in layout.images] or [root])


def _fix(name: str) -> str:
    # older pyiqa meta files omit the extension (jp2k/img2)
    return name if "." in name.rsplit("/", 1)[-1] else name + ".bmp"


def read_pyiqa_layout(spec: DatasetSpec, layout: DatasetLayout, root: Path, meta: Path) -> ReadResult:
    return read_pyiqa(
        spec,
        layout,
        root,
        meta,
        full_reference=True,
        fix_name=_fix,
        distortion=lambda n: n.split("/")[0] if "/" in n else None,
    )
