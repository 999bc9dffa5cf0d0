"""The typed, frozen products the stages hand each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    ``metrics.json`` says about them; ``rates`` the share of the customers a cutoff's
    frames hold, where below 1 (:func:`bigseg.pipeline.sampling.thin_rates`).
    """

    buckets: tuple
    names: tuple[str, ...]
    vocab: Mapping[str, list]
    clv: Mapping[str, dict | None]
    n_score: int
    report: Mapping
    rates: Mapping[str, float] = field(default_factory=dict)

    def rate(self, cutoff: str) -> float:
        """The share of ``cutoff``'s customers its frames hold."""
        return self.rates.get(cutoff, 1.0)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.vocab.get("transactions.category", []))
