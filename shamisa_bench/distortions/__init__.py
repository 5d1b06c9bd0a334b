"""SHAMISA's compositional distortion engine (spec section 2).

- :data:`CATALOG` / :data:`GROUPS`: the 26 types in 7 groups with their anchors.
- :func:`severity_to_value`, :func:`sample_severities`: continuous severity.
- :func:`apply_distortion`, :func:`distort`: one type on a batch ``(N, 3, H, W)`` in [0, 1].
- :func:`sample_composition`, :func:`apply_composition_group`: composition groups.
- :func:`build_item`, :func:`build_step`: the step layout of :mod:`shamisa_bench.layout`.
"""

from shamisa_bench.distortions.builder import build_item, build_step, crop_views
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
    "CompositionPlan",
    "DistortionType",
    "apply_composition_from_scratch",
    "apply_composition_group",
    "apply_distortion",
    "build_item",
    "build_step",
    "crop_views",
    "distort",
    "make_composition",
    "sample_composition",
    "sample_severities",
    "severity_to_value",
    "types_in_group",
    "value_to_severity",
]
