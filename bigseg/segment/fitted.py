"""A fitted segmentation as the pipeline hands it on: plain arrays, no estimator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bigseg.segment import serialize
from bigseg.segment.preprocess import Preprocessor


@dataclass(frozen=True)
class FittedSegmenter:
    """Everything needed to assign a customer to a segment and to name it.

    ``pre`` is the :class:`~bigseg.segment.preprocess.Preprocessor` as a dict, ``meta``
    and ``arrays`` the method's export (:meth:`bigseg.segment.base.Segmenter.export`),
    ``names`` and ``ids`` the name and stable id of each segment in fitted order.
    ``source`` is the published model version it was loaded from (None when fitted in
    this run).
    """

    pre: dict
    meta: dict
    arrays: dict
    names: tuple[str, ...]
    ids: tuple[int, ...]
    source: Path | None = None

    #: the files of a model version that hold a segmenter
    FILES = ("preprocess.json", "segmenter.json", "segmenter.npz")

    def preprocessor(self) -> Preprocessor:
        return Preprocessor.from_dict(self.pre)

    def assign(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The scaled matrix of ``df`` and each row's segment position (not its id)."""
        Z = self.preprocessor().transform(df)
        return Z, serialize.assign(self.meta, self.arrays, Z)

    def segment_ids(self, df: pd.DataFrame) -> np.ndarray:
        """The stable segment id of every row of a feature frame."""
        if len(df) == 0:
            return np.zeros(0, np.int32)
        return np.asarray(self.ids, dtype=np.int32)[self.assign(df)[1]]

    def without_names(self) -> FittedSegmenter:
        """The same segmenter without names (what tasks that only assign need)."""
        return FittedSegmenter(self.pre, self.meta, self.arrays, (), self.ids)
