"""SHAMISA's compositional distortion engine.

- :data:`CATALOG` / :data:`GROUPS`: the 26 types in 7 groups with their anchors.
- :func:`severity_to_value`, :func:`sample_severities`: continuous severity.
- :func:`apply_distortion`, :func:`distort`: one type on a batch ``(N, 3, H, W)`` in [0, 1].
- :func:`sample_composition`, :func:`apply_composition_group`: composition groups.
- :func:`build_item`, :func:`build_step`: the step layout of :mod:`shamisa_bench.layout`.

Submodules are imported on first attribute access, so importing the package (as the CLI
does at start-up) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "build_item": "builder",
    "build_step": "builder",
    "crop_views": "builder",
    "CATALOG": "catalog",
    "GROUPS": "catalog",
    "SEVERITY_SAMPLERS": "catalog",
    "DistortionType": "catalog",
    "sample_severities": "catalog",
    "severity_to_value": "catalog",
    "types_in_group": "catalog",
    "value_to_severity": "catalog",
    "CompositionPlan": "compose",
    "apply_composition_from_scratch": "compose",
    "apply_composition_group": "compose",
    "make_composition": "compose",
    "sample_composition": "compose",
    "apply_distortion": "engine",
    "distort": "engine",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
