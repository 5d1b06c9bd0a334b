"""The one way splits are drawn: permute the groups, cut the permutation into parts.

The harness's train/val/test splits (:func:`shamisa_bench.harness.data.splits.group_split`),
the validation splits that choose a head's alpha
(:func:`shamisa_bench.iqa.head.validation_splits`) and the ridge benchmark's splits all draw
with :func:`permuted_group_parts`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["permuted_group_parts"]


def permuted_group_parts(
    group_of: NDArray[np.integer],
    n_groups: int,
    counts: Sequence[int],
    rng: np.random.Generator,
) -> list[NDArray[np.int64]]:
    """Cut a random permutation of the groups into parts; every item follows its group.

    One ``rng.permutation(n_groups)`` is drawn; its first ``counts[0]`` groups form part 0,
    the next ``counts[1]`` part 1, and so on; the groups left over form a last part.

    Args:
        group_of: (n,) group index in ``[0, n_groups)`` of each item.
        n_groups: Number of groups.
        counts: Groups in each part but the last; their sum at most ``n_groups``.
        rng: The generator to draw the permutation from (advanced by one draw).

    Returns:
        ``len(counts) + 1`` sorted int64 arrays of item indices, disjoint, covering every item.

    Raises:
        ValueError: Negative counts, or counts summing to more than ``n_groups``.
    """
    if any(c < 0 for c in counts) or sum(counts) > n_groups:
        raise ValueError(f"counts must be >= 0 and sum to at most {n_groups}, got {tuple(counts)}")
    order = rng.permutation(n_groups)
    part_of_group = np.full(n_groups, len(counts), dtype=np.int64)
    start = 0
    for part, count in enumerate(counts):
        part_of_group[order[start : start + count]] = part
        start += count
    part_of_item = part_of_group[np.asarray(group_of, dtype=np.int64)]
    return [np.flatnonzero(part_of_item == part).astype(np.int64) for part in range(len(counts) + 1)]
