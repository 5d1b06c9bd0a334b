"""Arguments several commands share: ``--feature-mode`` (alias ``--protocol``) and ``--device``."""

from __future__ import annotations

import pytest

from shamisa_bench.cli import build_parser
from shamisa_bench.common.device import default_device
from shamisa_bench.model.features import FEATURE_MODES

FIT_HEAD = ["fit-head", "--encoder", "export", "--dataset", "live", "--out", "head.pt"]


def test_feature_mode_and_its_former_name_protocol() -> None:
    parser = build_parser()
    assert parser.parse_args(FIT_HEAD).feature_mode == "whole"
    assert parser.parse_args([*FIT_HEAD, "--feature-mode", "crops5"]).feature_mode == "crops5"
    assert parser.parse_args([*FIT_HEAD, "--protocol", "crops5"]).feature_mode == "crops5"
    with pytest.raises(SystemExit):
        parser.parse_args([*FIT_HEAD, "--feature-mode", "tiles"])


def test_repeatable_feature_mode_collects_both_spellings() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "metric"]).feature_mode is None
    args = parser.parse_args(["bench", "metric", "--protocol", "crops5", "--feature-mode", "whole"])
    assert args.feature_mode == ["crops5", "whole"]
    assert set(FEATURE_MODES) == {"whole", "crops5", "multilevel"}


def test_protocol_is_hidden_from_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit-head", "--help"])
    out = capsys.readouterr().out
    assert "--feature-mode" in out and "--protocol" not in out


@pytest.mark.parametrize(
    "argv",
    [FIT_HEAD, ["run"], ["pretrain", "--images", "x", "--out", "y"], ["bench", "engine"], ["bench", "metric"]],
)
def test_every_device_option_defaults_to_auto(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).device == "auto"
    assert default_device() in ("cpu", "cuda")
