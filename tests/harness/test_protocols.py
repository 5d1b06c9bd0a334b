"""Protocols on synthetic outputs: same test splits for scores, crops5 averaging, DMOS direction."""

from __future__ import annotations

import numpy as np
import pytest

from shamisa_bench.common.scoring import correlations
from shamisa_bench.harness.adapters.runner import MetricOutputs
from shamisa_bench.harness.protocols import run_cross, run_intra
from shamisa_bench.iqa.ridge import fit_ridge_path, geometric_alphas


class _Split:
    def __init__(self, train, val, test, h):
        self.train, self.val, self.test, self.hash = (np.asarray(train), np.asarray(val),
                                                      np.asarray(test), h)


def _splits(n: int, k: int, seed: int = 0) -> list[_Split]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        p = rng.permutation(n)
        a, b = int(0.6 * n), int(0.8 * n)
        out.append(_Split(np.sort(p[:a]), np.sort(p[a:b]), np.sort(p[b:]), f"h{i}"))
    return out


def _outputs(values, failed=None, kind="features") -> MetricOutputs:
    n = values.shape[0]
    return MetricOutputs("m", kind, tuple(f"i{j}" for j in range(n)), values,
                         np.zeros(n, bool) if failed is None else failed)


def test_score_metric_uses_the_given_test_parts_and_direction():
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 100, 40)
    score = -mos + rng.normal(0, 10, 40)  # lower is better
    splits = _splits(40, 4)
    res = run_intra(_outputs(score, kind="score"), mos, labels_lower_better=False,
                    metric_lower_better=True, splits=splits, alphas=[1.0])
    for s, r in zip(splits, res.splits):
        np.testing.assert_array_equal(r.test_index, s.test)
        assert r.scores["srcc"] == pytest.approx(correlations(-score[s.test], mos[s.test])["srcc"])
        assert r.hash == s.hash and r.alpha is None
    assert res.aggregate["srcc"]["median"] > 0.8


def test_crops5_fits_on_repeated_labels_and_averages_crops():
    rng = np.random.default_rng(1)
    n, k, f = 60, 5, 6
    mos = rng.uniform(0, 10, n)
    base = np.outer(mos, rng.standard_normal(f))
    feats = (base[:, None, :] + rng.normal(0, 1.0, (n, k, f))).astype(np.float32)
    splits = _splits(n, 3)
    alphas = geometric_alphas(1e-2, 1e2, 5)
    res = run_intra(_outputs(feats), mos, labels_lower_better=False, metric_lower_better=False,
                    splits=splits, alphas=alphas)
    assert res.ridge["n_crops"] == 5
    alpha = res.ridge["chosen_alpha"]
    s = splits[0]
    W, b = fit_ridge_path(feats[s.train].reshape(-1, f), np.repeat(mos[s.train], k), [alpha])
    manual = (feats[s.test].reshape(-1, f) @ W[0] + b[0]).reshape(-1, k).mean(axis=1)
    np.testing.assert_allclose(res.splits[0].predictions, manual, rtol=1e-5, atol=1e-6)
    assert res.aggregate["srcc"]["median"] > 0.8


def test_failed_and_nan_images_are_excluded_from_every_part():
    rng = np.random.default_rng(2)
    mos = rng.uniform(0, 1, 30)
    feats = np.stack([mos, rng.normal(size=30)], axis=1)[:, None, :].astype(np.float32)
    feats[3] = np.nan
    failed = np.zeros(30, bool)
    failed[7] = True
    out = MetricOutputs("m", "features", tuple(f"i{j}" for j in range(30)), feats, failed,
                        failures=(("i7", "cannot decode"),))
    splits = _splits(30, 3)
    res = run_intra(out, mos, labels_lower_better=False, metric_lower_better=False,
                    splits=splits, alphas=[0.1, 1.0])
    assert res.usable.n_nan == 1 and res.usable.nonfinite_names == ("i3",)
    assert dict(res.usable.excluded) == {"i7": "cannot decode", "i3": "NaN output"}
    assert res.n_images == 28
    for r in res.splits:
        assert not {3, 7} & set(r.test_index.tolist())
    assert sum(r.n_train + r.n_val + r.n_test for r in res.splits[:1]) == 28


def test_cross_trains_on_mos_and_scores_dmos_in_quality_direction():
    rng = np.random.default_rng(3)
    w = rng.standard_normal(4)
    qa, qb = rng.uniform(0, 1, 50), rng.uniform(0, 1, 40)
    fa = (np.outer(qa, w) + rng.normal(0, 0.05, (50, 4)))[:, None, :]
    fb = (np.outer(qb, w) + rng.normal(0, 0.05, (40, 4)))[:, None, :]
    res = run_cross(_outputs(fa), 5 * qa, _outputs(fb), 100 - 100 * qb,
                    train_lower_better=False, test_lower_better=True, metric_lower_better=False,
                    train_splits=_splits(50, 3), alphas=geometric_alphas(1e-3, 1e1, 5))
    assert len(res.splits) == 3 and res.n_images == 40
    assert res.aggregate["srcc"]["median"] > 0.9  # positive although B is DMOS
    assert all(r.n_test == 40 for r in res.splits)
    score = run_cross(_outputs(qa, kind="score"), qa, _outputs(qb, kind="score"), -qb,
                      train_lower_better=False, test_lower_better=True,
                      metric_lower_better=False, train_splits=[], alphas=[1.0])
    assert len(score.splits) == 1 and score.aggregate["srcc"]["median"] == pytest.approx(1.0)


def test_tiny_validation_parts_fall_back_to_the_middle_alpha():
    rng = np.random.default_rng(4)
    mos = rng.uniform(0, 1, 8)
    feats = np.stack([mos, rng.normal(size=8)], 1)[:, None, :]
    split = _Split(np.arange(5), np.array([5]), np.array([6, 7]), "h")
    res = run_intra(_outputs(feats), mos, labels_lower_better=False, metric_lower_better=False,
                    splits=[split], alphas=[0.01, 0.1, 1.0, 10.0, 100.0])
    assert res.ridge["chosen_alpha"] == 1.0
    assert "middle alpha" in res.notes[0]
