"""Embedding maps: the features of a metric for a synthetic pool, projected to 2-D.

The features (a feature probe's, or the encoder behind a ``shamisa`` metric, whole-image
two-scale features in the head's feature mode) come through the harness's feature cache.
Features are averaged over crops, standardised per dimension over the pool, and projected
by PCA (always available) or t-SNE (scikit-learn, the optional ``analysis`` extra; PCA to 50
dimensions first, ``init="pca"``, the given seed). The same pool and seed serve every metric,
so maps can be set side by side.

Two numbers go beside each map, so a map is not judged by eye alone, each in the
standardised feature space and in the 2-D map:

* **group kNN accuracy**: for every distorted image, the majority distortion group among its
  k = 5 nearest distorted neighbours **from other source images** (a neighbour made from
  the same photograph would make the task trivial), ties to the nearest; the fraction
  right. Chance is about the share of the largest group.
* **severity SRCC**: for every (source, type) with at least three severities, the SRCC
  between severity and the distance to that source's pristine image; the mean over them.
  1 = the embedding moves steadily away from the pristine image as the damage grows.

Outputs, under ``<results>/embed/<metric>/``: ``<method>-group.png``,
``<method>-severity.png`` and ``<method>.json`` (numbers per group, pool, provenance).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.analysis.pool import PRISTINE, Pool
from shamisa_bench.analysis.render import render_embedding
from shamisa_bench.analysis.scoring import score_pool
from shamisa_bench.common.atomic import atomic_write_bytes
from shamisa_bench.common.provenance import collect_provenance, git_state, utc_now
from shamisa_bench.common.scoring import srcc
from shamisa_bench.harness.adapters import (
    FeatureProbe,
    MetricUnavailable,
    build_metric,
    describe_device,
)
from shamisa_bench.harness.results import clean_json
from shamisa_bench.iqa.head import load_head
from shamisa_bench.iqa.weights import DEFAULT_HEAD, resolve_weights
from shamisa_bench.model import read_encoder_export

__all__ = [
    "EMBED_SCHEMA",
    "METHODS",
    "TSNE_MISSING",
    "feature_adapter",
    "group_knn_accuracy",
    "project",
    "run_embed",
    "severity_srcc",
]

#: (schema, version) of ``<method>.json``.
EMBED_SCHEMA = ("shamisa-bench/embed", 1)
#: Projections: ``pca`` (numpy) and ``tsne`` (scikit-learn, optional).
METHODS: tuple[str, ...] = ("pca", "tsne")
#: The one-line message when t-SNE is asked for without scikit-learn.
TSNE_MISSING = "t-SNE needs scikit-learn, the optional 'analysis' extra: pip install -e .[analysis] (or use --method pca)"
#: Neighbours of the kNN accuracy.
KNN_K = 5


def feature_adapter(spec: Any, *, seed: int = 0) -> Any:
    """The feature adapter of a metric: its own when it outputs features (a feature probe);
    for a ``shamisa`` metric, a probe of the encoder its weights resolve to, in its head's
    feature mode.

    Raises:
        ValueError: the metric has no features (a score metric such as brisque).
        MetricUnavailable: the ``shamisa`` weights cannot be found.
    """
    kind = getattr(spec, "kind", None)
    if kind == "shamisa":
        kwargs = dict(getattr(spec, "kwargs", None) or {})
        head = kwargs.get("head_dataset") or getattr(spec, "head", None) or DEFAULT_HEAD
        try:
            w = resolve_weights(kwargs.get("pretrained_model_path"), kwargs.get("head_path"), head)
            export = read_encoder_export(w.encoder, verify=False)
            mode = load_head(w.head).feature_mode
        except Exception as err:  # no weights = unavailable, with the reason
            raise MetricUnavailable(f"SHAMISA weights of {spec.name}: {type(err).__name__}: {err}") from err
        probe_spec = SimpleNamespace(
            name=spec.name, kind="feature-probe", version=getattr(spec, "version", None), lower_better=False,
            params={}, backbone=export.backbone, init="export", export=str(w.encoder), feature_mode=mode)
        return FeatureProbe(probe_spec, seed=seed)
    adapter = build_metric(spec, seed=seed)
    if adapter.output != "features":
        raise ValueError(f"metric {spec.name} (kind {kind}) outputs a score, not features: embed maps the features "
                         "of a feature-probe metric or of a shamisa metric's encoder")
    return adapter


def _standardize(f: NDArray[np.float64]) -> NDArray[np.float64]:
    mu = f.mean(axis=0)
    sd = f.std(axis=0)
    return (f - mu) / np.where(sd > 1e-12, sd, 1.0)


def _pca(z: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """The first ``k`` principal components (signs fixed: largest loading positive)."""
    zc = z - z.mean(axis=0)
    u, s, vt = np.linalg.svd(zc, full_matrices=False)
    k = min(k, vt.shape[0])
    sign = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    sign[sign == 0] = 1
    return (u[:, :k] * s[:k]) * sign


def project(z: NDArray[np.float64], method: str, *, seed: int = 0) -> NDArray[np.float64]:
    """``(N, 2)`` map of standardised features ``z``.

    Raises:
        ValueError: an unknown method.
        ImportError: ``tsne`` without scikit-learn (message :data:`TSNE_MISSING`).
    """
    if method == "pca":
        return _pca(z, 2)
    if method != "tsne":
        raise ValueError(f"unknown projection {method!r}; valid: {', '.join(METHODS)}")
    try:
        from sklearn.manifold import TSNE  # optional: the `analysis` extra
    except ImportError as err:
        raise ImportError(TSNE_MISSING) from err
    x = _pca(z, 50)
    perplexity = float(min(30.0, max(2.0, (z.shape[0] - 1) / 3.0)))
    return np.asarray(TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity,
                           learning_rate="auto").fit_transform(x), dtype=np.float64)


def _sqdist(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def group_knn_accuracy(x: NDArray[np.float64], groups: Sequence[str], sources: NDArray[np.intp],
                       *, k: int = KNN_K) -> dict[str, Any]:
    """kNN accuracy of the distortion group, neighbours from other sources (module docstring).

    Args:
        x: ``(N, D)`` points (pristine images already left out).
        groups: ``(N,)`` group labels.
        sources: ``(N,)`` source index per point.
        k: neighbours.

    Returns:
        ``{"accuracy", "per_group": {group: accuracy}, "n", "k", "chance"}``.
    """
    g = np.asarray(groups)
    src = np.asarray(sources)
    n = x.shape[0]
    labels = sorted(set(g.tolist()))
    code = np.searchsorted(labels, g)
    pred = np.empty(n, dtype=np.intp)
    for start in range(0, n, 512):
        d = _sqdist(x[start:start + 512], x)
        d[src[start:start + 512, None] == src[None, :]] = np.inf  # same photograph: not a neighbour
        nn = np.argsort(d, axis=1, kind="stable")[:, :k]
        for r, row in enumerate(nn):
            votes = np.bincount(code[row], minlength=len(labels))
            top = np.flatnonzero(votes == votes.max())
            pred[start + r] = top[0] if top.size == 1 else next(c for c in code[row] if c in top)
    right = pred == code
    per = {lab: float(right[code == i].mean()) for i, lab in enumerate(labels)}
    chance = float(np.bincount(code).max() / n)
    return {"accuracy": float(right.mean()), "per_group": per, "n": int(n), "k": int(k), "chance": chance}


def severity_srcc(x: NDArray[np.float64], pool: Any) -> dict[str, Any]:
    """Mean SRCC(severity, distance to the source's pristine point) (module docstring).

    Args:
        x: ``(N, D)`` points of every pool image (pristine included).
        pool: the synthetic pool (or anything with its ``types``, ``groups``, ``reference``
            and ``severity``).

    Returns:
        ``{"mean", "per_group": {group: mean}, "n_series"}``.
    """
    pristine = {int(pool.reference[i]): i for i, t in enumerate(pool.types) if t == PRISTINE}
    series: dict[tuple[int, str], list[int]] = {}
    for i, t in enumerate(pool.types):
        if t != PRISTINE and int(pool.reference[i]) in pristine:
            series.setdefault((int(pool.reference[i]), t), []).append(i)
    vals: dict[str, list[float]] = {}
    for (s, t), idx in series.items():
        if len(idx) < 3:
            continue
        dist = np.linalg.norm(x[idx] - x[pristine[s]], axis=1)
        r = srcc(dist, pool.severity[idx])
        if np.isfinite(r):
            vals.setdefault(pool.groups[idx[0]], []).append(float(r))
    every = [v for vs in vals.values() for v in vs]
    return {"mean": float(np.mean(every)) if every else None,
            "per_group": {g: float(np.mean(v)) for g, v in sorted(vals.items())},
            "n_series": len(every)}


def run_embed(spec: Any, pool: Pool, *, method: str = "pca", results_dir: Path = Path("results"),
              cache_dir: Path | None = None, device: str = "cpu", seed: int = 0, console: Any = None,
              progress: bool = False, adapter: Any = None) -> dict[str, Any]:
    """Map a metric's features for ``pool`` and write the PNGs and JSON (module docstring).

    Args:
        spec: the metric's registry entry.
        pool: a synthetic pool (distortion labels needed).
        method: ``pca`` or ``tsne``.
        results_dir: outputs under ``embed/<metric>/``.
        cache_dir: the feature cache (None: nothing cached).
        device: where the encoder runs.
        seed: t-SNE seed.
        console, progress: messages and progress bars.
        adapter: a feature adapter to use instead of the metric's (tests).

    Returns:
        the JSON record (with ``files``: the paths written).

    Raises:
        ValueError: a metric without features, a pool without distortion labels, an unknown
            method; ImportError: t-SNE without scikit-learn.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; valid: {', '.join(METHODS)}")
    if pool.kind != "synthetic":
        raise ValueError(f"pool {pool.name} has no distortion labels: embed needs a synthetic pool (--sources DIR)")
    if method == "tsne":
        try:
            import sklearn  # noqa: F401  # optional: the `analysis` extra; fail before any scoring
        except ImportError as err:
            raise ImportError(TSNE_MISSING) from err
    t0 = time.perf_counter()
    started = utc_now()
    ad = adapter if adapter is not None else feature_adapter(spec, seed=seed)
    if ad.output != "features":
        raise ValueError(f"metric {spec.name} outputs a score, not features")
    (st,) = score_pool(pool, [(spec.name, ad)], cache_dir=cache_dir, device=device, console=console,
                       progress=progress)
    f = st.values.reshape(st.values.shape[0], -1, st.values.shape[-1]).mean(axis=1)
    ok = np.isfinite(f).all(axis=1)
    if ok.sum() < 4:
        raise ValueError(f"metric {spec.name}: only {int(ok.sum())} pool image(s) have features")
    idx = np.flatnonzero(ok)
    z = _standardize(f[idx])
    coords = project(z, method, seed=seed)
    sub = _subpool(pool, idx)
    dist = np.asarray([t != PRISTINE for t in sub.types])
    knn = {"features": group_knn_accuracy(z[dist], np.asarray(sub.groups)[dist], sub.reference[dist]),
           "map": group_knn_accuracy(coords[dist], np.asarray(sub.groups)[dist], sub.reference[dist])}
    sev = {"features": severity_srcc(z, sub), "map": severity_srcc(coords, sub)}
    out = Path(results_dir) / "embed" / spec.name
    label = {"pca": "PCA", "tsne": "t-SNE"}[method]
    title = f"{spec.name}: {label} of its features, pool {pool.name} ({len(idx)} images)"
    numbers = (f"group kNN accuracy (k={KNN_K}, other sources): features {knn['features']['accuracy']:.2f}, "
               f"map {knn['map']['accuracy']:.2f} (chance {knn['features']['chance']:.2f})\n"
               f"SRCC(severity, distance to pristine): features {_f(sev['features']['mean'])}, "
               f"map {_f(sev['map']['mean'])}")
    files = []
    for color_by in ("group", "severity"):
        png = out / f"{method}-{color_by}.png"
        atomic_write_bytes(png, render_embedding(coords, sub.groups, sub.severity, color_by=color_by,
                                                 title=title, subtitle=numbers))
        files.append(png)
    record = clean_json({
        "schema": EMBED_SCHEMA[0], "schema_version": EMBED_SCHEMA[1],
        "metric": st.record(), "method": method, "seed": seed,
        "features": {"dims": int(f.shape[1]), "standardized": True,
                     "crops_averaged": int(st.values.shape[1]) if st.values.ndim == 3 else 1,
                     "n_images": len(idx), "n_without_features": int((~ok).sum())},
        "pool": {"name": pool.name, **pool.record},
        "knn_group_accuracy": knn, "severity_srcc": sev,
        "pngs": [p.name for p in files],
        "provenance": collect_provenance(
            device=describe_device(device), seed=seed, started_at=started, duration_s=time.perf_counter() - t0,
            checkpoint_sha256=ad.checkpoint_sha256(),
            registry_versions={f"metrics/{spec.name}": getattr(spec, "version", None)}, git=git_state()),
    })
    js = out / f"{method}.json"
    atomic_write_bytes(js, (json.dumps(record, indent=1, allow_nan=False) + "\n").encode())
    record["files"] = [js, *files]
    return record


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _subpool(pool: Pool, idx: NDArray[np.intp]) -> Any:
    """The labels of the pool images at ``idx`` (same fields, no batches)."""
    return SimpleNamespace(types=[pool.types[i] for i in idx], groups=[pool.groups[i] for i in idx],
                           reference=pool.reference[idx], severity=pool.severity[idx])
