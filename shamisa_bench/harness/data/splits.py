"""Train/val/test splits as pure functions of (image names, groups, ratios, seed).

* ``reference``: reference-disjoint. The sorted distinct groups are permuted by
  ``numpy.random.default_rng(seed)`` and cut into train/val/test by group count; every image
  follows its group, so no reference content is shared between parts.
* ``random``: the same with one group per image.
* ``official``: the dataset's own ``official_split`` column; the seed is not used.

Nothing depends on row order: the same names, groups, ratios and seed give the same parts.
Each :class:`Split` carries a sha256 of its sorted member names per part, recorded with
results so a run can be checked and reproduced; :func:`split_columns` exports splits as
pyiqa-style meta-CSV columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from shamisa_bench.common.splits import permuted_group_parts

if TYPE_CHECKING:
    from shamisa_bench.harness.data.table import DatasetTable

__all__ = [
    "Split",
    "group_split",
    "make_split_set",
    "make_splits",
    "official_split",
    "split_columns",
]

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One train/val/test split of a table.

    Attributes:
        train, val, test: sorted int64 row indices into ``table.frame``. Shapes: (n_train,),
            (n_val,), (n_test,); disjoint, together covering every row.
        seed: the seed used (``None`` for an official split).
        method: ``reference``, ``random`` or ``official``.
        part_hashes: ``{"train"|"val"|"test": sha256 of the sorted member names, one per line}``.
        hash: sha256 over the three part hashes (one string to record).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int | None
    method: str
    part_hashes: dict[str, str]
    hash: str

    def sizes(self) -> tuple[int, int, int]:
        """(n_train, n_val, n_test)."""
        return len(self.train), len(self.val), len(self.test)


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(not np.isfinite(r) or r < 0 for r in ratios):
        raise ValueError(f"ratios must be three non-negative numbers, got {tuple(ratios)}")
    total = float(sum(ratios))
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {tuple(ratios)} (sum {total})")
    if ratios[0] <= 0 or ratios[2] <= 0:
        raise ValueError(f"train and test ratios must be > 0, got {tuple(ratios)}")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def _counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Group counts per part: rounded, with train and test non-empty (and val when asked and n >= 3)."""
    n_test = max(1, int(round(ratios[2] * n)))
    n_val = int(round(ratios[1] * n))
    if ratios[1] > 0 and n >= 3:
        n_val = max(1, n_val)
    n_train = n - n_test - n_val
    while n_train < 1 and (n_val > 0 or n_test > 1):
        if n_val > (1 if ratios[1] > 0 else 0):
            n_val -= 1
        elif n_test > 1:
            n_test -= 1
        elif n_val > 0:
            n_val -= 1
        n_train = n - n_test - n_val
    return n_train, n_val, n_test


def _hashes(names: Sequence[str], parts: Sequence[np.ndarray]) -> tuple[dict[str, str], str]:
    part_hashes = {}
    for label, idx in zip(PARTS, parts):
        members = sorted(names[i] for i in idx)
        part_hashes[label] = hashlib.sha256("\n".join(members).encode("utf-8")).hexdigest()
    total = hashlib.sha256("".join(f"{k}:{part_hashes[k]}\n" for k in PARTS).encode("ascii")).hexdigest()
    return part_hashes, total


def group_split(
    names: Sequence[str],
    groups: Sequence[str],
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    *,
    method: str = "reference",
) -> Split:
    """Split items so that each group lands wholly in one part.

    Args:
        names: item identities, shape (n,); unique.
        groups: group key per item, shape (n,) (the reference; the name for a random split).
        ratios: (train, val, test) fractions of the groups; sum to 1, train and test > 0.
        seed: seed of ``numpy.random.default_rng``.
        method: label stored in the split.

    Returns:
        The :class:`Split` (indices refer to positions in ``names``).

    Raises:
        ValueError: bad ratios, mismatched lengths, duplicate names, or fewer than 2 groups.
    """
    r = _check_ratios(ratios)
    names = [str(n) for n in names]
    groups = [str(g) for g in groups]
    if len(names) != len(groups):
        raise ValueError(f"names and groups differ in length ({len(names)} vs {len(groups)})")
    if len(set(names)) != len(names):
        raise ValueError("names must be unique")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    distinct = sorted(set(groups))
    if len(distinct) < 2:
        raise ValueError(f"need at least 2 groups to split, got {len(distinct)}")
    n_train, n_val, _ = _counts(len(distinct), r)
    code = {g: i for i, g in enumerate(distinct)}
    group_of = np.array([code[g] for g in groups], dtype=np.int64)
    parts = permuted_group_parts(group_of, len(distinct), (n_train, n_val), np.random.default_rng(int(seed)))
    part_hashes, total = _hashes(names, parts)
    return Split(
        train=parts[0], val=parts[1], test=parts[2], seed=int(seed), method=method, part_hashes=part_hashes, hash=total
    )


def official_split(names: Sequence[str], assignment: Sequence[str | None]) -> Split:
    """The split given by an ``official_split`` column (values train/val/test).

    Raises:
        ValueError: an item has no assignment or an unknown one, or train/test is empty.
    """
    names = [str(n) for n in names]
    buckets: list[list[int]] = [[], [], []]
    for i, (name, part) in enumerate(zip(names, assignment)):
        if part not in PARTS:
            raise ValueError(f"image {name!r} has no valid official split (got {part!r})")
        buckets[PARTS.index(part)].append(i)
    if not buckets[0] or not buckets[2]:
        raise ValueError("the official split leaves train or test empty")
    parts = [np.array(b, dtype=np.int64) for b in buckets]
    part_hashes, total = _hashes(names, parts)
    return Split(
        train=parts[0], val=parts[1], test=parts[2], seed=None, method="official", part_hashes=part_hashes, hash=total
    )


def make_splits(table: DatasetTable, seed: int, ratios: Sequence[float] = (0.7, 0.1, 0.2)) -> Split:
    """The split of ``table`` its registry entry asks for (``spec.split``).

    Args:
        table: the dataset (after any :func:`~shamisa_bench.harness.data.exclude`).
        seed: split seed (unused for ``official``).
        ratios: (train, val, test).

    Raises:
        ValueError: ``official`` asked for but the table has no complete ``official_split``.
    """
    names = table.frame["name"].tolist()
    method = table.spec.split
    if method == "official":
        if "official_split" not in table.frame.columns:
            raise ValueError(
                f"dataset {table.spec.name!r} asks for its official split, but the {table.layout} layout "
                f"at {table.root} does not provide one (see the registry entry's layouts)"
            )
        return official_split(names, [v if isinstance(v, str) else None for v in table.frame["official_split"]])
    groups = table.frame["ref"].tolist() if method == "reference" else names
    return group_split(names, groups, ratios, seed, method=method)


def make_split_set(
    table: DatasetTable,
    n_splits: int = 10,
    base_seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
) -> list[Split]:
    """``n_splits`` splits with seeds ``base_seed + i``.

    An ``official`` split exists once: the list then holds that single split (repeating it
    would only fake a spread over splits).
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    if table.spec.split == "official":
        return [make_splits(table, base_seed, ratios)]
    return [make_splits(table, base_seed + i, ratios) for i in range(n_splits)]


def split_columns(
    table: DatasetTable, splits: Sequence[Split], ratios: Sequence[float] = (0.7, 0.1, 0.2)
) -> pd.DataFrame:
    """Splits as pyiqa-style meta-CSV columns (``ratio712_seed<seed>_split_<i>`` = train/val/test).

    Returns:
        A DataFrame with ``name`` and one column per split, one row per table row.
    """
    tag = "".join(str(int(round(r * 10))) for r in ratios)
    out = pd.DataFrame({"name": table.frame["name"].tolist()})
    for i, split in enumerate(splits, start=1):
        col = np.empty(len(out), dtype=object)
        for label, idx in zip(PARTS, (split.train, split.val, split.test)):
            col[idx] = label
        seed = "official" if split.seed is None else str(split.seed)
        out[f"ratio{tag}_seed{seed}_split_{i:02d}"] = col
    return out
