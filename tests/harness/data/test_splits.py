"""Split properties: disjoint references, sizes, determinism, order invariance, hashes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from shamisa_bench.harness.data import (
    DatasetTable,
    group_split,
    load_dataset,
    make_split_set,
    make_splits,
    official_split,
    split_columns,
)
from shamisa_bench.harness.registry import load_registry
from tests.fixtures.iqa_datasets import build

REG = load_registry()


def _table(tmp_path: Path, name: str) -> DatasetTable:
    truth = build(name, tmp_path, "official")
    return load_dataset(dataclasses.replace(REG.dataset(name), n_images=len(truth)), tmp_path)


def _synthetic(n_refs: int = 10, per_ref: int = 6) -> tuple[list[str], list[str]]:
    names = [f"r{r:02d}_d{d}.png" for r in range(n_refs) for d in range(per_ref)]
    groups = [n[:3] for n in names]
    return names, groups


def test_reference_split_is_disjoint_and_complete() -> None:
    names, groups = _synthetic()
    s = group_split(names, groups, (0.7, 0.1, 0.2), seed=3)
    parts = [s.train, s.val, s.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(names)))
    ref_sets = [{groups[i] for i in p} for p in parts]
    assert not (ref_sets[0] & ref_sets[1]) and not (ref_sets[0] & ref_sets[2]) and not (ref_sets[1] & ref_sets[2])
    assert [len(r) for r in ref_sets] == [7, 1, 2]  # 10 references at 70/10/20
    assert s.sizes() == (42, 6, 12)
    assert all(np.all(np.diff(p) > 0) for p in parts) and s.train.dtype == np.int64


def test_same_seed_same_split_other_seed_other_split() -> None:
    names, groups = _synthetic()
    a, b = group_split(names, groups, seed=5), group_split(names, groups, seed=5)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test) and a.hash == b.hash
    c = group_split(names, groups, seed=6)
    assert c.hash != a.hash
    assert len({group_split(names, groups, seed=s).hash for s in range(10)}) > 5


def test_split_does_not_depend_on_row_order() -> None:
    names, groups = _synthetic()
    perm = np.random.default_rng(0).permutation(len(names))
    names2, groups2 = [names[i] for i in perm], [groups[i] for i in perm]
    a, b = group_split(names, groups, seed=1), group_split(names2, groups2, seed=1)
    for pa, pb in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert sorted(names[i] for i in pa) == sorted(names2[i] for i in pb)
    assert a.part_hashes == b.part_hashes and a.hash == b.hash


def test_random_split_sizes() -> None:
    names = [f"img{i:04d}.jpg" for i in range(1000)]
    s = group_split(names, names, (0.7, 0.1, 0.2), seed=0, method="random")
    assert s.sizes() == (700, 100, 200) and s.method == "random"


def test_tiny_group_counts_keep_train_and_test() -> None:
    for n in (2, 3, 4, 5):
        names = [f"g{i}" for i in range(n)]
        s = group_split(names, names, seed=0)
        assert len(s.train) >= 1 and len(s.test) >= 1 and sum(s.sizes()) == n
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_split(["a", "b"], ["g", "g"], seed=0)


@pytest.mark.parametrize("ratios", [(0.7, 0.1), (0.8, 0.1, 0.2), (0.0, 0.5, 0.5), (0.9, 0.1, 0.0)])
def test_bad_ratios_raise(ratios: tuple[float, ...]) -> None:
    names, groups = _synthetic()
    with pytest.raises(ValueError, match="ratios"):
        group_split(names, groups, ratios, seed=0)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="unique"):
        group_split(["a", "a", "b"], ["x", "x", "y"], seed=0)
    with pytest.raises(ValueError, match="length"):
        group_split(["a", "b"], ["x"], seed=0)
    with pytest.raises(TypeError, match="seed"):
        group_split(["a", "b", "c"], ["a", "b", "c"], seed=1.5)  # type: ignore[arg-type]


def test_make_splits_follows_the_registry(tmp_path: Path) -> None:
    csiq = _table(tmp_path / "csiq", "csiq")  # synthetic: reference-disjoint
    s = make_splits(csiq, seed=0)
    refs = csiq.frame["ref"].to_numpy()
    assert s.method == "reference" and not set(refs[s.train]) & set(refs[s.test])
    spaq = _table(tmp_path / "spaq", "spaq")  # authentic: random
    assert make_splits(spaq, seed=0).method == "random"
    flive = _table(tmp_path / "flive", "flive")  # official
    o = make_splits(flive, seed=0)
    split_col = flive.frame["official_split"].to_numpy()
    assert o.method == "official" and o.seed is None
    assert (
        set(split_col[o.train]) == {"train"} and set(split_col[o.val]) == {"val"} and set(split_col[o.test]) == {"test"}
    )
    assert len(make_split_set(flive, n_splits=10)) == 1


def test_official_split_without_column_is_an_error(tmp_path: Path) -> None:
    spaq = _table(tmp_path, "spaq")
    forced = dataclasses.replace(spaq, spec=dataclasses.replace(spaq.spec, split="official"))
    with pytest.raises(ValueError, match="official split"):
        make_splits(forced, seed=0)
    with pytest.raises(ValueError, match="no valid official split"):
        official_split(["a", "b"], ["train", None])


def test_split_set_seeds_and_pyiqa_columns(tmp_path: Path) -> None:
    table = _table(tmp_path, "csiq")
    splits = make_split_set(table, n_splits=10, base_seed=100)
    assert [s.seed for s in splits] == list(range(100, 110))
    again = make_split_set(table, n_splits=10, base_seed=100)
    assert [s.hash for s in splits] == [s.hash for s in again]
    cols = split_columns(table, splits[:2])
    assert list(cols.columns) == ["name", "ratio712_seed100_split_01", "ratio712_seed101_split_02"]
    col = cols["ratio712_seed100_split_01"].to_numpy()
    assert (col[splits[0].train] == "train").all() and (col[splits[0].test] == "test").all()
    with pytest.raises(ValueError, match="n_splits"):
        make_split_set(table, n_splits=0)
