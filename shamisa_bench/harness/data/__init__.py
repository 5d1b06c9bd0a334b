"""Datasets: readers for the official and pyiqa layouts, splits, the embedded demo set.

Typical use::

    from shamisa_bench.harness.registry import load_registry
    from shamisa_bench.harness.data import load_dataset, make_split_set

    reg = load_registry()
    table = load_dataset(reg.dataset("clive-dev"), "../shared/data")
    splits = make_split_set(table, n_splits=10, base_seed=0)

``table.frame`` has one row per image (``image``, ``name``, ``mos``, ``ref`` and, when the
release has one, ``official_split``).
"""

from __future__ import annotations

from shamisa_bench.harness.data.errors import (
    DatasetNotFoundError,
    LabelFileError,
    PartialDatasetError,
    SplitUnavailableError,
)
from shamisa_bench.harness.data.splits import (
    Split,
    group_split,
    make_split_set,
    make_splits,
    official_split,
    split_columns,
)
from shamisa_bench.harness.data.table import (
    DatasetStatus,
    DatasetTable,
    dataset_status,
    default_cache_dir,
    default_data_root,
    exclude,
    load_dataset,
    verify_images,
)

__all__ = [
    "DatasetNotFoundError",
    "DatasetStatus",
    "DatasetTable",
    "LabelFileError",
    "PartialDatasetError",
    "Split",
    "SplitUnavailableError",
    "dataset_status",
    "default_cache_dir",
    "default_data_root",
    "exclude",
    "group_split",
    "load_dataset",
    "make_split_set",
    "make_splits",
    "official_split",
    "split_columns",
    "verify_images",
]
