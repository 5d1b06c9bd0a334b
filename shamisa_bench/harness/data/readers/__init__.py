"""Per-dataset readers. Each module offers ``official_files``, ``read_official`` and
``read_pyiqa_layout``; :data:`READERS` maps a registry ``reader`` to its module."""

from __future__ import annotations

from types import ModuleType

from shamisa_bench.harness.data.readers import (
    csiq,
    flive,
    generic_csv,
    kadid10k,
    koniq10k,
    live,
    livec,
    spaq,
    tid2013,
)
from shamisa_bench.harness.data.readers._base import ReadResult
from shamisa_bench.harness.data.readers._common import ImageFinder, Row

__all__ = ["READERS", "ImageFinder", "ReadResult", "Row"]

READERS: dict[str, ModuleType] = {
    "live": live,
    "csiq": csiq,
    "tid2013": tid2013,
    "kadid10k": kadid10k,
    "livec": livec,
    "koniq10k": koniq10k,
    "spaq": spaq,
    "flive": flive,
    "csv": generic_csv,
}
