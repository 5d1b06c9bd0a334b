"""The eigendecomposition ridge path against a direct closed-form solve.

scikit-learn is not installed in this project, so the reference is the estimator it
implements, solved directly: centre X and y, solve (Xc^T Xc + alpha I) w = Xc^T yc and set
b = mean(y) - mean(X) @ w (with standardisation: divide the centred columns by their
population std first, zero-variance columns keep scale 1, and map w back).
"""

import numpy as np
import pytest

from shamisa_bench.common.scoring import srcc_many
from shamisa_bench.iqa import ridge


def _closed_form(X, y, alpha, standardize=False):
    mu, ym = X.mean(0), y.mean()
    Xc = X - mu
    sd = np.ones(X.shape[1])
    if standardize:  # unit variance, then a total of 2 per sample over the D features
        sd = Xc.std(0)
        sd[sd == 0] = 1.0
        sd = sd * np.sqrt(X.shape[1] / 2.0)
        Xc = Xc / sd
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - ym)) / sd
    return w, ym - mu @ w


@pytest.mark.parametrize("n,d", [(60, 12), (15, 40)])  # primal and dual branches
@pytest.mark.parametrize("standardize", [False, True])
def test_path_equals_closed_form(n, d, standardize):
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 10.0, d) + rng.standard_normal(d)
    X[:, 3] = 2.5  # a constant feature
    y = X[:, :5] @ rng.standard_normal(5) + 0.1 * rng.standard_normal(n) + 40.0
    alphas = ridge.geometric_alphas(1e-3, 1e3, 7)
    W, b = ridge.fit_ridge_path(X, y, alphas, standardize=standardize)
    assert W.shape == (7, d) and b.shape == (7,)
    for i, a in enumerate(alphas):
        w_ref, b_ref = _closed_form(X, y, a, standardize)
        np.testing.assert_allclose(W[i], w_ref, rtol=1e-7, atol=1e-9)
        assert b[i] == pytest.approx(b_ref, rel=1e-9, abs=1e-9)
    fit = ridge.fit_ridge(X, y, alphas[2], standardize=standardize)
    np.testing.assert_allclose(fit.predict(X), X @ W[2] + b[2], rtol=1e-9)
    np.testing.assert_allclose(ridge.predict_path(X[:4], W, b)[:, 0], W @ X[0] + b)


def test_float32_path_is_close():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 30))
    y = X @ rng.standard_normal(30)
    W64, _ = ridge.fit_ridge_path(X, y, [0.1, 10.0])
    W32, b32 = ridge.fit_ridge_path(X, y, [0.1, 10.0], dtype=np.float32)
    assert W32.dtype == np.float32 and b32.dtype == np.float32
    np.testing.assert_allclose(W32, W64, rtol=1e-3, atol=1e-4)


def test_select_alpha_by_median_val_srcc():
    val = np.array([[0.1, 0.5, 0.4], [0.2, 0.3, 0.6], [0.3, 0.45, 0.5], [np.nan, 0.9, 0.1]])
    i, a, med = ridge.select_alpha_by_val(val, [1.0, 2.0, 3.0])
    # medians: [nan->-inf counted, 0.2 ... ] -> col0 median of (0.1,0.2,0.3,-inf)=0.15
    np.testing.assert_allclose(med, [0.15, 0.475, 0.45])
    assert (i, a) == (1, 2.0)
    with pytest.raises(ValueError, match="shape"):
        ridge.select_alpha_by_val(val, [1.0, 2.0])


def test_selected_alpha_recovers_signal():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 50))
    y = X[:, 0] * 3 + 0.3 * rng.standard_normal(300)
    alphas = ridge.geometric_alphas(1e-3, 1e3, 25)
    W, b = ridge.fit_ridge_path(X[:200], y[:200], alphas)
    s = srcc_many(ridge.predict_path(X[200:], W, b), y[200:])
    _, _, med = ridge.select_alpha_by_val(s[None], alphas)
    assert np.nanmax(med) > 0.9


def test_bad_inputs_raise_value_error():
    X = np.zeros((5, 3))
    with pytest.raises(ValueError, match="rows"):
        ridge.fit_ridge_path(X, np.zeros(4), [1.0])
    with pytest.raises(ValueError, match="positive"):
        ridge.fit_ridge_path(X, np.zeros(5), [0.0])
    with pytest.raises(ValueError, match="finite"):
        ridge.fit_ridge_path(np.full((5, 3), np.nan), np.zeros(5), [1.0])
    with pytest.raises(ValueError, match="positive"):
        ridge.geometric_alphas(0.0, 1.0, 3)


def test_bench_ridge_small_runs():
    out = ridge.bench_ridge(n=300, d=64, n_splits=2, n_alphas=5, dtype="float64")
    assert out["n_train"] == 210 and out["method"] == "primal eigh"
    assert out["total_s"] >= 0 and 0 <= out["chosen_index"] < 5
