"""Per-bucket segmentation tasks, run on the Dask workers.

Module-level functions only: Dask pickles them by reference.

The segmentation's per-bucket tasks work on *units* of customers: the buckets of a store
of :data:`GRAIN` buckets or more, else each bucket's eighths by the same hash (bucket
``k`` of 4 holds the customers of buckets ``k`` and ``k + 4`` of 8). Its random
samples, its K-Means initialisation and the order of its sums are per unit, so a store
with fewer buckets (small inputs get 4: :func:`bigseg.store.buckets.auto_buckets`)
finds the same segments as one of 8 on the same data.
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
from bigseg.store.buckets import bucket_of

#: the least number of units the segmentation works on (see the module docstring)
GRAIN = 8


def units(n_buckets: int) -> list[tuple[int, int | None]]:
    """``(bucket, eighth)`` of each unit, in unit order; ``eighth`` None: the whole bucket.
    Only a count that divides :data:`GRAIN` (the automatic counts are powers of two)
    nests in the eighths."""
    if n_buckets >= GRAIN or GRAIN % n_buckets:
        return [(k, None) for k in range(n_buckets)]
    return [(j % n_buckets, j) for j in range(GRAIN)]


def unit_frame(res: BucketFeatures, cutoff: Cutoff, eighth: int | None) -> pd.DataFrame:
    """The customers of one unit in ``res``'s frame at ``cutoff`` (in their order)."""
    df = res.frame(cutoff)
    if eighth is None:
        return df
    return df[bucket_of(df["customer_id"].to_numpy(), GRAIN) == eighth]


def moments(
    res: BucketFeatures, cutoff: Cutoff, features: list[str], log: list[str], eighth=None
) -> tuple:
    return Preprocessor.moments(unit_frame(res, cutoff, eighth), features, set(log))


def sample_rows(
    res: BucketFeatures, cutoff: Cutoff, k: int, fraction: float, seed: int, eighth=None
) -> pd.DataFrame:
    """A random share ``fraction`` of unit ``k``'s rows (its bucket, or ``eighth``)."""
    df = unit_frame(res, cutoff, eighth)
    if fraction >= 1:
        return df[FEATURE_NAMES]
    rng = np.random.default_rng([seed, k])
    return df[FEATURE_NAMES][rng.random(len(df)) < fraction]


def x_block(res: BucketFeatures, cutoff: Cutoff, pre: dict, device: str = "cpu", eighth=None):
    """The scaled segmentation matrix of one unit, on the device that will cluster it
    (a CuPy array on GPU workers: it stays resident there for every Lloyd iteration)."""
    from bigseg.backend import resolve

    df = unit_frame(res, cutoff, eighth)
    return Preprocessor.from_dict(pre).transform(df, resolve(device).xp)


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


def write_segments(scores: pd.DataFrame, path: str) -> tuple[int, dict]:
    cols = [
        "customer_id",
        "segment",
        "segment_name",
        *[c for c in scores.columns if c.startswith("segment_reason_")],
    ]
    return write_parquet(scores[cols], path)
