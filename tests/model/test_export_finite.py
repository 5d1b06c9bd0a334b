"""Exports and their averages hold finite weights only: refused otherwise, naming the tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shamisa_bench import cli
from shamisa_bench.model import build_encoder, save_encoder_export
from shamisa_bench.model.average import average_state_dicts


def test_average_refuses_non_finite_and_overflowing_weights() -> None:
    a = {"w": torch.tensor([1.0, 2.0])}
    b = {"w": torch.tensor([3.0, 4.0])}
    for bad in ([float("inf"), 1.0], [1.0, float("-inf")]):
        with pytest.raises(ValueError, match="finite"):
            average_state_dicts([a, b], bad)
    with pytest.raises(ValueError, match="sum to inf: scale them down"):
        average_state_dicts([a, b], [1e308, 1e308])
    assert torch.equal(average_state_dicts([a, b], [1e300, 1e300])["w"], torch.tensor([2.0, 3.0]))


def test_average_refuses_a_non_finite_result() -> None:
    a = {"w": torch.tensor([1.0, float("nan")]), "v": torch.tensor([3e38])}
    b = {"w": torch.tensor([3.0, 4.0]), "v": torch.tensor([3e38])}
    with pytest.raises(ValueError, match=r"average of 'w' has 1 non-finite value"):
        average_state_dicts([a, b])
    huge = {"w": torch.tensor([1.0, 2.0]), "v": torch.tensor([3e38], dtype=torch.float64) * 10}
    with pytest.raises(ValueError, match=r"average of 'v' .*overflows float32"):
        average_state_dicts([{**huge}, {**huge}])


def test_verify_export_refuses_non_finite_weights(tmp_path: Path, capsys) -> None:
    encoder = build_encoder("resnet18", "random", seed=0)
    state = encoder.state_dict()
    state["trunk.conv1.weight"][0, 0, 0, 0] = float("nan")
    encoder.load_state_dict(state)
    bad = save_encoder_export(encoder, tmp_path / "bad")
    assert cli.main(["model", "verify-export", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "'trunk.conv1.weight' holds 1 NaN or infinite value(s)" in captured.err and '"ok"' not in captured.out
