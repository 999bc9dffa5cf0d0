"""Per-bucket segmentation tasks, run on the Dask workers.

Module-level functions only: Dask pickles them by reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigseg.features import FEATURE_NAMES
from bigseg.features.bucket import BucketFeatures, Cutoff
from bigseg.features.tasks import write_parquet
from bigseg.io import tables
from bigseg.io.storage import local
from bigseg.segment.preprocess import Preprocessor


def moments(res: BucketFeatures, cutoff: Cutoff, features: list[str], log: list[str]) -> tuple:
    return Preprocessor.moments(res.frame(cutoff), features, set(log))


def sample_rows(
    res: BucketFeatures, cutoff: Cutoff, k: int, fraction: float, seed: int
) -> pd.DataFrame:
    df = res.frame(cutoff)
    if fraction >= 1:
        return df[FEATURE_NAMES]
    rng = np.random.default_rng([seed, k])
    return df[FEATURE_NAMES][rng.random(len(df)) < fraction]


def x_block(res: BucketFeatures, cutoff: Cutoff, pre: dict, device: str = "cpu"):
    """The scaled segmentation matrix of one bucket, on the device that will cluster it
    (a CuPy array on GPU workers: it stays resident there for every Lloyd iteration)."""
    from bigseg.backend import resolve

    return Preprocessor.from_dict(pre).transform(res.frame(cutoff), resolve(device).xp)


def migration(scores: pd.DataFrame, old_path: str) -> dict:
    """Counts of (previous segment, new segment) for one bucket; customers not in the
    previous segments count as coming from "new customer"."""
    new = scores[["customer_id", "segment"]]
    if local.exists(old_path):
        old = tables.read_parquet(old_path, columns=["customer_id", "segment"]).to_pandas()
        m = new.merge(old, on="customer_id", how="left", suffixes=("", "_old"))
        prev = (
            m["segment_old"]
            .astype("Int64")
            .astype(object)
            .where(m["segment_old"].notna(), "new customer")
        )
    else:
        m, prev = new, pd.Series(["new customer"] * len(new))
    return (
        pd.Series(1, index=pd.MultiIndex.from_arrays([prev.to_numpy(), m["segment"].to_numpy()]))
        .groupby(level=[0, 1])
        .sum()
        .to_dict()
    )


def write_segments(scores: pd.DataFrame, path: str) -> int:
    cols = [
        "customer_id",
        "segment",
        "segment_name",
        *[c for c in scores.columns if c.startswith("segment_reason_")],
    ]
    return write_parquet(scores[cols], path)
