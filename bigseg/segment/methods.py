"""The segmentation methods, by ``segmentation.method`` name: :data:`METHODS`.

Every method reduces to arrays a worker can apply to one bucket's scaled matrix ``Z``
(stored in ``segmenter.npz`` beside ``centres``, see :meth:`Segmenter.export`):

===============  ============================================================
kmeans           ``centers``: nearest centre
hierarchical     ``prototypes`` (micro-centroids) + ``prototype_segment``
som              ``prototypes`` (unit weights) + ``prototype_segment``
gmm              ``weights``, ``means``, ``precisions_cholesky``: most probable
                 component
hdbscan          ``points`` (core sample points), ``point_segment``, ``radius``:
                 nearest core point within its radius, else the "Unusual
                 customers" segment (index ``n_segments - 1``)
===============  ============================================================

These names and array keys are the model-file format: a model written earlier loads by
them, so they do not change.
"""

from __future__ import annotations

import numpy as np

from bigseg.segment.base import Segmenter
from bigseg.segment.density import HDBSCAN
from bigseg.segment.gmm import GaussianMixture
from bigseg.segment.hierarchical import Hierarchical
from bigseg.segment.kmeans import KMeans
from bigseg.segment.som import SOM


class KMeansSegmenter(Segmenter):
    """:class:`~bigseg.segment.KMeans`; warm-starts from a previous K-Means model's
    centres, and merges small segments by restarting Lloyd from the other centres."""

    name = "kmeans"

    def __init__(
        self,
        n_segments: int = 8,
        *,
        init="k-means++",
        n_init: int = 3,
        max_iter: int = 100,
        tol: float = 1e-4,
        random_state: int = 0,
        device="auto",
    ):
        super().__init__(n_segments, random_state=random_state, device=device)
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol

    @classmethod
    def from_config(cls, k, cfg, seed, device):
        return cls(
            k,
            n_init=cfg.n_init,
            max_iter=cfg.max_iter,
            tol=cfg.tol,
            random_state=seed,
            device=device,
        )

    def _estimator(self):
        return KMeans(
            self.n_segments,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            device=self.device,
        )

    def warm_start(self, previous_meta, centers_z, X):
        # the same data give the same segments, a little more data moves them a little
        # (stable segments, few migrations); kept only when it fits about as well
        if previous_meta.get("method") != self.name or len(centers_z) != self.n_segments:
            return self
        warm = self._with(init=centers_z).fit(X)
        return warm if warm.estimator_.inertia_ <= self.estimator_.inertia_ * 1.01 else self

    def without(self, small, X):
        # the customers of the small segments join the nearest remaining centre
        keep = np.delete(self.estimator_.cluster_centers_, small, axis=0)
        return self._with(n_segments=len(keep), init=keep).fit(X)

    def _export(self, est):
        return {}, {"centers": est.cluster_centers_}, est.cluster_centers_


class GMMSegmenter(Segmenter):
    """:class:`~bigseg.segment.GaussianMixture`; a row's segment is its most probable
    component."""

    name = "gmm"

    def __init__(
        self,
        n_segments: int = 8,
        *,
        covariance_type: str = "full",
        random_state: int = 0,
        device="auto",
    ):
        super().__init__(n_segments, random_state=random_state, device=device)
        self.covariance_type = covariance_type

    def _estimator(self):
        return GaussianMixture(
            self.n_segments,
            covariance_type=self.covariance_type,
            random_state=self.random_state,
            device=self.device,
        )

    def k_scores(self, X):
        return {"bic": float(self.estimator_.bic(X))}

    def _export(self, est):
        arrays = {
            "weights": est.weights_,
            "means": est.means_,
            "precisions_cholesky": est.precisions_cholesky_,
        }
        return {"covariance_type": est.covariance_type}, arrays, est.means_


class _PrototypeSegmenter(Segmenter):
    """A method whose segments are unions of prototypes: a row takes the segment of its
    nearest prototype."""


class HierarchicalSegmenter(_PrototypeSegmenter):
    """:class:`~bigseg.segment.Hierarchical`: micro-centroids grouped by Ward linkage;
    the dendrogram goes to the report."""

    name = "hierarchical"

    def _estimator(self):
        return Hierarchical(self.n_segments, random_state=self.random_state, device=self.device)

    def fit_metrics(self):
        return {
            **super().fit_metrics(),
            "dendrogram": self.estimator_.dendrogram_data(),
            "dendrogram_svg": self.estimator_.dendrogram_svg(),
        }

    def _export(self, est):
        arrays = {
            "prototypes": est.micro_centers_,
            "prototype_segment": np.asarray(est.micro_labels_, np.int32),
        }
        return {}, arrays, est.cluster_centers_


class SOMSegmenter(_PrototypeSegmenter):
    """:class:`~bigseg.segment.SOM` on a ``rows x cols`` grid, units grouped by Ward."""

    name = "som"

    def __init__(
        self,
        n_segments: int = 8,
        *,
        rows: int = 6,
        cols: int = 6,
        random_state: int = 0,
        device="auto",
    ):
        super().__init__(n_segments, random_state=random_state, device=device)
        self.rows = rows
        self.cols = cols

    def _estimator(self):
        return SOM(
            self.rows,
            self.cols,
            n_segments=self.n_segments,
            random_state=self.random_state,
            device=self.device,
        )

    def _export(self, est):
        arrays = {
            "prototypes": est.weights_,
            "prototype_segment": np.asarray(est.unit_labels_, np.int32),
        }
        return {}, arrays, est.cluster_centers_


class HDBSCANSegmenter(Segmenter):
    """:class:`~bigseg.segment.HDBSCAN` on a sample. It finds the number of segments
    itself; the rows near no core point form one more segment, "Unusual customers"
    (``meta["noise_segment"]``, the last). Small segments are not merged: the noise
    segment is suppressed in reports instead."""

    name = "hdbscan"
    finds_k = "density clusters of a sample (no k)"
    merges_small = False

    def __init__(self, *, random_state: int = 0, device="auto"):
        self.random_state = random_state
        self.device = device

    @classmethod
    def from_config(cls, k, cfg, seed, device):
        return cls(random_state=seed, device=device)

    def _estimator(self):
        return HDBSCAN(random_state=self.random_state, device=self.device)

    def _segments(self, labels):
        return np.where(labels < 0, self.estimator_.n_clusters_, labels).astype(np.int32)

    def without(self, small, X):
        # merges_small is False: the pipeline never asks; a caller that does is a bug
        raise TypeError("hdbscan does not merge small segments (merges_small is False)")

    def _export(self, est):
        S = est.sample_.astype(np.float64)
        core = est.core_sample_indices_
        arrays = {
            "points": S[core].astype(np.float32),
            "point_segment": est.sample_labels_[core].astype(np.int32),
            "radius": est.core_radius_.astype(np.float64),
        }
        noise = S[est.sample_labels_ < 0]
        noise_center = noise.mean(0) if len(noise) else np.zeros(S.shape[1])
        centers = np.vstack([est.cluster_centers_, noise_center[None, :]])
        return {"noise_segment": int(len(est.cluster_centers_))}, arrays, centers


#: ``segmentation.method`` -> its :class:`Segmenter`; the config accepts these names and
#: a model file's ``method`` picks its class on load
METHODS: dict[str, type[Segmenter]] = {
    cls.name: cls
    for cls in (
        KMeansSegmenter,
        GMMSegmenter,
        HierarchicalSegmenter,
        HDBSCANSegmenter,
        SOMSegmenter,
    )
}
