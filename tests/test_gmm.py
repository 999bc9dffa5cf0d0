"""Gaussian mixture: same EM as scikit-learn from the same start, on NumPy and on Dask data
resident on workers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from bigseg.segment import KMeans
from bigseg.segment.blocks import as_blocks
from bigseg.segment.gmm import GaussianMixture


def three_blobs(d: int, seed: int = 0, diagonal: bool = False) -> np.ndarray:
    """Three well-separated Gaussian blobs with different covariances: correlated, or
    axis-aligned with different variances per feature (``diagonal``)."""
    rng = np.random.default_rng(seed)
    parts = []
    for n, scale, centre in ((1500, 0.5, 0.0), (3000, 1.0, 10.0), (2000, 0.3, -10.0)):
        if diagonal:
            A = np.diag(rng.uniform(0.5, 1.5, size=d) * scale)
        else:
            A = rng.normal(size=(d, d)) * scale / np.sqrt(d) + np.eye(d) * scale
        c = np.full(d, centre)
        c[0] = -centre  # centres not on one line
        parts.append(rng.normal(size=(n, d)) @ A + c)
    return np.concatenate(parts).astype(np.float32)


def sklearn_from_same_start(X, k, cov_type, tol):
    """scikit-learn's GaussianMixture started where ours starts: our K-Means means, then
    weights and covariances of the hard assignments."""
    C = KMeans(k, random_state=0, device="cpu").fit(X).cluster_centers_.astype(np.float64)
    X64 = X.astype(np.float64)
    lab = ((X64[:, None, :] - C[None]) ** 2).sum(-1).argmin(1)
    w = np.bincount(lab, minlength=k) / len(X)
    means = np.stack([X64[lab == j].mean(0) for j in range(k)])
    if cov_type == "diag":
        prec = 1.0 / (np.stack([X64[lab == j].var(0) for j in range(k)]) + 1e-6)
    else:
        cov = np.stack([np.cov(X64[lab == j].T, bias=True) for j in range(k)])
        prec = np.linalg.inv(cov + 1e-6 * np.eye(X.shape[1]))
    return SkGaussianMixture(
        k, covariance_type=cov_type, tol=tol, weights_init=w, means_init=means, precisions_init=prec
    ).fit(X64)


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("cov_type", ["diag", "full"])
def test_matches_scikit_learn_from_the_same_start(d, cov_type):
    X = three_blobs(d, diagonal=cov_type == "diag")
    gm = GaussianMixture(3, covariance_type=cov_type, tol=1e-6, device="cpu").fit(X)
    sk = sklearn_from_same_start(X, 3, cov_type, tol=1e-6)
    assert gm.converged_ and sk.converged_
    # Tolerances: our E-step runs in float32 (eps 6e-8) on rows shifted by one reference point,
    # so a log-probability carries an absolute error of about eps * |x . mu * prec| (~1e-4
    # here) whatever the BLAS kernel; the statistics are summed in float64. The per-row
    # log-likelihood therefore agrees to ~1e-5 relative and the responsibilities, hence means,
    # weights and covariances, to ~1e-6; each bound below leaves a margin of 10x or more.
    assert gm.score(X) == pytest.approx(sk.score(X.astype(np.float64)), rel=1e-4)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-4)
    # match components (same start, so the order should already agree)
    cost = ((gm.means_[:, None, :] - sk.means_[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert (cols == rows).all()
    np.testing.assert_allclose(gm.means_, sk.means_, atol=1e-5)
    np.testing.assert_allclose(gm.weights_, sk.weights_, atol=1e-5)
    np.testing.assert_allclose(gm.covariances_, sk.covariances_, rtol=1e-5, atol=1e-7)
    shape = (3, d) if cov_type == "diag" else (3, d, d)
    assert gm.covariances_.shape == gm.precisions_cholesky_.shape == shape
    assert gm.n_features_in_ == d and gm.n_iter_ >= 1
    assert len(gm.iter_seconds_) == gm.n_iter_
    assert (gm.labels_ == sk.predict(X.astype(np.float64))).all()


def test_probabilities_labels_and_criteria():
    X = three_blobs(5)
    gm = GaussianMixture(3, covariance_type="full", device="cpu").fit(X)
    P = gm.predict_proba(X)
    assert P.shape == (len(X), 3)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)
    assert (P.argmax(1) == gm.predict(X)).all()
    assert (gm.fit_predict(X) == gm.labels_).all()
    n = len(X)
    n_params = 3 * 5 * 6 // 2 + 3 * 5 + 2
    assert gm.bic(X) == pytest.approx(-2 * gm.score(X) * n + n_params * np.log(n), rel=1e-9)
    assert gm.aic(X) == pytest.approx(-2 * gm.score(X) * n + 2 * n_params, rel=1e-9)


@pytest.mark.parametrize("cov_type", ["diag", "full"])
def test_bic_prefers_the_true_number_of_components(cov_type):
    X = three_blobs(2, diagonal=cov_type == "diag")  # data drawn from the model
    bic = {
        k: GaussianMixture(k, covariance_type=cov_type, device="cpu").fit(X).bic(X)
        for k in (1, 3, 5)
    }
    assert bic[3] < bic[1] and bic[3] < bic[5], bic


def test_dask_input_equals_numpy_input_with_the_same_blocks(local_client):
    import dask.array as da

    X = three_blobs(5)
    local, _ = as_blocks(X, block_rows=1500)
    dX = da.from_array(X, chunks=(1500, 5))
    a = GaussianMixture(3, covariance_type="full", device="cpu").fit(local)
    b = GaussianMixture(3, covariance_type="full", device="cpu").fit(dX)
    assert a.n_iter_ == b.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)
    assert not hasattr(b, "labels_")  # labels of distributed input stay distributed
    assert (b.predict(dX) == a.labels_).all()
    assert b.score(dX) == pytest.approx(a.score(X), rel=1e-6)


def test_same_seed_same_answer():
    X = three_blobs(2, seed=1)
    a = GaussianMixture(3, random_state=7, device="cpu").fit(X)
    b = GaussianMixture(3, random_state=7, device="cpu").fit(X)
    assert (a.means_ == b.means_).all() and (a.covariances_ == b.covariances_).all()
    assert (a.weights_ == b.weights_).all() and a.n_iter_ == b.n_iter_


def test_given_initial_means():
    X = three_blobs(2)
    ref = GaussianMixture(3, device="cpu").fit(X)
    start = KMeans(3, device="cpu").fit(X).cluster_centers_
    gm = GaussianMixture(3, init=start, device="cpu").fit(X)
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-6)
    with pytest.raises(ValueError, match=r"init has shape \(2, 2\); expected \(3, 2\)"):
        GaussianMixture(3, init=start[:2], device="cpu").fit(X)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"n_samples=3 should be >= n_components=8"):
        GaussianMixture(8, device="cpu").fit(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianMixture(2, covariance_type="spherical", device="cpu").fit(three_blobs(2))
    with pytest.raises(ValueError, match="not fitted"):
        GaussianMixture(2).predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="init must be"):
        GaussianMixture(2, init="random", device="cpu").fit(three_blobs(2))
