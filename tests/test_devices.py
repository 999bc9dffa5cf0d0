"""Shared test bodies: the same assertions for ``device="cpu"`` (always, in CI) and
``device="gpu"`` (marked ``gpu``; skipped where no CUDA GPU with CuPy is present, run on
a GPU machine with ``pytest -m gpu tests/test_devices.py``).

Each test fits on in-memory NumPy input; on the GPU the estimators move the blocks to
the device and run the CuPy form of the same kernels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from bigseg import backend
from bigseg.segment import HDBSCAN, SOM, GaussianMixture, Hierarchical, KMeans
from bigseg.segment.preprocess import Preprocessor


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "gpu" and backend.gpu_count() == 0:
        pytest.skip("no CUDA GPU with CuPy here")
    return request.param


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(20_000, n_features=6, centers=5, cluster_std=0.8, random_state=3)
    return X.astype(np.float32), y


def test_kmeans(device, blobs):
    from sklearn.cluster import KMeans as SkKMeans

    X, y = blobs
    km = KMeans(5, random_state=0, device=device).fit(X)
    assert adjusted_rand_score(y, km.labels_) == pytest.approx(1.0)
    sk = SkKMeans(5, n_init=3, random_state=0).fit(X)
    assert km.inertia_ == pytest.approx(sk.inertia_, rel=5e-3)
    assert isinstance(km.cluster_centers_, np.ndarray)  # results come back as NumPy
    assert (km.predict(X) == km.labels_).all()


def test_gaussian_mixture(device, blobs):
    X, y = blobs
    gm = GaussianMixture(5, covariance_type="full", random_state=0, device=device).fit(X)
    assert adjusted_rand_score(y, gm.predict(X)) > 0.99
    probs = gm.predict_proba(X[:100])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_hierarchical(device, blobs):
    X, y = blobs
    h = Hierarchical(5, random_state=0, device=device).fit(X)
    assert adjusted_rand_score(y, h.predict(X)) > 0.99


def test_som(device, blobs):
    X, y = blobs
    som = SOM(6, 6, n_segments=5, random_state=0, device=device).fit(X)
    assert adjusted_rand_score(y, som.predict(X)) > 0.95


def test_hdbscan(device, blobs):
    X, y = blobs
    hd = HDBSCAN(random_state=0, device=device).fit(X)
    lab = hd.predict(X)
    keep = lab >= 0
    assert keep.mean() > 0.9
    assert adjusted_rand_score(y[keep], lab[keep]) > 0.99


def test_preprocessing(device):
    import pandas as pd

    df = pd.DataFrame({"a": [0.0, 9.0, 99.0, 4.0], "b": [1.0, 3.0, np.nan, 2.0]})
    pre = Preprocessor.fit_moments(["a", "b"], {"a"}, [Preprocessor.moments(df, ["a", "b"], {"a"})])
    be = backend.resolve(device)
    z = be.to_numpy(pre.transform(df, be.xp))
    np.testing.assert_allclose(z, pre.transform(df), rtol=1e-6)
    assert np.isfinite(z).all()
