"""The use of fitted centres (predict, transform, score) that
:class:`bigseg.segment.kmeans.KMeans` and :class:`bigseg.segment.minibatch.MiniBatchKMeans`
share, on the Lloyd pass of :mod:`bigseg.segment.lloyd`."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from bigseg.backend import resolve
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import as_blocks
from bigseg.segment.lloyd import _block_distances, _block_labels, _block_stats


class _CentersModel(ClusterMixin, BaseEstimator):
    """Use of fitted ``cluster_centers_``: nearest centre, distances, score."""

    def predict(self, X):
        """Nearest centre of each row, as NumPy labels (Dask input is gathered)."""
        check_fitted(self, "cluster_centers_")
        blocks, kind = as_blocks(X)
        labs = blocks.map(_block_labels, self.cluster_centers_, resolve(self.device).name)
        return np.concatenate(labs) if labs else np.zeros(0, np.int32)

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    def transform(self, X) -> np.ndarray:
        """Distances of each row to every centre."""
        check_fitted(self, "cluster_centers_")
        blocks, _ = as_blocks(X)
        return np.concatenate(
            blocks.map(_block_distances, self.cluster_centers_, resolve(self.device).name)
        )

    def score(self, X, y=None) -> float:
        """Opposite of the inertia of ``X`` (scikit-learn convention)."""
        check_fitted(self, "cluster_centers_")
        blocks, _ = as_blocks(X)
        stats = blocks.map(_block_stats, self.cluster_centers_, resolve(self.device).name)
        return -float(sum(s[2] for s in stats))
