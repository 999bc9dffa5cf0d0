"""HDBSCAN on a sample, every row assigned by the nearest-core-point rule: blobs found,
noise kept apart, sample labels reproduced, Dask input, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from bigseg.segment.density import HDBSCAN, _Assigner

CENTRES = np.array([[-6.0, -6.0, 0.0], [6.0, -6.0, 3.0], [0.0, 6.0, -3.0]])


@pytest.fixture(scope="module")
def blobs_and_noise():
    rng = np.random.default_rng(0)
    Xb = np.concatenate([rng.normal(c, 0.8, (20_000, 3)) for c in CENTRES])
    Xn = rng.uniform(-12, 12, (6_000, 3))
    y = np.r_[np.repeat([0, 1, 2], 20_000), -np.ones(6_000, int)]
    perm = rng.permutation(len(y))
    return np.r_[Xb, Xn].astype(np.float32)[perm], y[perm]


@pytest.fixture(scope="module")
def fitted(blobs_and_noise):
    X, _ = blobs_and_noise
    return HDBSCAN(sample_size=8_000, device="cpu").fit(X)


def test_three_blobs_and_noise(blobs_and_noise, fitted):
    X, y = blobs_and_noise
    h = fitted
    assert h.n_clusters_ == 3
    assert 0.02 < h.noise_share_ < 0.5
    lab = h.labels_
    assert lab.shape == y.shape and set(np.unique(lab)) == {-1, 0, 1, 2}
    ok = (lab >= 0) & (y >= 0)
    assert adjusted_rand_score(y[ok], lab[ok]) > 0.9
    assert (lab[y >= 0] >= 0).mean() > 0.95  # blob rows are rarely noise
    assert (lab[y < 0] == -1).mean() > 0.5  # background rows mostly are
    assert h.noise_share_ == pytest.approx((lab == -1).mean())
    assert h.cluster_sizes_.sum() == (lab >= 0).sum()
    # centres: mean of each cluster's sample points, near the true blob centres
    assert h.cluster_centers_.shape == (3, 3) and h.n_features_in_ == 3
    d = np.linalg.norm(h.cluster_centers_[:, None] - CENTRES[None], axis=-1)
    assert (d.min(1) < 0.3).all()
    assert h.min_cluster_size_ == max(25, int(0.005 * len(h.sample_)))


def test_predict_reproduces_sample_labels_of_core_points(blobs_and_noise, fitted):
    h = fitted
    core = h.core_sample_indices_
    assert len(core) > 0 and (h.sample_labels_[core] >= 0).all()
    assert (h.predict(h.sample_)[core] == h.sample_labels_[core]).all()
    X, _ = blobs_and_noise
    assert (h.predict(X[:3000]) == h.labels_[:3000]).all()


def test_assignment_rule():
    pts = np.array([[0.0, 0.0], [10.0, 0.0]])
    a = _Assigner(pts, np.array([0, 1]), np.array([1.0, 2.0]))
    X = np.array([[0.5, 0.0], [1.5, 0.0], [8.5, 0.0], [7.5, 0.0], [5.0, 5.0]])
    assert a(X).tolist() == [0, -1, 1, -1, -1]
    empty = _Assigner(np.zeros((0, 2)), np.zeros(0, int), np.zeros(0))
    assert empty(X).tolist() == [-1] * 5


def test_same_seed_same_labels(blobs_and_noise, fitted):
    X, _ = blobs_and_noise
    again = HDBSCAN(sample_size=8_000, device="cpu").fit(X)
    assert (again.labels_ == fitted.labels_).all()
    assert (again.sample_ == fitted.sample_).all()
    other = HDBSCAN(sample_size=8_000, random_state=1, device="cpu").fit(X)
    assert not np.array_equal(other.sample_, fitted.sample_)
    assert other.n_clusters_ == 3


def test_dask_input(blobs_and_noise, local_client):
    import dask.array as da

    X, y = blobs_and_noise
    X, y = X[:30_000], y[:30_000]
    h = HDBSCAN(sample_size=6_000, device="cpu").fit(da.from_array(X, chunks=(5_000, 3)))
    assert not hasattr(h, "labels_")  # labels of distributed input stay distributed
    assert h.n_clusters_ == 3 and 0.02 < h.noise_share_ < 0.5
    lab = h.predict(X)
    assert h.noise_share_ == pytest.approx((lab == -1).mean())
    ok = (lab >= 0) & (y >= 0)
    assert adjusted_rand_score(y[ok], lab[ok]) > 0.9
    local = HDBSCAN(sample_size=6_000, device="cpu").fit(X)  # same blocks would give the
    assert local.n_clusters_ == 3  # same sample; here the blocking differs


def test_errors():
    with pytest.raises(ValueError, match="not fitted"):
        HDBSCAN().predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        HDBSCAN(device="cpu").fit(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="algorithm"):
        HDBSCAN(algorithm="optics", device="cpu").fit(np.zeros((9, 2), np.float32))
    with pytest.raises(ValueError, match="cluster_selection_epsilon > 0"):
        HDBSCAN(algorithm="dbscan", device="cpu").fit(np.zeros((9, 2), np.float32))


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    return np.r_[
        rng.normal(0, 0.2, (400, 2)), rng.normal(3, 0.2, (400, 2)), rng.uniform(-2, 5, (100, 2))
    ].astype(np.float32)


def test_dbscan_option_matches_scikit_learn_dbscan(small):
    from sklearn.cluster import DBSCAN

    X = small
    h = HDBSCAN(algorithm="dbscan", cluster_selection_epsilon=0.15, min_samples=10,
                min_cluster_size=5, device="cpu").fit(X)  # fmt: skip
    ref = DBSCAN(eps=0.15, min_samples=10).fit(X)
    core = ref.core_sample_indices_
    assert h.n_clusters_ == 2 and (np.sort(h.core_sample_indices_) == core).all()
    assert adjusted_rand_score(ref.labels_[core], h.labels_[core]) == 1.0
    # every row within eps of a core point is clustered (DBSCAN's border points), no other
    assert ((h.labels_ == -1) == (ref.labels_ == -1)).all()
    assert np.allclose(h.core_radius_, 0.15)  # core distances are below eps


def test_epsilon_and_leaf_options(small):
    kw = dict(min_cluster_size=30, min_samples=10, device="cpu")
    leaf = HDBSCAN(cluster_selection_method="leaf", **kw).fit(small)
    assert leaf.n_clusters_ >= 2
    try:  # scikit-learn 1.9 + NumPy 2 may crash here (its bug #33219): a clear error
        h = HDBSCAN(cluster_selection_epsilon=1.0, cluster_selection_method="leaf", **kw)
        h.fit(small)
    except ValueError as e:
        assert "33219" in str(e)
    else:
        assert h.n_clusters_ == 2 and (h.core_radius_ >= 1.0).all()
