"""Robustness reports: how each metric reacts to each distortion.

- :class:`RobustnessParams`: the protocol's parameters (``registry/protocols/robustness.yaml``).
- :func:`load_sources`, :func:`build_set`: the source images and the distorted set.
- :func:`run_robustness`: score the set with every metric (cached), write one JSON per metric.
- :func:`write_report`: the Markdown report and PNGs, from the JSON files alone.
- :mod:`~shamisa_bench.robustness.measure`: the measurements, as pure functions.
"""

from shamisa_bench.robustness.config import (
    INVARIANCE_TRANSFORMS,
    CompositionParams,
    RobustnessParams,
)
from shamisa_bench.robustness.generate import (
    Batch,
    DistortedSet,
    build_set,
    engine_fingerprint,
)
from shamisa_bench.robustness.head import ProbeHead, fit_probe_head
from shamisa_bench.robustness.measure import (
    agreement,
    composition_sensitivity,
    invariance_spread,
    measure_metric,
    score_range,
    type_response,
)
from shamisa_bench.robustness.report import load_results, render_markdown, write_report
from shamisa_bench.robustness.runner import (
    RobustnessConfig,
    RobustnessSummary,
    run_robustness,
)
from shamisa_bench.robustness.sources import SourceSet, load_sources

__all__ = [
    "INVARIANCE_TRANSFORMS",
    "Batch",
    "CompositionParams",
    "DistortedSet",
    "ProbeHead",
    "RobustnessConfig",
    "RobustnessParams",
    "RobustnessSummary",
    "SourceSet",
    "agreement",
    "build_set",
    "composition_sensitivity",
    "engine_fingerprint",
    "fit_probe_head",
    "invariance_spread",
    "load_results",
    "load_sources",
    "measure_metric",
    "render_markdown",
    "run_robustness",
    "score_range",
    "type_response",
    "write_report",
]
