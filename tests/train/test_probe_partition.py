"""The validation probe chooses on a selection part only: an evaluation part is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from shamisa_bench.train.probe import ValidationProbe


def test_the_probe_refuses_an_evaluation_part(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clive-eval is the evaluation part of clive-dev.*clive-sel"):
        ValidationProbe("clive-eval", tmp_path)
