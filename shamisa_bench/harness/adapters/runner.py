"""One pass of a metric over a dataset's images, through the on-disk cache.

Each image is looked up in the cache first; only misses are decoded and computed, so an
image is decoded and encoded once per metric identity, whatever the protocols and splits
that use it, and a warm rerun builds no model at all. A failure (file missing, undecodable
image, metric error) is recorded with the image name and not cached; a NaN/Inf output is
cached as it is and counted by the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.common.imageio import load_image
from shamisa_bench.harness.adapters.base import MetricAdapter
from shamisa_bench.harness.cache import ArrayCache, image_key

__all__ = ["MetricOutputs", "compute_outputs", "decode_image"]


def decode_image(path: str) -> Any:
    """Decode an image file to a ``(1, 3, H, W)`` float tensor in [0, 1].

    Uses ``shamisa_bench.common.imageio.load_image`` (the project's decoder), which raises a
    ValueError subclass naming the file for a corrupt image.
    """
    return load_image(path).unsqueeze(0)


def _local(err: BaseException, path: str, name: str) -> str:
    """The error text with the image's absolute path replaced by its dataset name."""
    return str(err).replace(str(path), name)


@dataclass(frozen=True)
class MetricOutputs:
    """Per-image outputs of one metric on one dataset.

    Attributes:
        metric: metric name.
        output: ``score`` or ``features``.
        names: image names, shape ``(N,)``, in the dataset table's row order.
        values: ``(N,)`` float64 scores or ``(N, K, F)`` float32 features; rows of failed
            images are NaN.
        failed: ``(N,)`` bool, True where the image could not be scored.
        failures: ``(name, reason)`` for each failed image.
        n_cached: images served by the cache.
        n_computed: images computed in this pass.
    """

    metric: str
    output: str
    names: tuple[str, ...]
    values: NDArray[np.floating]
    failed: NDArray[np.bool_]
    failures: tuple[tuple[str, str], ...] = ()
    n_cached: int = 0
    n_computed: int = 0

    def nonfinite(self) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """``(has_nan, has_inf)`` masks, shape ``(N,)``, over images that did not fail."""
        n = len(self.names)
        v = self.values.reshape(n, -1) if self.values.size else np.zeros((n, 1))
        nan = np.isnan(v).any(axis=1) & ~self.failed
        inf = np.isinf(v).any(axis=1) & ~self.failed & ~nan
        return nan, inf


def compute_outputs(
    adapter: MetricAdapter,
    images: Sequence[str],
    names: Sequence[str],
    *,
    cache: ArrayCache | None,
    device: str = "cpu",
    on_image: Callable[[int], None] | None = None,
    decode: Callable[[str], Any] = decode_image,
) -> MetricOutputs:
    """Outputs of ``adapter`` for every image, from the cache or computed.

    Args:
        adapter: the metric; opened on the first cache miss (MetricUnavailable propagates).
        images: absolute image paths, shape ``(N,)``.
        names: the images' stable names (dataset-relative paths), shape ``(N,)``.
        cache: the metric's cache, or None to compute everything.
        device: where the metric runs.
        on_image: called with 1 after each image (progress bars).
        decode: path -> ``(1, 3, H, W)`` tensor.

    Returns:
        the outputs; failed images are listed, never dropped.
    """
    if len(images) != len(names):
        raise ValueError(f"{len(images)} image paths but {len(names)} names")
    n = len(images)
    results: list[NDArray[np.floating] | None] = [None] * n
    failures: list[tuple[str, str]] = []
    keys: list[str | None] = []
    for path, name in zip(images, names):
        try:
            keys.append(image_key(path))
        except FileNotFoundError:
            keys.append(None)
    hits = cache.get_many(k for k in keys if k) if cache is not None else {}
    n_cached = n_computed = 0
    try:
        for i, (path, name, key) in enumerate(zip(images, names, keys)):
            if key is None:
                failures.append((name, f"file not found: {name}"))
            elif key in hits:
                results[i] = hits[key]
                n_cached += 1
            else:
                if not adapter.is_open:
                    adapter.open(device)
                try:
                    x = decode(path)
                except (ValueError, OSError) as err:
                    failures.append((name, f"cannot decode {name}: {_local(err, path, name)}"))
                else:
                    try:
                        out = adapter.compute(x, name)
                    except Exception as err:  # noqa: BLE001 - recorded per image
                        msg = " ".join(_local(err, path, name).split())[:300]
                        failures.append((name, f"metric error: {type(err).__name__}: {msg}"))
                    else:
                        results[i] = out
                        n_computed += 1
                        if cache is not None:
                            cache.put(key, out)
            if on_image is not None:
                on_image(1)
    finally:
        if cache is not None:
            cache.flush()
    shape = next((r.shape for r in results if r is not None), None)
    if shape is None:
        shape = () if adapter.output == "score" else (1, 1)
    dtype = np.float64 if adapter.output == "score" else np.float32
    values = np.full((n, *shape), np.nan, dtype=dtype)
    failed = np.ones(n, dtype=bool)
    for i, r in enumerate(results):
        if r is not None:
            if r.shape != shape:
                failures.append((names[i], f"output shape {r.shape} differs from {shape}"))
                continue
            values[i] = r
            failed[i] = False
    return MetricOutputs(
        metric=adapter.name,
        output=adapter.output,
        names=tuple(names),
        values=values,
        failed=failed,
        failures=tuple(failures),
        n_cached=n_cached,
        n_computed=n_computed,
    )
