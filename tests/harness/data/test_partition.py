"""The fixed selection/evaluation partition of a dataset (clive-sel and clive-eval)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shamisa_bench.harness.data import load_dataset
from shamisa_bench.harness.data.partition import partition_names
from shamisa_bench.harness.registry import load_registry
from tests import REPO
from tests.fixtures.iqa_datasets import write_image

REG = load_registry()
SHARED = REPO / ".." / "shared" / "data"


def test_partition_is_fixed_disjoint_and_complete() -> None:
    names = [f"Images/{i}.JPG" for i in range(627)]
    sel, ev = partition_names(names, seed=20261207, fraction=0.2)
    assert len(sel) == 125 and len(ev) == 502 and not sel & ev and sel | ev == set(names)
    assert partition_names(reversed(names), seed=20261207, fraction=0.2) == (sel, ev)  # order-free
    assert partition_names(names, seed=1, fraction=0.2)[0] != sel  # the seed decides
    with pytest.raises(ValueError, match="unique"):
        partition_names(["a", "a", "b"], 0, 0.5)
    with pytest.raises(ValueError, match="empty"):
        partition_names(["a", "b"], 0, 0.1)


def test_registry_parts_share_rule_and_label_file() -> None:
    sel, ev, dev = REG.dataset("clive-sel"), REG.dataset("clive-eval"), REG.dataset("clive-dev")
    assert sel.partition is not None and ev.partition is not None
    assert {k: v for k, v in sel.partition.items() if k != "part"} == {k: v for k, v in ev.partition.items() if k != "part"}
    assert (sel.partition["part"], ev.partition["part"], sel.partition["of"]) == ("selection", "evaluation", "clive-dev")
    assert sel.n_images + ev.n_images == dev.n_images
    assert sel.options == ev.options == dev.options and sel.checksums == dev.checksums


def test_load_dataset_keeps_only_its_part(tmp_path: Path) -> None:
    root = tmp_path / "clive-dev"
    (root / "Images").mkdir(parents=True)
    names = [f"Images/{i}.png" for i in range(10)]
    (root / "mos.csv").write_text("image,mos\n" + "".join(f"{n},{i * 10}\n" for i, n in enumerate(names)))
    for n in names:
        write_image(root / n)
    parts = {}
    for name, count in (("clive-sel", 2), ("clive-eval", 8)):
        spec = dataclasses.replace(REG.dataset(name), n_images=count, checksums={})
        parts[name] = set(load_dataset(spec, tmp_path).frame["name"])
    assert len(parts["clive-sel"]) == 2 and len(parts["clive-eval"]) == 8
    assert parts["clive-sel"] | parts["clive-eval"] == set(names)
    assert parts["clive-sel"] == set(partition_names(names, 20261207, 0.2)[0])


@pytest.mark.skipif(not (SHARED / "clive-dev" / "mos.csv").is_file(), reason="needs the shared clive-dev images")
def test_clive_parts_on_the_real_data() -> None:
    sel = load_dataset(REG.dataset("clive-sel"), SHARED)
    ev = load_dataset(REG.dataset("clive-eval"), SHARED)
    assert (sel.n_images, ev.n_images) == (125, 502)
    assert not set(sel.frame["name"]) & set(ev.frame["name"])
