"""The on-disk feature cache: keys, atomic chunks, kill safety, merging."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest

from shamisa_bench.harness.adapters.probe import FeatureProbe
from shamisa_bench.harness.cache import ArrayCache, identity_key, image_key
from shamisa_bench.harness.registry import load_registry


def test_identity_key_depends_on_every_field():
    base = {"metric": "m", "checkpoint_sha256": "a" * 64, "preprocessing": {"p": "whole"}}
    k = identity_key(base)
    assert identity_key(dict(reversed(list(base.items())))) == k  # order-free
    assert identity_key({**base, "checkpoint_sha256": "b" * 64}) != k
    assert identity_key({**base, "preprocessing": {"p": "crops5"}}) != k


def test_image_key_tracks_size_and_mtime(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"123")
    k1 = image_key(f)
    assert image_key(f) == k1
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert image_key(f) != k1
    with pytest.raises(FileNotFoundError, match="a.png"):
        image_key(tmp_path / "missing" / "a.png")


def test_put_flush_reload_and_ignore_partial_files(tmp_path):
    c = ArrayCache(tmp_path, {"metric": "m"}, flush_every=2)
    c.put("k1", np.ones((1, 4), np.float32))
    assert not c.dir.exists() or not list(c.dir.glob("chunk-*.npz"))  # still buffered
    c.put("k2", np.zeros((1, 4), np.float32))  # second entry triggers a chunk
    assert len(list(c.dir.glob("chunk-*.npz"))) == 1
    c.put("k3", np.full((1, 4), 3, np.float32))
    # a kill now loses only k3; a half-written temp file and a truncated chunk are ignored
    (c.dir / ".tmp-chunk-x.npz-123").write_bytes(b"PK\x03\x04garbage")
    (c.dir / "chunk-0-truncated.npz").write_bytes(b"PK\x03\x04garbage")
    fresh = ArrayCache(tmp_path, {"metric": "m"})
    with pytest.warns(UserWarning, match="unreadable cache chunk"):
        got = fresh.get_many(["k1", "k2", "k3"])
    assert sorted(got) == ["k1", "k2"]
    np.testing.assert_array_equal(got["k1"], np.ones((1, 4)))
    (c.dir / "chunk-0-truncated.npz").unlink()
    c.close()
    assert ArrayCache(tmp_path, {"metric": "m"}).get("k3") is not None
    assert ArrayCache(tmp_path, {"metric": "other"}).get("k1") is None


def test_shape_mismatch_is_rejected(tmp_path):
    c = ArrayCache(tmp_path, {"metric": "m"}, flush_every=10)
    c.put("a", np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        c.put("b", np.zeros(4))


def test_many_chunks_are_merged(tmp_path):
    c = ArrayCache(tmp_path, {"metric": "m"}, flush_every=1)
    for i in range(6):
        c.put(f"k{i}", np.array(float(i)))
    assert len(list(c.dir.glob("chunk-*.npz"))) == 6
    merged = ArrayCache(tmp_path, {"metric": "m"}, max_chunks=3)
    assert len(merged) == 6
    assert len(list(c.dir.glob("chunk-*.npz"))) == 1
    assert float(ArrayCache(tmp_path, {"metric": "m"}).get("k5")) == 5.0


def test_probes_reading_one_encoder_the_same_way_share_their_cache_identity():
    reg = load_registry()
    a, b = (FeatureProbe(reg.metric(n)) for n in ("shamisa-lite", "shamisa-lite-multilevel"))
    imagenet, ml = (FeatureProbe(reg.metric(n)) for n in ("lite0-imagenet", "lite0-imagenet-multilevel"))
    assert imagenet.identity() != ml.identity()  # the feature mode is part of it
    assert a.identity() != imagenet.identity()  # so is the encoder (its export's sha256)
    renamed = FeatureProbe(dataclasses.replace(reg.metric("lite0-imagenet"), name="my-imagenet", version=3))
    assert renamed.identity() == imagenet.identity()
    assert b.standardize and ml.standardize and not imagenet.standardize
