"""Metric adapters: pyiqa scores, feature probes, dummy test metrics, and the cached pass.

``build_metric(spec, seed=...)`` picks the adapter for a registry MetricSpec by ``kind``:

* ``pyiqa-score`` and ``shamisa`` -> :class:`PyiqaScore` (``pyiqa.create_metric``);
* ``feature-probe`` -> :class:`FeatureProbe` (frozen encoder, two-scale features);
* ``dummy`` -> :class:`DummyMetric` (tests);
* any of the first two with ``params.reference: true`` -> a full-reference adapter
  (:mod:`~shamisa_bench.harness.adapters.fr`), scoring each image against its reference.
"""

from __future__ import annotations

from typing import Any

from shamisa_bench.harness.adapters.base import (
    MetricAdapter,
    MetricUnavailable,
    describe_device,
    spec_field,
)
from shamisa_bench.harness.adapters.dummy import DummyMetric
from shamisa_bench.harness.adapters.fr import build_fr_metric, is_full_reference
from shamisa_bench.harness.adapters.probe import FeatureProbe
from shamisa_bench.harness.adapters.pyiqa_score import PyiqaScore
from shamisa_bench.harness.adapters.runner import (
    MetricOutputs,
    compute_outputs,
    decode_image,
)

__all__ = [
    "DummyMetric",
    "FeatureProbe",
    "MetricAdapter",
    "MetricOutputs",
    "MetricUnavailable",
    "PyiqaScore",
    "build_metric",
    "compute_outputs",
    "decode_image",
    "describe_device",
    "spec_field",
]


def build_metric(spec: Any, *, seed: int = 0) -> MetricAdapter:
    """The adapter for a MetricSpec (nothing is loaded yet; see MetricAdapter.open).

    Args:
        spec: the registry entry.
        seed: default seed of random-init encoders (a spec's ``params.init_seed`` wins).

    Raises:
        ValueError: for an unknown kind.
    """
    kind = getattr(spec, "kind", None)
    if is_full_reference(spec):  # params.reference: true (shamisa_bench.harness.adapters.fr)
        return build_fr_metric(spec, seed=seed)
    if kind in ("pyiqa-score", "shamisa"):
        return PyiqaScore(spec)
    if kind == "feature-probe":
        return FeatureProbe(spec, seed=seed)
    if kind == "dummy":
        return DummyMetric(spec)
    raise ValueError(f"metric {getattr(spec, 'name', '?')}: unknown kind {kind!r}; "
                     "valid kinds: pyiqa-score, feature-probe, shamisa, dummy")
