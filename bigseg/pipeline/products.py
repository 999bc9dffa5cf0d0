"""The typed, frozen products the stages hand each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bigseg.features.bucket import BucketFeatures, Cutoff
from bigseg.predict.serving import ServingModels
from bigseg.segment.fitted import FittedSegmenter

__all__ = ["BucketFeatures", "Cutoff", "FeatureSet", "FittedSegmenter", "ServingModels"]


@dataclass(frozen=True)
class FeatureSet:
    """Features of every bucket, resident on the workers.

    ``buckets[k]`` is a future of bucket ``k``'s
    :class:`~bigseg.features.bucket.BucketFeatures` (CLV columns included); ``names``
    are the feature columns models may use (protected attributes left out unless
    allowed); ``vocab`` the categorical vocabularies; ``clv`` the BG/NBD and
    Gamma-Gamma fits per cutoff; ``n_score`` the customers at ``as_of``; ``report`` what
    ``metrics.json`` says about them.
    """

    buckets: tuple
    names: tuple[str, ...]
    vocab: Mapping[str, list]
    clv: Mapping[str, dict | None]
    n_score: int
    report: Mapping

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.vocab.get("transactions.category", []))
