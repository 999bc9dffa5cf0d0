"""Two-stage hierarchical segmentation: weighted Ward equals SciPy's, blobs recovered,
SciPy accepts the linkage, dendrogram JSON and SVG, Dask input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram, fcluster, linkage
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from bigseg.segment.hierarchical import Hierarchical, ward_linkage

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(200_000, n_features=5, centers=4, cluster_std=1.0, center_box=(-20, 20),
                      random_state=0)  # fmt: skip
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return Hierarchical(4, n_micro=60, device="cpu").fit(X)


def test_weighted_ward_with_unit_sizes_equals_scipy():
    X = np.random.default_rng(1).normal(size=(250, 4))
    Z, w = ward_linkage(X, np.ones(len(X)))
    ref = linkage(X, "ward")
    np.testing.assert_allclose(Z[:, 2], ref[:, 2], rtol=1e-10)  # merge heights
    np.testing.assert_array_equal(Z[:, 3], ref[:, 3])
    np.testing.assert_array_equal(Z[:, :2], ref[:, :2])  # no ties: same merges too
    np.testing.assert_array_equal(w, ref[:, 3])


def test_weighted_ward_equals_ward_on_repeated_points():
    rng = np.random.default_rng(2)
    C, n = rng.normal(size=(30, 3)), rng.integers(1, 6, 30)
    Z, w = ward_linkage(C, n)
    ref = linkage(np.repeat(C, n, axis=0), "ward")
    # above the duplicates (merged at height 0) the trees are the same
    np.testing.assert_allclose(Z[:, 2], ref[-len(Z) :, 2], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(w, ref[-len(Z) :, 3])


def test_ward_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        ward_linkage(np.zeros((1, 2)), [1])
    with pytest.raises(ValueError, match="positive"):
        ward_linkage(np.zeros((2, 2)), [1, 0])


def test_four_blobs_recovered(blobs, fitted):
    X, y = blobs
    h = fitted
    assert adjusted_rand_score(y, h.labels_) > 0.95
    assert (h.predict(X[:5000]) == h.labels_[:5000]).all()
    assert h.cluster_centers_.shape == (4, 5) and h.n_features_in_ == 5
    assert h.micro_sizes_.sum() == len(X) and (h.micro_sizes_ > 0).all()
    assert h.micro_centers_.shape == (len(h.micro_sizes_), 5)
    sizes = np.bincount(h.labels_)
    assert (np.diff(sizes) <= 0).all()  # segment 0 is the largest
    W = h.micro_sizes_[:, None]
    for s in range(4):  # centres: size-weighted means of the micro-centroids (~ segment means)
        own = h.micro_labels_ == s
        want = (h.micro_centers_[own] * W[own]).sum(0) / W[own].sum()
        np.testing.assert_allclose(h.cluster_centers_[s], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h.cluster_centers_[s], X[h.labels_ == s].mean(0), atol=1e-2)


def test_linkage_accepted_by_scipy(fitted):
    h = fitted
    Z = h.linkage_
    assert Z.shape == (len(h.micro_sizes_) - 1, 4) and Z[-1, 3] == len(h.micro_sizes_)
    assert h.linkage_sizes_[-1] == h.micro_sizes_.sum()  # customers under the root
    cut = fcluster(Z, 4, "maxclust")
    assert adjusted_rand_score(cut, h.micro_labels_) == 1.0
    assert len(dendrogram(Z, no_plot=True)["leaves"]) == len(h.micro_sizes_)


def test_dendrogram_data_and_svg(fitted):
    h = fitted
    data = h.dendrogram_data(max_leaves=10)
    assert json.loads(json.dumps(data)) == data
    assert len(data["leaves"]) == 10 and len(data["merges"]) == 9
    assert sum(leaf["size"] for leaf in data["leaves"]) == data["n_customers"]
    assert data["merges"][-1]["size"] == data["n_customers"]
    heights = [mg["height"] for mg in data["merges"]]
    assert heights == sorted(heights)
    assert heights[-4] < data["cut_height"] < heights[-3]  # 3 merges above the cut
    assert {leaf["segment"] for leaf in data["leaves"]} == {0, 1, 2, 3}
    svg = h.dendrogram_svg(width=500, height=300)
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg" and root.get("width") == "500"
    assert len(root.findall(SVG + "path")) == 29 and root.findall(SVG + "line")
    assert "<path" in svg and "matplotlib" not in svg


def test_small_input_and_errors():
    X = np.random.default_rng(0).normal(0, 0.1, (10, 2)).astype(np.float32)
    X[5:] += 9
    h = Hierarchical(2, n_micro=300, device="cpu").fit(X)  # n_micro capped at the rows
    assert sorted(np.bincount(h.labels_).tolist()) == [5, 5]
    assert ET.fromstring(h.dendrogram_svg()).tag == SVG + "svg"
    with pytest.raises(ValueError, match="not fitted"):
        Hierarchical(2).predict(X)
    with pytest.raises(ValueError, match="exceeds"):
        Hierarchical(5, n_micro=3, device="cpu").fit(X)


def test_dask_input(blobs, local_client):
    import dask.array as da

    X, y = blobs
    X, y = X[:40_000], y[:40_000]
    h = Hierarchical(4, n_micro=40, device="cpu").fit(da.from_array(X, chunks=(10_000, 5)))
    assert not hasattr(h, "labels_")  # labels of distributed input stay distributed
    assert h.micro_sizes_.sum() == len(X)
    assert adjusted_rand_score(y, h.predict(X)) > 0.95
