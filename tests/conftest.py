"""Fixtures several test modules share (their helpers are in ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import write_photo


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models gain nothing from threads, and on a busy
    machine they lose a lot. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    """A generated 56x72 RGB PNG with edges and gradients."""
    return write_photo(tmp_path / "photo.png")
