"""The reader interface: what each per-dataset module provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shamisa_bench.harness.data.readers._common import Row

__all__ = ["ReadResult"]


@dataclass(frozen=True)
class ReadResult:
    """What a reader returns for one layout.

    Attributes:
        rows: labelled images in label-file order.
        image_dirs: folders the names are resolved against, in order.
        by_basename: also match a unique file name anywhere below the folders.
        split_source: file the official split came from (``None`` when there is none).
        split_problem: why the official split cannot be read (e.g. a split file is
            missing), naming the files; ``None`` when there is no problem.
    """

    rows: Sequence[Row]
    image_dirs: Sequence[Path]
    by_basename: bool = False
    split_source: Path | None = None
    split_problem: str | None = None
