"""A fixed partition of a labelled dataset into a selection part and an evaluation part.

Whatever is decided from data (pretraining validation, the choice of a checkpoint, a recipe,
a feature mode) is decided on the selection part; every reported figure is measured on the
evaluation part, so the figures are not inflated by the choice (the winner's curse). The rule
is fixed and needs no file: sort the image names, permute them with
``numpy.random.default_rng(seed)``, and take the first ``round(fraction * n)`` as the selection
part. A registry dataset declares its part with ``partition:`` (see
:attr:`shamisa_bench.harness.registry.DatasetSpec.partition`); ``clive-sel`` and ``clive-eval``
are the two parts of ``clive-dev``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["partition_names", "select_part"]


def partition_names(names: Iterable[str], seed: int, fraction: float) -> tuple[frozenset[str], frozenset[str]]:
    """Split image names into (selection, evaluation).

    Args:
        names: The dataset's image names (unique).
        seed: Seed of the permutation.
        fraction: Share of the selection part, in (0, 1).

    Returns:
        ``(selection, evaluation)``, disjoint, together every name.

    Raises:
        ValueError: Duplicate names, a fraction outside (0, 1), or a part that would be empty.
    """
    ordered = sorted(names)
    if len(set(ordered)) != len(ordered):
        raise ValueError("partition: image names must be unique")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"partition: fraction must be in (0, 1), got {fraction}")
    n_sel = int(round(float(fraction) * len(ordered)))
    if not 0 < n_sel < len(ordered):
        raise ValueError(f"partition: a fraction of {fraction} of {len(ordered)} images leaves a part empty")
    order = np.random.default_rng(seed).permutation(len(ordered))
    selection = frozenset(ordered[i] for i in order[:n_sel])
    return selection, frozenset(ordered) - selection


def select_part(names: Iterable[str], partition: dict[str, object]) -> frozenset[str]:
    """The names of a registry dataset's part (its ``partition:`` mapping, already checked)."""
    selection, evaluation = partition_names(names, int(partition["seed"]), float(partition["fraction"]))  # type: ignore[arg-type]
    return selection if partition["part"] == "selection" else evaluation
