"""The typed per-bucket feature product that every per-bucket task takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

#: the dates features are computed at: ``score`` is ``as_of``, ``train`` one horizon
#: before it (labels: the horizon up to ``as_of``), ``backtest`` two horizons before it,
#: ``back<n>`` n horizons before it (older windows stacked into training)
Cutoff = Literal["score", "train", "backtest", "back3", "back4", "back5"]
CUTOFFS: tuple[Cutoff, ...] = ("score", "train", "backtest", "back3", "back4", "back5")


@dataclass(frozen=True)
class BucketFeatures:
    """Features of one bucket at each computed cutoff.

    ``frames[cutoff]`` holds ``customer_id``, the features and, at labelled cutoffs, the
    labels; ``excluded`` counts the customers dropped for lack of profiling consent;
    ``cached`` says whether the frames came from the feature cache; ``thinned`` holds,
    per cutoff whose frame keeps only a sample of its customers, the sample's ``rate``
    and the labels' counts ``[customers, positives]`` of all its customers per target.
    """

    frames: Mapping[str, pd.DataFrame]
    excluded: int = 0
    cached: bool = False
    thinned: Mapping[str, Mapping] = field(default_factory=dict)

    @classmethod
    def of(cls, res: Mapping) -> BucketFeatures:
        """From the plain dict of :func:`bigseg.features.bucket_frames` (or the cache)."""
        return cls(
            dict(res["frames"]),
            int(res["excluded"]),
            bool(res.get("cached", False)),
            dict(res.get("thinned", {})),
        )

    def frame(self, cutoff: Cutoff) -> pd.DataFrame:
        return self.frames[cutoff]
