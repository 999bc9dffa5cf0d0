"""Batch SOM: a map that fits the data, keeps its topology and finds the blobs as
segments, on NumPy and on Dask data resident on workers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from bigseg.segment.blocks import as_blocks
from bigseg.segment.som import SOM, weighted_ward


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(8000, n_features=5, centers=4, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return SOM(6, 6, n_segments=4, device="cpu").fit(X)


def test_quantization_error_decreases_and_beats_random_weights(blobs, fitted):
    X, _ = blobs
    som = fitted
    hist = np.asarray(som.distortion_history_)
    assert len(hist) == som.n_iter_ + 1 == 21
    # the first epoch (widest neighbourhood) pulls the spread-out PCA grid together;
    # from then on every epoch lowers the distortion
    assert (np.diff(hist[1:]) <= 1e-6 * hist[1:-1]).all(), hist
    assert hist[-1] < hist[0]
    assert som.quantization_error_ == pytest.approx(som.quantization_error(X), rel=1e-6)
    assert som.quantization_error_**2 <= hist[-1]  # mean distance <= RMS distance
    rng = np.random.default_rng(0)
    baseline = SOM(6, 6, device="cpu")
    for random_weights in (
        X[rng.choice(len(X), 36, replace=False)],  # 36 random rows
        X.mean(0) + X.std(0) * rng.normal(size=(36, 5)),  # Gaussian noise in the data range
    ):
        baseline.weights_ = random_weights.astype(np.float32)
        assert som.quantization_error_ < baseline.quantization_error(X)


def test_topology_and_segments_match_the_blobs(blobs, fitted):
    X, y = blobs
    som = fitted
    assert som.weights_.shape == (36, 5) and som.weights_.dtype == np.float32
    assert som.topographic_error_ < 0.2
    assert som.topographic_error(X) < 0.2
    assert som.unit_counts_.sum() == len(X)
    assert adjusted_rand_score(y, som.predict(X)) > 0.9
    assert (som.labels_ == som.predict(X)).all()
    assert som.unit_labels_.shape == (36,) and set(som.unit_labels_) == {0, 1, 2, 3}
    bmu = som.transform(X)
    assert bmu.shape == (len(X),) and bmu.max() < 36
    assert (som.unit_labels_[bmu] == som.predict(X)).all()
    # segment centres are the means of the rows in each segment
    seg = som.predict(X)
    want = np.stack([X[seg == j].mean(0) for j in range(4)])
    np.testing.assert_allclose(som.cluster_centers_, want, rtol=1e-4, atol=1e-4)


def test_without_segments_predict_is_the_bmu(blobs):
    X, _ = blobs
    som = SOM(3, 4, n_epochs=5, device="cpu").fit(X[:2000])
    assert (som.predict(X[:100]) == som.transform(X[:100])).all()
    assert not hasattr(som, "unit_labels_")
    one = SOM(2, 2, n_epochs=3, device="cpu").fit(X[:500, :1])  # d < 2: init from rows
    assert one.weights_.shape == (4, 1)


def test_weighted_ward_equals_scipy_ward_with_equal_weights():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(60, 3))
    for k in (2, 5, 9):
        ours = weighted_ward(P, np.ones(60), k)
        ref = fcluster(linkage(P, method="ward"), k, criterion="maxclust")
        assert adjusted_rand_score(ref, ours) == pytest.approx(1.0)
        assert ours[0] == 0 and ours.max() == k - 1


def test_weighted_ward_is_ward_on_repeated_points():
    rng = np.random.default_rng(1)
    P = rng.normal(size=(12, 2)) * 3
    w = rng.integers(1, 4, size=12)
    rep = np.repeat(np.arange(12), w)
    ref = fcluster(linkage(P[rep], method="ward"), 4, criterion="maxclust")
    # repeated copies of a point are merged first (cost 0), so cutting at 4 clusters
    # gives the same partition of the points
    ref_points = np.array([ref[np.flatnonzero(rep == i)[0]] for i in range(12)])
    assert adjusted_rand_score(ref_points, weighted_ward(P, w, 4)) == pytest.approx(1.0)
    # an empty unit joins its nearest cluster
    lab = weighted_ward(np.array([[0.0], [0.1], [10.0], [9.0]]), np.array([5, 5, 5, 0]), 2)
    assert lab.tolist() == [0, 0, 1, 1]


def test_dask_input_equals_numpy_input_with_the_same_blocks(blobs, local_client):
    import dask.array as da

    X, _ = blobs
    local, _ = as_blocks(X, block_rows=1500)
    dX = da.from_array(X, chunks=(1500, 5))
    a = SOM(5, 5, n_segments=4, n_epochs=8, device="cpu").fit(local)
    b = SOM(5, 5, n_segments=4, n_epochs=8, device="cpu").fit(dX)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert (a.unit_labels_ == b.unit_labels_).all()
    assert a.quantization_error_ == pytest.approx(b.quantization_error_, rel=1e-12)
    assert a.topographic_error_ == b.topographic_error_
    assert not hasattr(b, "labels_")
    assert (b.predict(dX) == a.labels_).all()


def test_same_seed_same_weights(blobs):
    X, _ = blobs
    a = SOM(4, 5, n_epochs=6, sample_size=3000, random_state=3, device="cpu").fit(X)
    b = SOM(4, 5, n_epochs=6, sample_size=3000, random_state=3, device="cpu").fit(X)
    assert (a.weights_ == b.weights_).all()
    assert a.topographic_error_ == b.topographic_error_


def test_errors_say_what_was_expected(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match=r"n_segments must be in \[1, rows\*cols=4\]"):
        SOM(2, 2, n_segments=5, device="cpu").fit(X)
    with pytest.raises(ValueError, match="not fitted"):
        SOM().predict(X)
    with pytest.raises(ValueError, match="sigma and sigma_end must be > 0"):
        SOM(sigma_end=0.0, device="cpu").fit(X)
