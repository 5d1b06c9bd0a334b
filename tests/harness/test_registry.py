"""The registry: shipped entries, schema checks, cross-references, include and overlays."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shamisa_bench.cli import main
from shamisa_bench.harness import registry as registry_module
from shamisa_bench.harness.registry import (
    Registry,
    RegistryError,
    default_registry_root,
    load_registry,
    validate_registry,
)
from tests import REPO

DATASETS = {"live", "csiq", "tid2013", "kadid10k", "livec", "koniq10k", "spaq", "flive", "clive-dev", "clive-sel",
            "clive-eval", "demo"}
PYIQA_SCORES = {
    "niqe",
    "brisque",
    "ilniqe",
    "nrqm",
    "piqe",
    "entropy",
    "arniqa",
    "dbcnn",
    "hyperiqa",
    "musiq",
    "clipiqa",
    "topiq_nr",
    "maniqa",
    "liqe",
    # full-reference (params.reference), each image against its reference
    "psnr", "ssim", "ms_ssim", "gmsd", "vif", "fsim", "vsi", "mad", "nlpd", "lpips", "dists", "shamisa-fr",
}
PROBES = {
    "lite0-imagenet": ("efficientnet_lite0", "imagenet"),
    "lite0-random": ("efficientnet_lite0", "random"),
    "resnet50-imagenet": ("resnet50", "imagenet"),
    "resnet50-random": ("resnet50", "random"),
    "shamisa-lite": ("efficientnet_lite0", "export"),
    "shamisa-lite-crops5": ("efficientnet_lite0", "export"),
    "shamisa-lite-multilevel": ("efficientnet_lite0", "export"),
    "lite0-imagenet-crops5": ("efficientnet_lite0", "imagenet"),
    "lite0-imagenet-multilevel": ("efficientnet_lite0", "imagenet"),
    "lite0-imagenet-fr": ("efficientnet_lite0", "imagenet"),
    "lite0-imagenet-fr-distance": ("efficientnet_lite0", "imagenet"),
    "shamisa-lite-fr": ("efficientnet_lite0", "export"),
}
# registry/experiments/: the research entries (the CPU pretraining study and the shipping rule's candidates)
EXPERIMENT_PROBES = {
    "lite0-var-only-lite-cpu-300",
    "lite0-var-only-fixed-projector-lite-cpu-250",
    *{f"lite0-imagenet-{c}"
      for c in ("objective-step-s27", "noise-step-s27-1", "noise-step-s27-2", "objective-step-s28", "noise-step-s28-2",
                "objective-step-s29", "noise-step-s29-1", "objective-step-s27-b", "noise-step-s27-b1",
                "noise-step-s28-h1", "noise-step-s28-h2", "noise-step-s28-h3", "noise-step-s28-h4")},
    *{f"lite0-shamisa-{g}"
      for g in ("full", "vicreg-binary", "metadata-only", "structure-only", "full-1000", "metadata-anchor-1000",
                "vicreg-frozen-anchor-1000", "full-frozen-anchor-1000", "lite-cpu-1000",
                "vicreg-lite-cpu-1000", "metadata-lite-cpu-1000", "structure-lite-cpu-1000",
                "metadata-lite-cpu-1000-swa", "structure-lite-cpu-1000-swa", "initial-graph-lite-cpu-1000",
                "initial-graph-lite-cpu-1000-swa",
                "initial-graph-lite-cpu-seed28-500", "lite-cpu-rerun-500",
                "unanchored-lite-cpu-seed28-1000", "unanchored-lite-cpu-1000-last")},
    *{f"candidate-{c}-{mode}" for c in "abc" for mode in ("whole", "multilevel")},
}
SUITES = {"demo", "synthetic", "authentic", "cross", "clive-eval", "feature-modes-clive-eval", "robustness",
          "fr-synthetic", "fr-demo"}
EXPERIMENT_SUITES = {"clive-dev", "ablation", "feature-modes", "selection", "ablation-clive-eval",
                     "ablation-multilevel-clive-eval"}


@pytest.fixture(scope="module")
def reg() -> Registry:
    return load_registry()


@pytest.fixture()
def reg_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "registry"
    shutil.copytree(REPO / "registry", dst)
    return dst


def _write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_shipped_registry_is_valid_and_complete(reg: Registry) -> None:
    assert validate_registry() == []
    assert set(reg.datasets) == DATASETS
    assert PYIQA_SCORES | set(PROBES) | {"shamisa"} == set(reg.product("metrics"))
    assert set(reg.metrics) - set(reg.product("metrics")) == EXPERIMENT_PROBES
    assert set(reg.product("suites")) == SUITES
    assert set(reg.suites) == SUITES | EXPERIMENT_SUITES
    assert reg.product("datasets") == sorted(reg.datasets)
    assert set(reg.protocols) == {"intra", "cross", "robustness"}
    for name in EXPERIMENT_PROBES:
        assert reg.metric(name).kind == "feature-probe" and reg.is_experiment("metrics", name)
    for name, (backbone, init) in PROBES.items():
        m = reg.metric(name)
        assert (m.kind, m.backbone, m.init) == ("feature-probe", backbone, init)
    assert reg.metric("shamisa").kind == "shamisa"
    assert reg.metric("shamisa-lite").export == "shipped"
    assert "shamisa" in reg.suite("demo").metrics  # the README's main command scores SHAMISA


def test_packaged_registry_is_the_top_level_folder() -> None:
    root = default_registry_root()
    assert (root / "datasets" / "live.yaml").is_file()
    assert (root / "datasets").resolve() == (REPO / "registry" / "datasets").resolve()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"harness/data/registry/*/*.yaml"' in pyproject
    assert root == Path(registry_module.__file__).resolve().parent / "data" / "registry"


def test_dataset_keys_and_directions_match_pyiqa(reg: Registry) -> None:
    import pyiqa

    cfg = yaml.safe_load((Path(pyiqa.__file__).parent / "default_dataset_configs.yml").read_text())
    for name, spec in reg.datasets.items():
        if name in ("clive-dev", "clive-sel", "clive-eval", "demo"):
            continue
        assert name in cfg, f"{name} is not a pyiqa dataset key"
        assert spec.lower_better == cfg[name]["lower_better"], name
        assert list(spec.mos_range) == [float(v) for v in cfg[name]["mos_range"]], name
        assert spec.kind == ("synthetic" if spec.split == "reference" else "authentic"), name
    assert reg.dataset("flive").split == "official"
    assert reg.dataset("demo").pseudo_mos and not reg.dataset("livec").pseudo_mos
    assert reg.dataset("clive-dev").n_images == 627


def test_pyiqa_metric_names_and_lower_better_match_pyiqa(reg: Registry) -> None:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for name in PYIQA_SCORES:
        m = reg.metric(name)
        assert m.pyiqa_name == name and name in DEFAULT_CONFIGS
        assert m.lower_better == DEFAULT_CONFIGS[name].get("lower_better", False), name


def test_include_merges_base_and_suite_defaults_come_from_protocol(reg: Registry) -> None:
    p = reg.protocol("intra")
    assert p.ratios == (0.7, 0.1, 0.2) and p.n_splits == 10 and p.alpha_grid.n == 25
    assert len(p.alpha_grid.values()) == 25 and p.alpha_grid.values()[0] == pytest.approx(1e-3)
    assert reg.suite("demo").n_splits == 10 and reg.suite("demo").seed == 0
    pairs = reg.suite("cross").resolved_pairs()
    assert len(pairs) == 12 and ("live", "csiq") in pairs and ("csiq", "live") in pairs
    assert all(a != b for a, b in pairs)


def test_unknown_names_list_the_valid_ones(reg: Registry) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*clive-dev.*koniq10k"):
        reg.dataset("nope")
    with pytest.raises(ValueError, match="unknown metric 'nope'.*piqe"):
        reg.metric("nope")
    with pytest.raises(ValueError, match="unknown suite 'nope'.*synthetic"):
        reg.suite("nope")


def test_versions_for_provenance(reg: Registry) -> None:
    v = reg.suite_versions("clive-dev")
    assert v["suites/clive-dev"] == 1 and v["datasets/clive-dev"] == 1 and "metrics/piqe" in v
    assert "protocols/intra" in v
    assert reg.versions()["datasets/live"] == 1


def test_validate_catches_dangling_reference(reg_copy: Path) -> None:
    _write(
        reg_copy / "suites" / "broken.yaml",
        {
            "name": "broken",
            "version": 1,
            "datasets": ["live", "nope"],
            "metrics": ["piqe", "ghost"],
            "protocol": "intra",
        },
    )
    problems = validate_registry(reg_copy)
    assert any("broken.yaml" in p and "'nope'" in p and "dataset" in p for p in problems)
    assert any("broken.yaml" in p and "'ghost'" in p and "metric" in p for p in problems)
    with pytest.raises(RegistryError, match="nope"):
        load_registry(reg_copy)


def test_a_product_suite_may_not_use_a_research_metric(reg_copy: Path) -> None:
    _write(reg_copy / "suites" / "mixed.yaml",
           {"name": "mixed", "version": 1, "datasets": ["clive-eval"], "metrics": ["candidate-a-whole"],
            "protocol": "intra"})
    problems = validate_registry(reg_copy)
    assert any("mixed.yaml" in p and "candidate-a-whole" in p and "research entry" in p for p in problems)
    reg = load_registry()
    with pytest.raises(ValueError) as info:
        reg.metric("nope")
    assert "lite0-imagenet-multilevel" in str(info.value) and "candidate-a-whole" not in str(info.value)
    assert "research entries under experiments/" in str(info.value)
    assert reg.metric("candidate-a-whole").export == "runs/candidates/lite-1000-step100"  # still loads and runs


def test_a_partition_is_checked(reg_copy: Path) -> None:
    path = reg_copy / "datasets" / "clive-sel.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    _write(path, {**data, "partition": {"of": "clive-dev", "seed": -1, "fraction": 2, "part": "middle"}})
    problems = " ".join(validate_registry(reg_copy))
    assert "'seed' must be" in problems and "'fraction' must be" in problems and "'part' must be" in problems


@pytest.mark.parametrize(
    ("file", "data", "message"),
    [
        ("datasets/live.yaml", {"name": "other"}, "must equal the file stem"),
        ("datasets/live.yaml", {"colour": "red"}, "unknown field"),
        ("datasets/live.yaml", {"lower_better": "yes"}, "lower_better"),
        ("datasets/live.yaml", {"mos_range": [5, 1]}, "lo < hi"),
        ("datasets/live.yaml", {"reader": "magic"}, "reader"),
        ("datasets/live.yaml", {"lower_better": False}, "dmos"),
        ("metrics/lite0-random.yaml", {"init": "export"}, "needs 'export'"),
        ("metrics/lite0-random.yaml", {"feature_mode": "tiles"}, "feature_mode"),
        ("metrics/lite0-random.yaml", {"feature_mode": "whole", "protocol": "crops5"}, "disagree"),
        ("metrics/piqe.yaml", {"version": 0}, "version"),
        ("protocols/intra.yaml", {"ratios": [0.5, 0.1, 0.1]}, "sum to 1"),
        ("suites/cross.yaml", {"pair_rule": None}, "cross suite needs"),
        ("suites/demo.yaml", {"columns": ["srcc", "accuracy"]}, "unknown column"),
        ("suites/synthetic.yaml", {"pairs": [["live", "spaq"]]}, "only apply to a cross protocol"),
    ],
)
def test_schema_problems_are_reported(reg_copy: Path, file: str, data: dict, message: str) -> None:
    path = reg_copy / file
    content = yaml.safe_load(path.read_text())
    content.update(data)
    content = {k: v for k, v in content.items() if v is not None}
    _write(path, content)
    problems = validate_registry(reg_copy)
    assert any(message in p and path.name in p for p in problems), problems


def test_probe_feature_mode_also_read_from_its_former_key_protocol(reg_copy: Path) -> None:
    path = reg_copy / "metrics" / "lite0-random.yaml"
    content = yaml.safe_load(path.read_text())
    assert content["feature_mode"] == "whole"
    for keys in ({"protocol": "crops5"}, {"feature_mode": "crops5"}, {"feature_mode": "crops5", "protocol": "crops5"}):
        _write(path, {**{k: v for k, v in content.items() if k != "feature_mode"}, **keys})
        assert load_registry(reg_copy).metric("lite0-random").feature_mode == "crops5", keys
    _write(path, {k: v for k, v in content.items() if k != "feature_mode"})
    assert load_registry(reg_copy).metric("lite0-random").feature_mode == "whole"


def test_cross_pairs_must_be_suite_datasets(reg_copy: Path) -> None:
    path = reg_copy / "suites" / "cross.yaml"
    content = yaml.safe_load(path.read_text())
    content.pop("pair_rule")
    content["pairs"] = [["live", "spaq"]]
    _write(path, content)
    assert any("'spaq'" in p for p in validate_registry(reg_copy))


def test_yaml_tags_and_two_level_include_are_rejected(reg_copy: Path) -> None:
    (reg_copy / "metrics" / "evil.yaml").write_text("name: evil\nversion: 1\nkind: !!python/name:os.system\n")
    (reg_copy / "protocols" / "_mid.yaml").write_text("include: _base.yaml\nkind: intra\n")
    (reg_copy / "protocols" / "deep.yaml").write_text("include: _mid.yaml\nname: deep\n")
    problems = validate_registry(reg_copy)
    assert any("evil.yaml" in p and "not valid YAML" in p for p in problems)
    assert any("deep.yaml" in p and "one level" in p for p in problems)


def test_overlay_adds_a_user_dataset_with_one_file(tmp_path: Path) -> None:
    overlay = tmp_path / "mine"
    (overlay / "datasets").mkdir(parents=True)
    _write(
        overlay / "datasets" / "mydata.yaml",
        {
            "name": "mydata",
            "version": 1,
            "kind": "authentic",
            "label_type": "mos",
            "n_images": 3,
            "mos_range": [1, 5],
            "lower_better": False,
            "reader": "csv",
            "split": "random",
            "citation": "mine",
            "layouts": [{"type": "csv", "root": "mydata"}],
            "options": {"csv": "labels.csv", "image_column": "file", "mos_column": "score"},
        },
    )
    reg = load_registry(overlays=[overlay])
    assert reg.dataset("mydata").options["csv"] == "labels.csv"
    assert "live" in reg.datasets and reg.warnings == ()


def test_cli_validate_exit_codes(reg_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--registry", str(reg_copy)]) == 0
    assert "OK" in capsys.readouterr().out
    _write(
        reg_copy / "suites" / "broken.yaml",
        {"name": "broken", "version": 1, "datasets": ["nope"], "metrics": ["piqe"], "protocol": "intra"},
    )
    assert main(["validate", "--registry", str(reg_copy)]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "'nope'" in err
