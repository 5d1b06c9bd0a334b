"""Full-reference metrics in the harness: each image is scored against its reference.

A registry metric is full-reference when its ``params`` say ``reference: true``. Two
adapters, built by :func:`build_fr_metric`:

* :class:`PyiqaFR` (``kind: pyiqa-score`` or ``shamisa``): ``pyiqa.create_metric(name)(dist,
  ref)``, e.g. ``psnr``, ``ssim``, ``lpips`` or ``shamisa-fr``; a score per image.
* :class:`FeatureProbeFR` (``kind: feature-probe``): the frozen encoder's two-scale
  features of both images. ``params.pair: difference`` (default) gives the pair feature
  ``u = |f_ref - f_dist|`` for the protocol's ridge head (SHAMISA's FR protocol);
  ``params.pair: distance`` gives the feature distance of :func:`shamisa_bench.iqa.fr.feature_distance`
  (a score in [0, 1], lower is better).

The harness hands an adapter its dataset's references (:meth:`PairInputs.bind_references`,
image name -> reference file) before computing; :meth:`compute` then reads the reference
of each image itself (the project's loader, the last few kept in memory: many distorted
images share one). A reference of another size than its image is a per-image failure with
that reason. The cache identity of an FR metric says it scores pairs, so its outputs never
mix with a no-reference metric's of the same name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from shamisa_bench.archs.shamisa_fr_arch import resolve_encoder
from shamisa_bench.harness.adapters.base import MetricAdapter, MetricUnavailable, spec_field
from shamisa_bench.harness.adapters.probe import FeatureProbe
from shamisa_bench.harness.adapters.pyiqa_score import PyiqaScore
from shamisa_bench.harness.adapters.runner import decode_image
from shamisa_bench.iqa import plugin
from shamisa_bench.iqa.fr import check_pair, feature_distance, pair_difference
from shamisa_bench.model import encode_two_scale, read_encoder_export

__all__ = ["PAIR_MODES", "FeatureProbeFR", "PairInputs", "PyiqaFR", "build_fr_metric", "is_full_reference"]

PAIR_MODES = ("difference", "distance")
"""``params.pair`` of a full-reference feature probe."""

_KEEP_REFERENCES = 8


def is_full_reference(spec_or_adapter: Any) -> bool:
    """True for a registry metric (or its adapter) that scores images against references."""
    if isinstance(spec_or_adapter, MetricAdapter):
        return isinstance(spec_or_adapter, PairInputs)
    return bool(spec_field(spec_or_adapter, "reference", False))


class PairInputs:
    """What a full-reference adapter adds: the references of the current dataset."""

    def _init_pairs(self) -> None:
        self._refs: dict[str, str | torch.Tensor] = {}
        self._loaded: OrderedDict[str, torch.Tensor] = OrderedDict()

    def bind_references(self, references: Mapping[str, str | torch.Tensor]) -> None:
        """Image name -> reference file (or a (3, H, W) / (1, 3, H, W) image in memory), for
        the images about to be computed."""
        self._refs = dict(references)
        self._loaded.clear()

    def reference(self, name: str) -> torch.Tensor:
        """The (1, 3, H, W) reference of image ``name``.

        Raises:
            ValueError: No reference was bound for ``name``, or it cannot be decoded.
        """
        path = self._refs.get(name)
        if path is None:
            raise ValueError(f"{name}: no reference image is known for it")
        if isinstance(path, torch.Tensor):
            return path if path.dim() == 4 else path.unsqueeze(0)
        if path not in self._loaded:
            self._loaded[path] = decode_image(path)
            while len(self._loaded) > _KEEP_REFERENCES:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(path)
        return self._loaded[path]

    def pair(self, x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, its reference)``, checked to be one size."""
        ref = self.reference(name)
        check_pair(x, ref)
        return x, ref


class PyiqaFR(PairInputs, PyiqaScore):
    """A pyiqa full-reference metric (``metric_mode: FR``), one pair at a time."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._init_pairs()

    def checkpoint_sha256(self) -> str | None:
        """The encoder's weights sha256 for ``shamisa-fr``, else None (pyiqa's own metrics)."""
        if self.pyiqa_name != plugin.FR_METRIC:
            return None
        try:
            path, _ = resolve_encoder(self.kwargs.get("pretrained_model_path"))
            return read_encoder_export(path, verify=False).weights_sha256
        except Exception as err:  # no encoder = unavailable, with the reason
            raise MetricUnavailable(f"SHAMISA encoder: {type(err).__name__}: {err}") from err

    def trained_on(self) -> frozenset[str]:
        return frozenset()

    def identity_fields(self) -> Mapping[str, Any]:
        return {**super().identity_fields(), "reference": "full-reference score of (image, its reference)"}

    def _open(self, device: str) -> None:
        try:  # adds shamisa-fr to pyiqa (idempotent; pyiqa's own metrics need nothing)
            plugin.register()
        except ImportError as err:
            raise MetricUnavailable(f"pyiqa is not installed ({err})") from err
        super()._open(device)

    def compute(self, x: Any, name: str) -> NDArray[np.floating]:
        x, ref = self.pair(x, name)
        with torch.inference_mode():
            out = self._metric(x.to(self._device), ref.to(self._device))
        val = np.asarray(out.detach().float().cpu().numpy() if hasattr(out, "detach") else out,
                         dtype=np.float64).reshape(-1)
        if val.size != 1:
            raise ValueError(f"{name}: pyiqa {self.pyiqa_name} returned {val.size} values")
        return val.reshape(())


class FeatureProbeFR(PairInputs, FeatureProbe):
    """Frozen-encoder features of a pair: ``|f_ref - f_dist|`` for a ridge head, or their distance.

    Attributes:
        pair: ``difference`` (features, ridge head fit by the protocol) or ``distance``
            (a score in [0, 1], lower is better).
    """

    def __init__(self, spec: Any, *, seed: int = 0) -> None:
        super().__init__(spec, seed=seed)
        self._init_pairs()
        self.pair_mode: str = spec_field(spec, "pair", "difference")
        if self.pair_mode not in PAIR_MODES:
            raise ValueError(f"metric {self.name}: params.pair must be one of {', '.join(PAIR_MODES)}, "
                             f"got {self.pair_mode!r}")
        if self.pair_mode == "distance":
            self.output = "score"
            self.lower_better = True

    def identity_fields(self) -> Mapping[str, Any]:
        return {**super().identity_fields(), "reference": f"pair {self.pair_mode}"}

    def compute(self, x: Any, name: str) -> NDArray[np.floating]:
        x, ref = self.pair(x, name)
        with torch.inference_mode():
            f_dist = encode_two_scale(self._encoder, x.to(self._device), self.feature_mode, self.crop_size)
            f_ref = encode_two_scale(self._encoder, ref.to(self._device), self.feature_mode, self.crop_size)
            if self.pair_mode == "distance":
                return np.asarray(float(feature_distance(f_dist, f_ref)[0]), dtype=np.float64)
            return pair_difference(f_dist, f_ref)[0].float().cpu().numpy()


def build_fr_metric(spec: Any, *, seed: int = 0) -> MetricAdapter:
    """The full-reference adapter of a registry metric with ``params.reference: true``.

    Raises:
        ValueError: A kind that has no full-reference form (``dummy``), or a bad ``params.pair``.
    """
    kind = getattr(spec, "kind", None)
    if kind in ("pyiqa-score", "shamisa"):
        return PyiqaFR(spec)
    if kind == "feature-probe":
        return FeatureProbeFR(spec, seed=seed)
    raise ValueError(f"metric {getattr(spec, 'name', '?')}: kind {kind!r} has no full-reference form; "
                     "use pyiqa-score, shamisa or feature-probe with params.reference: true")
