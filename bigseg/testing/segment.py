"""Checks of the segmentation methods and of the preprocessing on one device."""

from __future__ import annotations

import functools

import numpy as np

#: adjusted Rand index against the planted blobs a method reaches at least (a self-
#: organising map quantises each blob into grid units before grouping them; 0.95 for it)
MIN_ARI = {"som": 0.95}
DEFAULT_MIN_ARI = 0.99


@functools.lru_cache(maxsize=1)
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """20 000 rows, 6 features, 5 well separated blobs (float32 rows, planted labels)."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(20_000, n_features=6, centers=5, cluster_std=0.8, random_state=3)
    return X.astype(np.float32), y


def check_segmenter(method: str, device: str) -> None:
    """Fit ``METHODS[method]`` as the pipeline builds it (default options, k = 5, seed 0)
    on ``device`` and check what the pipeline relies on:

    - the blobs are found: the adjusted Rand index of the segments against the planted
      labels (rows outside the noise segment, at least 90 % of them);
    - results come back as NumPy, whatever the device;
    - the exported arrays assign every row on the CPU (where scoring runs) to the
      segment ``predict`` gave on the device;
    - the numeric fit diagnostics for ``metrics.json`` are finite;
    - the method's own estimator checks (:data:`EXTRA`).
    """
    from sklearn.metrics import adjusted_rand_score

    from bigseg.config import SegmentationConfig
    from bigseg.segment import METHODS, serialize

    X, y = blobs()
    seg = METHODS[method].from_config(5, SegmentationConfig(), 0, device).fit(X)
    for attr, value in vars(seg.estimator_).items():
        assert not hasattr(value, "__cuda_array_interface__"), f"{attr} is on the device"
    labels = seg.predict(X)
    assert isinstance(labels, np.ndarray) and labels.shape == (len(X),)
    np.testing.assert_array_equal(seg.labels_, labels)

    meta, arrays = seg.export()
    assert meta["method"] == method
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    assert arrays["centres"].shape == (meta["n_segments"], X.shape[1])
    assigned = serialize.assign(meta, arrays, X)
    agree = float(np.mean(assigned == labels))
    assert agree == 1.0 if device == "cpu" else agree >= 0.999, agree

    kept = labels != meta.get("noise_segment", -1)
    assert kept.mean() > 0.9, kept.mean()
    ari = adjusted_rand_score(y[kept], labels[kept])
    assert ari > MIN_ARI.get(method, DEFAULT_MIN_ARI), ari

    numbers = {k: v for k, v in seg.fit_metrics().items() if isinstance(v, float)}
    assert np.isfinite(list(numbers.values())).all(), numbers
    if method in EXTRA:
        EXTRA[method](seg.estimator_, X)


def _kmeans_inertia(est, X) -> None:
    """The inertia (sums over the device's blocks) is scikit-learn's."""
    from sklearn.cluster import KMeans as SkKMeans

    sk = SkKMeans(5, n_init=3, random_state=0).fit(X)
    assert abs(est.inertia_ - sk.inertia_) <= 5e-3 * sk.inertia_, (est.inertia_, sk.inertia_)


def _gmm_probabilities(est, X) -> None:
    probs = est.predict_proba(X[:100])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


#: checks of one method's estimator beyond the shared ones
EXTRA = {"kmeans": _kmeans_inertia, "gmm": _gmm_probabilities}


def check_preprocessing(device: str) -> None:
    """Scaling on the device gives the CPU's numbers (log1p + standardising, missing
    values filled)."""
    import pandas as pd

    from bigseg import backend
    from bigseg.segment.preprocess import Preprocessor

    df = pd.DataFrame({"a": [0.0, 9.0, 99.0, 4.0], "b": [1.0, 3.0, np.nan, 2.0]})
    pre = Preprocessor.fit_moments(["a", "b"], {"a"}, [Preprocessor.moments(df, ["a", "b"], {"a"})])
    be = backend.resolve(device)
    z = be.to_numpy(pre.transform(df, be.xp))
    np.testing.assert_allclose(z, pre.transform(df), rtol=1e-6)
    assert np.isfinite(z).all()
