"""Errors raised by the data layer; each names the file (and row) or paths involved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DatasetNotFoundError", "LabelFileError", "PartialDatasetError", "SplitUnavailableError"]


class DatasetNotFoundError(FileNotFoundError):
    """No layout of a dataset was found under the data root.

    Attributes:
        dataset: registry name.
        expected: the label files looked for, one per layout and root candidate.
    """

    def __init__(self, dataset: str, expected: Sequence[Path], hint: str) -> None:
        self.dataset = dataset
        self.expected = [Path(p) for p in expected]
        where = "\n  ".join(str(p) for p in self.expected)
        self.what = "not found under the data root"
        super().__init__(f"dataset {dataset!r} not found; looked for:\n  {where}\n{hint}")


class SplitUnavailableError(DatasetNotFoundError):
    """A dataset evaluated on its official split was found, but the files that define the
    split were not: for a run it is unavailable, like a missing dataset, with this reason.

    Attributes:
        dataset: registry name.
        expected: the split files looked for.
        what: the one-line reason (``has no official split: ...``).
    """

    def __init__(self, dataset: str, expected: Sequence[Path], reason: str, hint: str) -> None:
        FileNotFoundError.__init__(self, f"dataset {dataset!r} has no official split: {reason}\n{hint}")
        self.dataset = dataset
        self.expected = [Path(p) for p in expected]
        self.what = f"has no official split ({reason})"


class PartialDatasetError(ValueError):
    """A dataset was found but is incomplete and ``allow_partial`` was not given.

    Attributes:
        dataset: registry name.
        n_present: images found on disk.
        n_expected: images a complete copy has.
        missing: names listed by the label file whose image is absent.
    """

    def __init__(self, dataset: str, n_present: int, n_expected: int, missing: Sequence[str], detail: str) -> None:
        self.dataset = dataset
        self.n_present = n_present
        self.n_expected = n_expected
        self.missing = list(missing)
        super().__init__(
            f"dataset {dataset!r} is partial: {n_present} of {n_expected} images present; {detail} "
            "(pass allow_partial=True / --allow-partial to run on what is there; it is recorded in the results)"
        )


class LabelFileError(ValueError):
    """A label (MOS) file does not parse, or has duplicate or missing names.

    Attributes:
        path: the label file.
        row: 1-based row (line number for text files, spreadsheet row, or entry index for
            ``.mat`` files); ``None`` when the problem concerns the whole file.
    """

    def __init__(self, path: Path | str, row: int | None, message: str) -> None:
        self.path = Path(path)
        self.row = row
        where = f"{self.path}, row {row}" if row is not None else str(self.path)
        super().__init__(f"{where}: {message}")
