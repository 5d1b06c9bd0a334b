"""Score a pool with one or more metrics through the harness's score cache.

Every metric's outputs (scores, or features of a feature probe) are looked up in its
:class:`~shamisa_bench.harness.cache.ArrayCache` (the harness's, keyed by the metric
identity); a batch of the pool is made only when some metric misses one of its images, and
each metric computes only its misses. A second competition or map on the same pool costs
no new scoring.

Feature probes get a quality through a ridge head fit on a labelled dataset exactly as
the robustness report fits it (:func:`~shamisa_bench.robustness.head.fit_probe_head`,
features through the same cache).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.common.progress import TaskProgress
from shamisa_bench.common.scoring import orient
from shamisa_bench.harness.cache import ArrayCache
from shamisa_bench.robustness.head import fit_probe_head

__all__ = ["PoolScores", "metric_quality", "score_pool"]


@dataclass
class PoolScores:
    """One metric's outputs on a pool.

    Attributes:
        name: the metric.
        adapter: its adapter.
        values: ``(N,)`` scores or ``(N, K, F)`` features (NaN rows where an image failed).
        failures: ``(image name, reason)`` of images that could not be scored (never cached).
        n_cached, n_computed: images served by the cache / computed now.
        compute_s: seconds spent opening the metric and computing.
        head: the ridge head of a feature probe (after :func:`metric_quality`), else None.
    """

    name: str
    adapter: Any
    values: Any = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_cached: int = 0
    n_computed: int = 0
    compute_s: float = 0.0
    head: Any = None

    def record(self) -> dict[str, Any]:
        """JSON-ready: identity, cache counts, failures, head."""
        ad = self.adapter
        return {
            "name": self.name,
            "kind": getattr(ad.spec, "kind", None),
            "version": getattr(ad.spec, "version", None),
            "output": ad.output,
            "lower_better": bool(ad.lower_better),
            "checkpoint_sha256": ad.checkpoint_sha256(),
            "quality": ("ridge head prediction" if ad.output == "features" else
                        "minus the score" if ad.lower_better else "the score"),
            "head": self.head.info if self.head is not None else None,
            "cache": {"n_cached": self.n_cached, "n_computed": self.n_computed},
            "n_failures": len(self.failures),
            "failures": [{"name": n, "reason": r} for n, r in self.failures[:50]],
            "compute_s": self.compute_s,
        }


def score_pool(
    pool: Any,
    adapters: Sequence[tuple[str, Any]],
    *,
    cache_dir: Path | None,
    device: str = "cpu",
    console: Any = None,
    progress: bool = False,
) -> list[PoolScores]:
    """Outputs of every metric on every pool image (see the module docstring).

    Args:
        pool: the :class:`~shamisa_bench.analysis.pool.Pool`.
        adapters: ``(name, MetricAdapter)`` pairs.
        cache_dir: the score/feature cache folder (None: nothing cached).
        device: where the metrics run.
        console: a rich Console for progress (None: quiet).
        progress: show a progress bar.

    Returns:
        one :class:`PoolScores` per metric, in order.

    Raises:
        MetricUnavailable: a metric cannot be opened (its reason).
        ValueError: a metric returned outputs of inconsistent shapes.
    """
    states = [PoolScores(name, ad) for name, ad in adapters]
    caches = [ArrayCache(cache_dir, ad.identity()) if cache_dir is not None else None for _, ad in adapters]
    got: list[dict[int, NDArray[Any]]] = [{} for _ in states]
    try:
        with TaskProgress(progress and console is not None, console) as prog:
            task = prog.add("pool batches", len(pool.batches))
            for batch in pool.batches:
                keys = [pool.keys[i] for i in batch.index]
                need = []
                for st, cache, out in zip(states, caches, got):
                    hits = cache.get_many(keys) if cache is not None else {}
                    miss = []
                    for j, (i, k) in enumerate(zip(batch.index, keys)):
                        if k in hits:
                            out[i] = hits[k]
                        else:
                            miss.append(j)
                    st.n_cached += len(keys) - len(miss)
                    if miss:
                        need.append((st, cache, out, miss))
                if need:
                    images = batch.make()
                    for st, cache, out, miss in need:
                        _compute(pool, batch, images, st, cache, out, miss, device)
                prog.advance(task)
    finally:
        for st, cache in zip(states, caches):
            if cache is not None:
                cache.flush()
            st.adapter.close()
    for st, out in zip(states, got):
        st.values = _stack(out, len(pool), st.name)
    return states


def _compute(pool: Any, batch: Any, images: list[Any], st: PoolScores, cache: Any,
             out: dict[int, Any], miss: list[int], device: str) -> None:
    t0 = time.perf_counter()
    if not st.adapter.is_open:
        st.adapter.open(device)  # MetricUnavailable propagates: the command names the metric
    for j in miss:
        i = batch.index[j]
        name = pool.names[i]
        img = images[j]
        if isinstance(img, BaseException):
            st.failures.append((name, str(img)))
            continue
        try:
            value = np.asarray(st.adapter.compute(img[None], name))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - recorded per image, never cached
            st.failures.append((name, " ".join(f"{type(err).__name__}: {err}".split())[:300]))
            continue
        out[i] = value
        st.n_computed += 1
        if cache is not None:
            cache.put(pool.keys[i], value)
    st.compute_s += time.perf_counter() - t0


def _stack(out: dict[int, Any], n: int, name: str) -> NDArray[np.float64]:
    if not out:
        raise ValueError(f"metric {name}: no pool image could be scored")
    shapes = {np.shape(v) for v in out.values()}
    if len(shapes) != 1:
        raise ValueError(f"metric {name}: outputs of different shapes {sorted(shapes)}")
    shape = shapes.pop()
    arr = np.full((n, *shape), np.nan, dtype=np.float64)
    for i, v in out.items():
        arr[i] = v
    return arr


def metric_quality(
    st: PoolScores,
    *,
    registry: Any,
    head_dataset: str,
    cache_dir: Path | None,
    device: str,
    data_root: Path | None,
    seed: int,
    allow_partial: bool = False,
) -> NDArray[np.float64]:
    """``(N,)`` quality per pool image, higher = better: the score turned (minus the score of
    a lower-is-better metric), or a feature probe's ridge head prediction (the head is fit on
    ``head_dataset`` with the robustness protocol's splits and alpha grid, and kept in
    ``st.head``). NaN where the image failed."""
    ad = st.adapter
    if ad.output != "features":
        return orient(st.values.reshape(-1), ad.lower_better)
    protocol = registry.protocol("robustness")
    cache = ArrayCache(cache_dir, ad.identity()) if cache_dir is not None else None
    try:
        st.head = fit_probe_head(ad, registry, head_dataset, cache=cache, device=device,
                                 data_root=data_root, data_cache_dir=cache_dir, protocol=protocol,
                                 seed=seed, allow_partial=allow_partial)
    finally:
        if cache is not None:
            cache.flush()
        ad.close()
    q = np.full(st.values.shape[0], np.nan)
    ok = np.isfinite(st.values.reshape(st.values.shape[0], -1)).all(axis=1)
    if ok.any():
        q[ok] = st.head.predict(st.values[ok])
    return q
