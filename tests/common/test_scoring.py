"""Scores on inputs whose answers are known on paper."""

import math

import numpy as np
import pytest

from shamisa_bench.common import scoring


def test_srcc_plcc_krcc_hand_values_with_ties():
    pred = [1, 2, 3, 4, 5]
    target = [5, 6, 7, 8, 7]  # ranks 1, 2, 3.5, 5, 3.5
    assert scoring.srcc(pred, target) == pytest.approx(8 / math.sqrt(95), abs=1e-12)
    # tau-b: 8 concordant, 1 discordant, one tie in the target
    assert scoring.krcc(pred, target) == pytest.approx(7 / math.sqrt(90), abs=1e-12)
    # Pearson of [1..5] and [5,6,7,8,7]: centred sums of products 6, squares 10 and 5.2
    assert scoring.plcc(pred, target) == pytest.approx(6 / math.sqrt(10 * 5.2), abs=1e-12)


def test_srcc_many_matches_srcc_rowwise():
    rng = np.random.default_rng(0)
    preds = rng.standard_normal((6, 40))
    preds[2] = np.round(preds[2])  # ties
    preds[4] = 1.0  # constant row -> NaN
    t = rng.standard_normal(40)
    out = scoring.srcc_many(preds, t)
    for i in (0, 1, 2, 3, 5):
        assert out[i] == pytest.approx(scoring.srcc(preds[i], t), abs=1e-12)
    assert math.isnan(out[4])


def test_logistic_plcc_is_one_on_an_exact_logistic():
    x = np.linspace(-3, 5, 60)
    y = scoring.logistic_4p(x, 90.0, 10.0, 1.2, 0.4)
    assert scoring.plcc(x, y) < 0.95  # the raw relation is clearly non-linear
    fit = scoring.fit_logistic(x, y)
    assert fit.converged
    assert scoring.plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(fit(x), y, atol=1e-4)


def test_logistic_handles_negative_correlation_and_falls_back():
    x = np.linspace(0, 1, 30)
    y = -scoring.logistic_4p(x, 1.0, 0.0, 0.5, 0.1)
    assert scoring.plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)
    # too few points: identity mapping, logistic PLCC equals raw PLCC
    small_x, small_y = [1.0, 2.0, 4.0], [1.0, 3.0, 2.0]
    assert not scoring.fit_logistic(small_x, small_y).converged
    assert scoring.plcc_logistic(small_x, small_y) == scoring.plcc(small_x, small_y)


def test_constant_prediction_gives_nan_not_error():
    out = scoring.correlations([1.0] * 10, np.arange(10.0))
    assert all(math.isnan(out[k]) for k in ("srcc", "plcc", "plcc_logistic", "krcc"))
    assert out["logistic_converged"] == 0.0


def test_nonfinite_input_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        scoring.srcc([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same length"):
        scoring.plcc([1.0, 2.0], [1.0, 2.0, 3.0])


def test_aggregate_median_mean_std_and_nan_count():
    agg = scoring.aggregate([0.9, 0.1, 0.5, float("nan"), 0.7])
    assert agg["median"] == pytest.approx(0.6)
    assert agg["mean"] == pytest.approx(0.55)
    assert agg["std"] == pytest.approx(np.std([0.9, 0.1, 0.5, 0.7]))
    assert (agg["n"], agg["n_nan"]) == (5, 1)
    assert math.isnan(scoring.aggregate([float("nan")])["median"])
    per = scoring.aggregate_scores([{"srcc": 0.2}, {"srcc": 0.4}, {"srcc": 0.3}], ["srcc"])
    assert per["srcc"]["median"] == pytest.approx(0.3)


def test_orient_flips_lower_better():
    np.testing.assert_array_equal(scoring.orient([1, 2], True), [-1.0, -2.0])
    np.testing.assert_array_equal(scoring.orient([1, 2], False), [1.0, 2.0])


def test_bootstrap_median_interval_is_seeded_and_brackets_the_median():
    from shamisa_bench.common.scoring import bootstrap_median_interval

    rng = np.random.default_rng(3)
    v = rng.normal(0.7, 0.05, size=10)
    lo, hi = bootstrap_median_interval(v)
    assert lo <= float(np.median(v)) <= hi and lo >= v.min() and hi <= v.max()
    assert bootstrap_median_interval(v) == (lo, hi)  # same seed, same interval
    assert bootstrap_median_interval(v, seed=1) != (lo, hi)
    narrow = bootstrap_median_interval(v, level=0.5)
    assert lo <= narrow[0] <= narrow[1] <= hi
    assert bootstrap_median_interval([0.5, np.nan]) is None  # one finite value: no interval
    assert bootstrap_median_interval([0.3, 0.3, 0.3]) == (0.3, 0.3)
    with pytest.raises(ValueError, match="level"):
        bootstrap_median_interval(v, level=95)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_median_interval(v, n_resamples=10)
