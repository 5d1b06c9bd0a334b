"""The one split primitive: parts follow the permuted groups, whatever the caller."""

from __future__ import annotations

import numpy as np
import pytest

from shamisa_bench.common.splits import permuted_group_parts


def test_parts_cover_every_item_once_and_keep_groups_whole() -> None:
    group_of = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])
    parts = permuted_group_parts(group_of, 6, (3, 1), np.random.default_rng(7))
    assert len(parts) == 3
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    groups = [set(group_of[p].tolist()) for p in parts]
    assert [len(g) for g in groups] == [3, 1, 2] and not (groups[0] & groups[1] or groups[1] & groups[2])


def test_one_permutation_per_call_in_order() -> None:
    rng, again = np.random.default_rng(3), np.random.default_rng(3)
    items = np.arange(20)
    first = permuted_group_parts(items, 20, (14, 2), rng)
    order = again.permutation(20)
    assert np.array_equal(first[0], np.sort(order[:14])) and np.array_equal(first[1], np.sort(order[14:16]))
    assert np.array_equal(permuted_group_parts(items, 20, (14, 2), rng)[0], np.sort(again.permutation(20)[:14]))


def test_bad_counts() -> None:
    with pytest.raises(ValueError, match="sum to at most 3"):
        permuted_group_parts(np.arange(3), 3, (2, 2), np.random.default_rng(0))
