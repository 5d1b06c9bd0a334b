"""``feature-probe`` metrics: a frozen encoder whose two-scale features a ridge head regresses.

The encoder comes from ``shamisa_bench.model``: ``build_encoder(backbone, init, seed=...)``
for ``init`` in {imagenet, random}, or ``load_encoder_export(path)`` for ``init: export``
(a relative path is resolved against the current directory; ``export: shipped`` names the
encoder shipped inside the package, the one behind ``pyiqa.create_metric('shamisa')``). Features are
``encode_two_scale(encoder, x, feature_mode)`` of shape ``(1, K, 2D)``; one row ``(K, 2D)`` per
image goes to the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from shamisa_bench import model
from shamisa_bench.archs.shamisa_arch import ENCODER_SUBDIR, shipped_dir
from shamisa_bench.harness.adapters.base import (
    MetricAdapter,
    MetricUnavailable,
    spec_field,
)
from shamisa_bench.model import STANDARDIZED_MODES, encode_two_scale, read_encoder_export

__all__ = ["SHIPPED_EXPORT", "FeatureProbe"]

#: ``export:`` value naming the encoder export shipped inside the package.
SHIPPED_EXPORT = "shipped"


class FeatureProbe(MetricAdapter):
    """Frozen-encoder features for a ridge probe.

    Attributes:
        backbone: encoder architecture.
        init: ``imagenet``, ``random`` or ``export``.
        feature_mode: ``whole``, ``crops5`` or ``multilevel``, how features are extracted
            (``multilevel`` always standardises its features before the ridge fit).
        crop_size: crop side for ``crops5``.
        init_seed: seed of a random initialisation.
        export: export path (``init == "export"``).
    """

    output = "features"

    def __init__(self, spec: Any, *, seed: int = 0) -> None:
        super().__init__(spec)
        self.lower_better = False
        self.backbone: str = spec_field(spec, "backbone")
        self.init: str = spec_field(spec, "init", "imagenet")
        self.feature_mode: str = spec_field(spec, "feature_mode", "whole")
        if self.feature_mode in STANDARDIZED_MODES:
            self.standardize = True  # raw stage statistics differ in scale by orders of magnitude
        self.crop_size: int = int(spec_field(spec, "crop_size", 224))
        self.init_seed: int = int(spec_field(spec, "init_seed", seed))
        export = spec_field(spec, "export", None)
        if export == SHIPPED_EXPORT:
            export = shipped_dir() / ENCODER_SUBDIR
        self.export: Path | None = Path(export).resolve() if export else None
        self._sha: str | None = None
        self._encoder: Any = None
        self._device = "cpu"

    def checkpoint_sha256(self) -> str | None:
        if self.init != "export" or self.export is None:
            return None
        if self._sha is None:
            try:
                self._sha = read_encoder_export(self.export, verify=False).weights_sha256
            except Exception as err:  # unreadable export = unavailable
                raise MetricUnavailable(f"encoder export {self.export}: {err}") from err
        return self._sha

    def identity_fields(self) -> Mapping[str, Any]:
        return {
            "backbone": self.backbone,
            "init": self.init,
            "init_seed": self.init_seed if self.init == "random" else None,
            "feature_protocol": self.feature_mode,  # the cache identity's key: unchanged, so caches stay valid
            "crop_size": self.crop_size if self.feature_mode == "crops5" else None,
            "two_scale": [1.0, 0.5],
        }

    def identity(self) -> dict[str, Any]:
        """The cache identity, without the registry name and version: a probe's features are
        fixed by its encoder (backbone, init, seed or export sha256) and its feature mode, so
        two entries that read the same encoder the same way share their cached features."""
        ident = super().identity()
        del ident["metric"], ident["version"]
        return ident

    def _open(self, device: str) -> None:
        try:
            if self.init == "export":
                if self.export is None:
                    raise MetricUnavailable(f"metric {self.name}: init 'export' without a path")
                enc = model.load_encoder_export(self.export)
            else:
                enc = model.build_encoder(self.backbone, self.init, seed=self.init_seed)
        except MetricUnavailable:
            raise
        except Exception as err:  # weights or export missing = unavailable
            msg = " ".join(str(err).split())[:300]
            raise MetricUnavailable(f"encoder for {self.name}: {type(err).__name__}: {msg}") from err
        self._encoder = enc.eval().to(device)
        self._device = device

    def compute(self, x: Any, name: str) -> NDArray[np.floating]:
        with torch.inference_mode():
            feats = encode_two_scale(self._encoder, x.to(self._device), self.feature_mode,
                                     self.crop_size)
        return feats[0].float().cpu().numpy()

    def close(self) -> None:
        self._encoder = None
        super().close()
