"""``dummy`` metrics for tests: cheap, deterministic functions of the image.

``params`` (all optional):

* ``output``: ``score`` (default) or ``features``.
* ``statistic`` (score): ``mean`` (default; 100 x mean intensity) or ``gradient``
  (100 x mean absolute horizontal + vertical difference).
* ``negate`` (score): return minus the statistic (pair it with ``lower_better: true``).
* ``nan_for``, ``inf_for``, ``fail_for``: image-name substrings for which the metric
  returns NaN, returns +Inf, or raises ``RuntimeError`` (to exercise the bad-output paths).
* ``unavailable``: a reason string; opening the metric then raises MetricUnavailable.
* ``trained_on``: dataset names whose labels the metric claims to have been fit on.

Features are 10 numbers (K = 1): mean, std, mean |dx|, mean |dy|, per-channel means and
per-channel standard deviations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.harness.adapters.base import (
    MetricAdapter,
    MetricUnavailable,
    spec_field,
)

__all__ = ["DummyMetric"]


class DummyMetric(MetricAdapter):
    """A deterministic metric of the image statistics (see module docstring)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        out = spec_field(spec, "output", "score")
        if out not in ("score", "features"):
            raise ValueError(f"metric {spec.name}: dummy output must be score|features, got {out!r}")
        self.output = out  # type: ignore[assignment]
        if self.output == "features":
            self.lower_better = False
        self.statistic: str = spec_field(spec, "statistic", "mean")
        if self.statistic not in ("mean", "gradient"):
            raise ValueError(f"metric {spec.name}: unknown dummy statistic {self.statistic!r}")
        self.negate = bool(spec_field(spec, "negate", False))
        self.nan_for = tuple(spec_field(spec, "nan_for", ()))
        self.inf_for = tuple(spec_field(spec, "inf_for", ()))
        self.fail_for = tuple(spec_field(spec, "fail_for", ()))
        self.unavailable: str | None = spec_field(spec, "unavailable", None)
        self._trained_on = frozenset(spec_field(spec, "trained_on", ()))

    def trained_on(self) -> frozenset[str]:
        return self._trained_on

    def identity_fields(self) -> Mapping[str, Any]:
        return {"statistic": self.statistic, "negate": self.negate, "nan_for": list(self.nan_for),
                "inf_for": list(self.inf_for), "fail_for": list(self.fail_for)}

    def _open(self, device: str) -> None:
        if self.unavailable:
            raise MetricUnavailable(str(self.unavailable))

    def compute(self, x: Any, name: str) -> NDArray[np.floating]:
        if any(s in name for s in self.fail_for):
            raise RuntimeError(f"dummy failure requested for {name}")
        img = x[0].detach().cpu().double().numpy()  # (3, H, W)
        dx = np.abs(np.diff(img, axis=2)).mean()
        dy = np.abs(np.diff(img, axis=1)).mean()
        if self.output == "features":
            feats = [img.mean(), img.std(), dx, dy, *img.mean(axis=(1, 2)), *img.std(axis=(1, 2))]
            out = np.asarray(feats, dtype=np.float32)[None, :]
        else:
            out = np.asarray(100 * (img.mean() if self.statistic == "mean" else dx + dy))
            if self.negate:
                out = -out
        if any(s in name for s in self.nan_for):
            out = np.full_like(out, np.nan)
        if any(s in name for s in self.inf_for):
            out = np.full_like(out, np.inf)
        return out
