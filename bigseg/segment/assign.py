"""Segment assignment from a fitted segmenter's arrays, without its estimator.

What every worker runs on every bucket: a row's segment from the arrays a model file
stores (:meth:`bigseg.segment.base.Segmenter.export`; :mod:`bigseg.segment.methods`
lists them per method). Nothing here imports scikit-learn: the estimators are
scikit-learn estimators, and importing it (with SciPy's statistics) cost each worker
process ~0.6 s that the workers spent while the segment stage's first tasks waited.
Only a Gaussian mixture's assignment needs its estimator class.
"""

from __future__ import annotations

import numpy as np

from bigseg.segment.lloyd import assign_accumulate

_CHUNK = 1 << 15


class _Assigner:
    """Nearest core point within its radius -> its label, else -1. Pickles to workers.

    A k-d tree over the core points; the search is bounded by the largest radius (a
    nearest point farther than that cannot be within its own radius), which makes
    background rows cheap."""

    def __init__(self, points: np.ndarray, labels: np.ndarray, radius: np.ndarray):
        from scipy.spatial import cKDTree

        self.labels = labels.astype(np.int32)
        self.radius = radius.astype(np.float64)
        self.bound = float(self.radius.max()) * (1 + 1e-9) if len(points) else 0.0
        self.tree = cKDTree(points) if len(points) else None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        out = np.full(X.shape[0], -1, dtype=np.int32)
        if self.tree is None:
            return out
        for s in range(0, X.shape[0], _CHUNK):
            x = np.asarray(X[s : s + _CHUNK], dtype=np.float64)
            dist, idx = self.tree.query(x, k=1, distance_upper_bound=self.bound)
            hit = np.flatnonzero(np.isfinite(dist))  # misses have dist inf, idx n
            ok = hit[dist[hit] <= self.radius[idx[hit]]]
            out[s + ok] = self.labels[idx[ok]]
        return out


def nearest_centre(meta: dict, arrays: dict, Z: np.ndarray) -> np.ndarray:
    """K-Means: the nearest centre."""
    return assign_accumulate(Z, arrays["centers"], np, with_labels=True)[3]


def nearest_prototype(meta: dict, arrays: dict, Z: np.ndarray) -> np.ndarray:
    """Hierarchical, SOM: the segment of the nearest prototype."""
    near = assign_accumulate(Z, arrays["prototypes"], np, with_labels=True)[3]
    return arrays["prototype_segment"][near].astype(np.int32)


def most_probable(meta: dict, arrays: dict, Z: np.ndarray) -> np.ndarray:
    """Gaussian mixture: the most probable component."""
    from bigseg.segment.gmm import GaussianMixture

    g = GaussianMixture(
        len(arrays["weights"]), covariance_type=meta["covariance_type"], device="cpu"
    )
    g.weights_, g.means_ = arrays["weights"], arrays["means"]
    g.precisions_cholesky_ = arrays["precisions_cholesky"]
    return g.predict(Z).astype(np.int32)


def nearest_core(meta: dict, arrays: dict, Z: np.ndarray) -> np.ndarray:
    """HDBSCAN (or DBSCAN): the nearest core point within its radius, else the unusual
    customers' segment."""
    points = arrays["points"].astype(np.float64)
    lab = _Assigner(points, arrays["point_segment"], arrays["radius"])(Z.astype(np.float64))
    return np.where(lab < 0, meta["noise_segment"], lab).astype(np.int32)


#: ``segmentation.method`` -> how a row finds its segment (the keys of
#: :data:`bigseg.segment.methods.METHODS`, tested)
BY_METHOD = {
    "kmeans": nearest_centre,
    "hierarchical": nearest_prototype,
    "som": nearest_prototype,
    "gmm": most_probable,
    "hdbscan": nearest_core,
}


def assign(meta: dict, arrays: dict[str, np.ndarray], Z: np.ndarray) -> np.ndarray:
    """Segment index (int32) of each row of the scaled matrix ``Z`` (NumPy)."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    if len(Z) == 0:
        return np.zeros(0, np.int32)
    how = BY_METHOD.get(meta["method"])
    if how is None:
        raise ValueError(
            f"unknown segmentation method {meta['method']!r} (known: {', '.join(BY_METHOD)})"
        )
    return how(meta, arrays, Z)
