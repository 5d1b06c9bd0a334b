"""The metric adapter interface shared by every metric kind.

An adapter turns one decoded image into either a quality **score** (a float; kinds
``pyiqa-score`` and ``shamisa``) or **features** of shape ``(K, F)`` (kind
``feature-probe``: K = 1 for the ``whole`` feature mode, 5 for ``crops5``), to be regressed by a
ridge head that the protocol fits. Adapters are lazy: nothing heavy is loaded until
:meth:`MetricAdapter.open`, which the harness calls only when some image is missing from
the cache, so a warm rerun never builds a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["MetricAdapter", "MetricUnavailable", "describe_device", "spec_field"]

OutputKind = Literal["score", "features"]


class MetricUnavailable(RuntimeError):
    """The metric cannot run here (weights not downloadable offline, missing export...).

    The harness records the reason in the unit and in the table; the suite goes on.
    """


def spec_field(spec: Any, name: str, default: Any = None) -> Any:
    """A metric spec field, looked up as an attribute first, then in ``spec.params``."""
    value = getattr(spec, name, None)
    if value is None:
        value = (getattr(spec, "params", None) or {}).get(name, default)
    return default if value is None else value


def describe_device(device: str) -> str:
    """``cpu``, or ``cuda:0 (<GPU name>)`` for a CUDA device (for provenance)."""
    if not str(device).startswith("cuda"):
        return str(device)
    try:
        idx = torch.device(device).index or 0
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    except Exception:  # noqa: BLE001 - provenance only, never fatal
        return str(device)


class MetricAdapter:
    """Base class. Subclasses set ``output`` and implement the four hooks.

    Attributes:
        spec: the registry's MetricSpec.
        name: the metric's registry name.
        output: ``"score"`` or ``"features"``.
        lower_better: score direction (features: the ridge head predicts quality, False).
        standardize: features only: standardise features before the ridge fit.
    """

    output: OutputKind = "score"

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.name: str = spec.name
        self.lower_better: bool = bool(getattr(spec, "lower_better", False))
        self.standardize: bool = bool(spec_field(spec, "standardize", False))
        self._opened = False

    # -- identity ------------------------------------------------------------------
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the checkpoint/export the metric loads, when there is one."""
        return None

    def identity_fields(self) -> Mapping[str, Any]:
        """Kind-specific fields that change the outputs (subclasses extend)."""
        return {}

    def trained_on(self) -> frozenset[str]:
        """Registered datasets whose labels this metric was fit on (its scores there are not tests)."""
        return frozenset()

    def identity(self) -> dict[str, Any]:
        """Everything that determines the per-image outputs: the cache identity."""
        return {
            "metric": self.name,
            "kind": getattr(self.spec, "kind", "?"),
            "version": getattr(self.spec, "version", None),
            "output": self.output,
            "checkpoint_sha256": self.checkpoint_sha256(),
            "preprocessing": {"decode": "rgb-float-0-1", "batch": 1},
            **dict(self.identity_fields()),
        }

    # -- running -------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True after a successful :meth:`open`."""
        return self._opened

    def open(self, device: str) -> None:
        """Load the model on ``device``. Raises MetricUnavailable when it cannot."""
        self._open(device)
        self._opened = True

    def _open(self, device: str) -> None:
        raise NotImplementedError

    def compute(self, x: Any, name: str) -> NDArray[np.floating]:
        """Output for one image.

        Args:
            x: the image, tensor of shape ``(1, 3, H, W)``, float in [0, 1], on CPU.
            name: the image's name in its dataset (for messages and test hooks).

        Returns:
            shape ``()`` float64 for scores, ``(K, F)`` float32 for features.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the model (called when the harness is done with this metric)."""
        self._opened = False
