"""K-Means: same answers as scikit-learn, on NumPy and on Dask data resident on workers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from bigseg.segment import KMeans
from bigseg.segment.kmeans import assign_accumulate


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(20_000, n_features=6, centers=5, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


def test_matches_scikit_learn_on_numpy(blobs):
    X, y = blobs
    km = KMeans(5, random_state=0, device="cpu").fit(X)
    sk = SkKMeans(5, n_init=3, random_state=0).fit(X)
    assert adjusted_rand_score(y, km.labels_) == pytest.approx(1.0)
    assert km.inertia_ == pytest.approx(sk.inertia_, rel=1e-3)
    assert km.cluster_centers_.shape == (5, 6) and km.cluster_centers_.dtype == np.float32
    assert (km.predict(X) == km.labels_).all()
    assert km.n_iter_ >= 1 and km.n_features_in_ == 6
    d = km.transform(X[:10])
    assert d.shape == (10, 5) and (d.argmin(1) == km.labels_[:10]).all()
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-5)


def test_kernel_against_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70_000, 4)).astype(np.float32)  # spans two chunks
    C = rng.normal(size=(3, 4)).astype(np.float32)
    sums, counts, inertia, labels = assign_accumulate(X, C, np, with_labels=True)
    d = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(-1)
    want = d.argmin(1)
    assert (labels == want).mean() > 0.9999
    assert counts.tolist() == np.bincount(labels, minlength=3).tolist()
    for j in range(3):
        np.testing.assert_allclose(sums[j], X[labels == j].sum(0, dtype=np.float64), rtol=1e-4)
    assert inertia == pytest.approx(d.min(1).sum(), rel=1e-4)


def test_dask_array_input_uses_the_current_client(blobs, local_client):
    import dask.array as da

    X, y = blobs
    dX = da.from_array(X, chunks=(4000, 6))
    km = KMeans(5, random_state=0, device="cpu").fit(dX)
    local = KMeans(5, random_state=0, device="cpu").fit(X)
    # same blocks would give identical centres; different blocking still converges the same
    assert adjusted_rand_score(y, km.predict(X)) == pytest.approx(1.0)
    np.testing.assert_allclose(np.sort(km.cluster_centers_, 0), np.sort(local.cluster_centers_, 0),
                               atol=1e-3)
    assert not hasattr(km, "labels_")  # labels of distributed input stay distributed


def test_dask_dataframe_input(local_client):
    import dask.dataframe as dd
    import pandas as pd

    X, y = make_blobs(3000, n_features=3, centers=3, random_state=1)
    ddf = dd.from_pandas(pd.DataFrame(X.astype(np.float32), columns=list("abc")), npartitions=3)
    km = KMeans(3, device="cpu").fit(ddf)
    assert adjusted_rand_score(y, km.predict(X.astype(np.float32))) == pytest.approx(1.0)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"n_samples=3 should be >= n_clusters=8"):
        KMeans(8, device="cpu").fit(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="not fitted"):
        KMeans(2).predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        KMeans(2).fit(np.zeros(5, np.float32))


def test_same_seed_same_centres(blobs):
    X, _ = blobs
    a = KMeans(5, random_state=3, device="cpu").fit(X).cluster_centers_
    b = KMeans(5, random_state=3, device="cpu").fit(X).cluster_centers_
    assert (a == b).all()
