"""What the pipeline asks of a segmentation method, and the one fitted-check.

A :class:`Segmenter` wraps one estimator of :mod:`bigseg.segment` (``estimator_``) with
the pipeline's side of a method: building it from ``segmentation`` in the run config,
exporting the fit as the arrays a model file stores (rows are assigned from those by
:mod:`bigseg.segment.assign`, without the estimator), warm-starting from a previous model
and merging segments that are too small. The estimators stay plain scikit-learn
estimators; the methods and their file formats are in :mod:`bigseg.segment.methods`.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted

#: fitted attributes reported in ``metrics.json`` (without the trailing underscore) when
#: the estimator has them
FIT_METRICS = (
    "inertia_",
    "n_iter_",
    "noise_share_",
    "lower_bound_",
    "quantization_error_",
    "topographic_error_",
)


def check_fitted(est, attribute: str) -> None:
    """Raise scikit-learn's ``NotFittedError`` (a ``ValueError``) unless ``est`` has
    ``attribute``, the one attribute its ``fit`` always sets."""
    check_is_fitted(est, attribute, msg="this %(name)s is not fitted yet; call fit first")


class Segmenter(ClusterMixin, BaseEstimator, metaclass=ABCMeta):
    """One segmentation method. Subclasses set :attr:`name` and implement
    :meth:`_estimator` and :meth:`_export`, and :data:`bigseg.segment.assign.BY_METHOD`
    names how a row finds its segment from the export.

    Segments are numbered ``0..n_segments-1``; ``predict`` and that assignment give the
    same numbers (a method with a noise label maps it to its own last segment)."""

    #: ``segmentation.method``; model files store it as ``method`` and load by it
    name: ClassVar[str]
    #: the ``k_rule`` of a method that finds the number of segments itself; None: every
    #: candidate k is fitted and scored (:mod:`bigseg.segment.choose_k`)
    finds_k: ClassVar[str | None] = None
    #: whether segments below ``privacy.min_segment_size`` are merged (:meth:`without`)
    merges_small: ClassVar[bool] = True

    def __init__(self, n_segments: int = 8, *, random_state: int = 0, device="auto"):
        self.n_segments = n_segments
        self.random_state = random_state
        self.device = device

    @classmethod
    def from_config(cls, k: int, cfg, seed: int, device) -> Segmenter:
        """The method with ``k`` segments, options from ``cfg`` (``segmentation``)."""
        return cls(k, random_state=seed, device=device)

    @abstractmethod
    def _estimator(self):
        """A fresh, unfitted estimator for these parameters."""

    def _with(self, **params) -> Segmenter:
        """An unfitted copy with ``params`` changed; the device object is shared, not
        copied as ``sklearn.base.clone`` would."""
        return type(self)(**{**self.get_params(deep=False), **params})

    # -- fitting --------------------------------------------------------------------
    def fit(self, X, y=None) -> Segmenter:
        self.estimator_ = self._estimator().fit(X)
        labels = getattr(self.estimator_, "labels_", None)  # in-memory input only
        if labels is not None:
            self.labels_ = self._segments(labels)
        return self

    def predict(self, X) -> np.ndarray:
        check_fitted(self, "estimator_")
        return self._segments(self.estimator_.predict(X))

    def fit_predict(self, X, y=None) -> np.ndarray:
        self.fit(X)
        return self.labels_ if hasattr(self, "labels_") else self.predict(X)

    def _segments(self, labels: np.ndarray) -> np.ndarray:
        """Segment numbers from the estimator's labels."""
        return labels

    def warm_start(self, previous_meta: dict, centers_z: np.ndarray, X) -> Segmenter:
        """This fit, or a fit on ``X`` started from a previous model (its ``meta`` and
        its segment centres in this run's scaled space) where the method can start from
        one and that fit is as good. Here: this fit."""
        return self

    def without(self, small: np.ndarray, X) -> Segmenter:
        """A fit on ``X`` with the segments ``small`` merged away: here a refit with
        ``len(small)`` fewer segments."""
        return self._with(n_segments=self.n_segments - len(small)).fit(X)

    # -- what the pipeline reports --------------------------------------------------
    def fit_metrics(self) -> dict:
        """Diagnostics of the fit for ``metrics.json``."""
        check_fitted(self, "estimator_")
        est = self.estimator_
        return {a.rstrip("_"): float(getattr(est, a)) for a in FIT_METRICS if hasattr(est, a)}

    def k_scores(self, X) -> dict[str, float]:
        """Scores of this candidate k beside those of :mod:`bigseg.segment.choose_k`
        (reported, not used by its rule)."""
        return {}

    # -- the model file -------------------------------------------------------------
    def export(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(metadata, arrays): what the model file stores and assignment needs.

        ``meta`` holds ``method`` and ``n_segments``; ``arrays`` always hold ``centres``
        (one row per segment in the scaled space, float32: naming, matching re-runs,
        reasons), beside the method's own arrays."""
        check_fitted(self, "estimator_")
        extra, arrays, centers = self._export(self.estimator_)
        meta = {"method": self.name, **extra, "n_segments": int(len(centers))}
        arrays = {**arrays, "centres": np.asarray(centers, dtype=np.float32)}
        return meta, {k: np.asarray(v) for k, v in arrays.items()}

    @abstractmethod
    def _export(self, est) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
        """(extra metadata, the method's arrays, segment centres) of a fitted estimator."""
