"""SHAMISA's compositional distortion engine.

- :data:`CATALOG` / :data:`GROUPS`: the 26 types in 7 groups with their anchors.
- :func:`severity_to_value`, :func:`sample_severities`: continuous severity.
- :func:`apply_distortion`, :func:`distort`: one type on a batch ``(N, 3, H, W)`` in [0, 1].
- :func:`sample_composition`, :func:`apply_composition_group`: composition groups, and
  :class:`CompositionMeta`, the record of what a group applied.

The crops of a pretraining step are built from these in :mod:`shamisa_bench.train.steps`.
"""

from __future__ import annotations

from shamisa_bench.distortions.catalog import (
    CATALOG,
    GROUPS,
    SEVERITY_SAMPLERS,
    DistortionType,
    sample_severities,
    severity_to_value,
    types_in_group,
    value_to_severity,
)
from shamisa_bench.distortions.compose import (
    CompositionMeta,
    CompositionPlan,
    apply_composition_from_scratch,
    apply_composition_group,
    make_composition,
    sample_composition,
)
from shamisa_bench.distortions.engine import apply_distortion, distort

__all__ = [
    "CATALOG",
    "GROUPS",
    "SEVERITY_SAMPLERS",
    "CompositionMeta",
    "CompositionPlan",
    "DistortionType",
    "apply_composition_from_scratch",
    "apply_composition_group",
    "apply_distortion",
    "distort",
    "make_composition",
    "sample_composition",
    "sample_severities",
    "severity_to_value",
    "types_in_group",
    "value_to_severity",
]
