"""On-disk cache of per-image metric outputs (scores or encoder features).

Layout::

    <cache_dir>/features/<identity key>/meta.json        the identity, for humans
    <cache_dir>/features/<identity key>/chunk-*.npz      keys (M,) + values (M, ...)

* **Identity key** = sha256 of the canonical JSON of the metric identity: kind, name,
  registry version, kind parameters, pyiqa/backbone names, the checkpoint sha256 when there
  is a checkpoint, and the preprocessing (decoder, feature mode such as ``whole`` or
  ``crops5``). Change any of them and the cache misses.
* **Image key** = sha256 of (absolute resolved path, file size in bytes, modification time
  in ns). This is chosen over a content hash because a warm rerun then costs one ``stat``
  per image instead of reading every file (KonIQ-10k and SPAQ are gigabytes). The price: a
  file rewritten in place with identical size and mtime would be served stale (``touch`` it
  or clear the cache), and moving a dataset to another root makes its entries miss.
* **Atomic and kill-safe.** New entries are buffered and written as a new chunk file
  (temporary name, ``fsync``, ``os.replace``) every ``flush_every`` entries, every
  ``flush_seconds`` and on :meth:`ArrayCache.flush`/close. A kill loses at most the
  unflushed entries, never corrupts earlier chunks, and a half-written temporary file is
  ignored. Several processes may share a cache: chunk names are unique, and an entry found
  twice holds the same value. Chunks are merged once there are more than ``max_chunks``.
* Failures are never cached: a failed image is retried on the next run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shamisa_bench.common.atomic import atomic_write_bytes

__all__ = [
    "CACHE_FORMAT",
    "ArrayCache",
    "canonical_json",
    "identity_key",
    "image_key",
]

#: Bumped when the on-disk layout changes; part of every identity key.
CACHE_FORMAT = 1


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace, the form that identity keys hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def identity_key(identity: Mapping[str, object]) -> str:
    """sha256 hex digest (first 32 characters) of a metric identity plus the cache format."""
    payload = canonical_json({"cache_format": CACHE_FORMAT, **dict(identity)})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def image_key(path: str | os.PathLike[str]) -> str:
    """Key of one image file from its resolved path, size and mtime (see module docstring).

    Raises:
        FileNotFoundError: if the file does not exist (the message names it).
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{p}: image file not found") from err
    ident = f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


class ArrayCache:
    """Per-image arrays of one metric identity, loaded lazily, written in atomic chunks.

    Args:
        root: the cache folder (``--cache-dir``).
        identity: JSON-serialisable metric identity (see module docstring).
        flush_every: write a chunk after this many new entries.
        flush_seconds: ... or when this many seconds passed since the last write.
        max_chunks: merge chunks into one when loading finds more than this.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        identity: Mapping[str, object],
        *,
        flush_every: int = 256,
        flush_seconds: float = 30.0,
        max_chunks: int = 32,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.identity = dict(identity)
        self.key = identity_key(self.identity)
        self.dir = Path(root) / "features" / self.key
        self.flush_every = int(flush_every)
        self.flush_seconds = float(flush_seconds)
        self.max_chunks = int(max_chunks)
        self._data: dict[str, NDArray[np.generic]] | None = None
        self._pending: dict[str, NDArray[np.generic]] = {}
        self._last_flush = time.monotonic()
        self.n_chunks_written = 0

    # -- reading -----------------------------------------------------------------------
    def _chunks(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("chunk-*.npz"))

    @staticmethod
    def _read_chunk(path: Path) -> dict[str, NDArray[np.generic]] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = z["keys"]
                values = z["values"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(f"{path}: unreadable cache chunk ignored ({err})", stacklevel=3)
            return None
        if keys.shape[0] != values.shape[0]:
            warnings.warn(f"{path}: cache chunk with mismatched keys/values ignored",
                          stacklevel=3)
            return None
        return {str(k): values[i] for i, k in enumerate(keys)}

    def _load(self) -> dict[str, NDArray[np.generic]]:
        if self._data is None:
            data: dict[str, NDArray[np.generic]] = {}
            chunks = self._chunks()
            for c in chunks:
                part = self._read_chunk(c)
                if part:
                    data.update(part)
            self._data = data
            if len(chunks) > self.max_chunks and data:
                self._compact(chunks, data)
        return self._data

    def _compact(self, old: list[Path], data: Mapping[str, NDArray[np.generic]]) -> None:
        try:
            self._write_chunk(data)
        except OSError as err:  # a read-only cache still serves hits
            warnings.warn(f"{self.dir}: could not merge cache chunks ({err})", stacklevel=3)
            return
        for c in old:  # after the merged chunk is in place: a kill here only leaves dupes
            try:
                c.unlink()
            except FileNotFoundError:
                pass

    def __len__(self) -> int:
        return len(self._load()) + sum(1 for k in self._pending if k not in self._load())

    def __contains__(self, key: str) -> bool:
        return key in self._pending or key in self._load()

    def get(self, key: str) -> NDArray[np.generic] | None:
        """The cached array for an image key, or None."""
        if key in self._pending:
            return self._pending[key]
        return self._load().get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, NDArray[np.generic]]:
        """Cached arrays for the keys that hit (missing keys are left out)."""
        data = self._load()
        out = {}
        for k in keys:
            v = self._pending.get(k)
            if v is None:
                v = data.get(k)
            if v is not None:
                out[k] = v
        return out

    # -- writing -----------------------------------------------------------------------
    def put(self, key: str, value: NDArray[np.generic] | float) -> None:
        """Add one entry; it reaches the disk at the next (automatic) flush."""
        arr = np.asarray(value)
        if self._pending:
            first = next(iter(self._pending.values()))
            if arr.shape != first.shape:
                raise ValueError(
                    f"cache {self.key}: entry shape {arr.shape} differs from {first.shape}"
                )
        self._pending[key] = arr
        if (
            len(self._pending) >= self.flush_every
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def _write_chunk(self, entries: Mapping[str, NDArray[np.generic]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "meta.json"
        if not meta.exists():
            body = json.dumps({"cache_format": CACHE_FORMAT, "identity": self.identity},
                              indent=2, sort_keys=True, default=str)
            atomic_write_bytes(meta, body.encode())
        keys = np.array(list(entries.keys()), dtype="U64")
        values = np.stack([np.asarray(v) for v in entries.values()])
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        buf = io.BytesIO()
        np.savez(buf, keys=keys, values=values)
        atomic_write_bytes(self.dir / name, buf.getvalue())
        self.n_chunks_written += 1

    def flush(self) -> None:
        """Write the pending entries as one new chunk (no-op when nothing is pending)."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            self._write_chunk(pending)
        except BaseException:
            self._pending = {**pending, **self._pending}
            raise
        if self._data is not None:
            self._data.update(pending)

    def close(self) -> None:
        """Flush; the cache can still be used afterwards."""
        self.flush()

    def __enter__(self) -> ArrayCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
