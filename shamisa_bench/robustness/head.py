"""Ridge heads that turn a feature-probe metric's features into a quality score.

A ``feature-probe`` metric (a frozen encoder) has no score of its own: the intra protocol
fits a ridge head per split. For robustness one head is needed, so it is fit on a labelled
dataset (the protocol's ``head.dataset`` or ``--head-dataset``):

1. the dataset's features come from the harness pass (:func:`compute_outputs`) through the
   metric's feature cache, so they are computed once across ``run`` and ``robustness``;
2. alpha is chosen exactly as the intra protocol does (:func:`run_intra`: seeded splits,
   median validation SRCC over splits), which also gives the head's held-out SRCC;
3. the head is refit with that alpha on every usable image of the dataset.

The head predicts labels in the quality direction (DMOS labels are negated first).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.common.scoring import orient
from shamisa_bench.harness.adapters import compute_outputs
from shamisa_bench.harness.data import make_split_set
from shamisa_bench.harness.protocols import run_intra
from shamisa_bench.harness.protocols.common import predict_images
from shamisa_bench.harness.run import RunConfig, load_tables
from shamisa_bench.iqa.ridge import fit_ridge_path

__all__ = ["ProbeHead", "fit_probe_head"]


@dataclass(frozen=True)
class ProbeHead:
    """A fitted head.

    Attributes:
        weight: ``(F,)`` ridge weights on raw features.
        bias: intercept.
        info: JSON-ready provenance: dataset, version, label sha256, images used, alpha,
            held-out SRCC of the alpha selection, the head's sha256, seconds taken (features
            included).
    """

    weight: NDArray[np.float64]
    bias: float
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, features: NDArray[np.floating]) -> NDArray[np.float64]:
        """Quality of ``(N, K, F)`` (or ``(N, F)``) features, averaged over the K crops: ``(N,)``.

        Rows with NaN features give NaN.
        """
        v = np.asarray(features)
        if v.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"features have {v.shape[-1]} dims, the head expects {self.weight.shape[0]}")
        return predict_images(v, np.arange(v.shape[0]), self.weight[None, :],
                              np.asarray([self.bias]))[0]


def fit_probe_head(
    adapter: Any,
    registry: Any,
    dataset: str,
    *,
    cache: Any,
    device: str,
    data_root: Path | None,
    data_cache_dir: Path | None,
    protocol: Any,
    seed: int,
    allow_partial: bool = False,
) -> ProbeHead:
    """Fit a feature metric's head on ``dataset`` (see the module docstring).

    Args:
        adapter: the feature-probe MetricAdapter.
        registry: the Registry.
        dataset: labelled dataset name.
        cache: the metric's ArrayCache (the harness's feature cache) or None.
        device: where the encoder runs.
        data_root, data_cache_dir: where the dataset lives / is built.
        protocol: a ProtocolSpec giving ratios, n_splits and the alpha grid.
        seed: base seed of the splits.
        allow_partial: accept an incomplete dataset (recorded in the head's info).

    Raises:
        MetricUnavailable: the encoder cannot be loaded.
        FileNotFoundError / DatasetNotFoundError: the dataset is missing.
        ValueError: too few usable images.
    """
    t0 = time.perf_counter()
    cfg = RunConfig(data_root=data_root, cache_dir=data_cache_dir, allow_partial=allow_partial)
    table = load_tables(registry, [dataset], cfg)[dataset]
    frame = table.frame
    outputs = compute_outputs(adapter, list(frame["image"]), list(frame["name"]), cache=cache, device=device)
    mos = frame["mos"].to_numpy(dtype=np.float64)
    lower = bool(table.spec.lower_better)
    splits = make_split_set(table, n_splits=protocol.n_splits, base_seed=seed, ratios=protocol.ratios)
    res = run_intra(outputs, mos, labels_lower_better=lower, metric_lower_better=False, splits=splits,
                    alphas=np.asarray(protocol.alpha_grid.values()), standardize=adapter.standardize)
    alpha = float(res.ridge["chosen_alpha"])
    use = res.usable.mask
    values = outputs.values[use]
    k = values.shape[1] if values.ndim == 3 else 1
    W, b = fit_ridge_path(values.reshape(-1, values.shape[-1]), np.repeat(orient(mos, lower)[use], k),
                          [alpha], standardize=adapter.standardize)
    weight = np.asarray(W[0], dtype=np.float64)
    bias = float(b[0])
    digest = hashlib.sha256(weight.tobytes() + np.float64(bias).tobytes()).hexdigest()
    srcc = res.aggregate.get("srcc", {})
    info = {
        "dataset": dataset,
        "dataset_version": table.spec.version,
        "label_sha256": getattr(table, "label_sha256", None),
        "label_type": table.spec.label_type,
        "labels_negated": lower,
        "n_images": int(use.sum()),
        "partial": bool(getattr(table, "partial", False)),
        "n_excluded": len(res.usable.excluded),
        "alpha": alpha,
        "alpha_selection": "median validation SRCC over splits (intra protocol)",
        "n_splits": len(splits),
        "heldout_srcc_median": srcc.get("median"),
        "standardize": bool(adapter.standardize),
        "head_sha256": digest,
        "features_cached": int(outputs.n_cached),
        "features_computed": int(outputs.n_computed),
        "fit_s": time.perf_counter() - t0,
    }
    return ProbeHead(weight, bias, info)
