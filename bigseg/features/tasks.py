"""Per-bucket tasks over the store and the feature frames, run on the Dask workers.

Module-level functions only: Dask pickles them by reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigseg.features import feature_columns
from bigseg.features.bucket import BucketFeatures, Cutoff
from bigseg.io import tables
from bigseg.store import Store


def max_timestamp(store: Store, k: int) -> int | None:
    t = store.read_bucket("transactions", k, ["timestamp"])
    if t.num_rows == 0:
        return None
    return int(t.column("timestamp").cast("int64").to_numpy().max())


def excluded(res: BucketFeatures) -> int:
    return res.excluded


def cached(res: BucketFeatures) -> bool:
    return res.cached


def n_rows(res: BucketFeatures, cutoff: Cutoff) -> int:
    return len(res.frame(cutoff))


def columns(res: BucketFeatures, cutoff: Cutoff) -> list[str]:
    return feature_columns(res.frame(cutoff))


def matrix(df: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The model matrix: ``features`` in order (a column a bucket lacks is NaN)."""
    return df.reindex(columns=features).to_numpy(np.float32)


def write_parquet(df: pd.DataFrame, path: str) -> tuple[int, dict]:
    """``df`` as a zstd Parquet part in a publication's staging dir; returns its rows
    and ``{path: {"size", "sha256"}}`` of the file (for
    :meth:`~bigseg.io.output.Output.put`). No mkdir: a task cancelled after a failure
    must not re-create a staging dir that was cleaned up. An empty bucket writes no
    file: its text columns would be typed ``null`` and break readers of the whole
    dataset (``pd.read_parquet(dir)``)."""
    if len(df) == 0:
        return 0, {}
    t = tables.text_for_null(tables.from_pandas(df))
    return len(df), {str(path): tables.write_parquet(path, t, digest=True, compression="zstd")}


def write_features(
    res: BucketFeatures, cutoff: Cutoff, path: str, features: list[str]
) -> tuple[int, dict]:
    return write_parquet(res.frame(cutoff).reindex(columns=["customer_id", *features]), path)


def n_labelled(res: BucketFeatures, cutoff: Cutoff, target: str) -> int:
    """Rows at ``cutoff`` with a finite ``target`` label."""
    df = res.frame(cutoff)
    return int(np.isfinite(df[target].to_numpy(np.float64)).sum()) if target in df else 0


def known_customers(
    store: Store, k: int, cutoffs: dict[str, int], require_consent: bool
) -> dict[str, int]:
    """Customers of bucket ``k`` with a purchase on or before each cutoff (without
    those who refused profiling, when consent is required): the rows each cutoff's
    feature frame will hold, counted before any is computed, so the frames of the
    oldest cutoffs can hold only the customers training will draw
    (:func:`bigseg.pipeline.sampling.thin_rates`)."""
    from bigseg.features import _non_consenting

    t = store.read_bucket("transactions", k, ["customer_id", "timestamp"])
    if t.num_rows == 0:
        return dict.fromkeys(cutoffs, 0)
    ids, first = _first_times(t)
    refuse = _non_consenting(store, k) if require_consent else None
    if refuse is not None and len(refuse):
        first = first[~np.isin(ids, refuse)]
    return {c: int((first <= cut).sum()) for c, cut in cutoffs.items()}


def _first_times(t):
    """Each customer's id and first timestamp (int64): one reduction over the customers'
    runs where the ids are sorted (as the store writes a bucket), else a hash
    aggregation."""
    from bigseg.features.fused import _plain_numpy, _sorted_runs

    runs = _sorted_runs(t)
    ts = _plain_numpy(t, "timestamp", np.int64) if runs is not None else None
    if ts is not None:
        return runs[0], np.minimum.reduceat(ts, runs[1])
    g = t.group_by("customer_id").aggregate([("timestamp", "min")])
    ids = g.column("customer_id").to_numpy(zero_copy_only=False)
    return ids, g.column("timestamp_min").cast("int64").to_numpy()


def label_counts(res: BucketFeatures, cutoff: Cutoff, target: str) -> tuple[int, int]:
    """(rows at ``cutoff`` with a finite ``target`` label, rows whose label is > 0:
    churners for ``churn``, buyers in the label window for ``value``), of every
    customer at the cutoff (also where the frame holds only a sample)."""
    if cutoff in res.thinned:
        n, pos = res.thinned[cutoff].get(target, (0, 0))
        return int(n), int(pos)
    df = res.frame(cutoff)
    if target not in df:
        return 0, 0
    y = df[target].to_numpy(np.float64)
    ok = np.isfinite(y)
    return int(ok.sum()), int((y[ok] > 0).sum())


def label_counts_at(res: BucketFeatures, pairs: list[tuple[Cutoff, str]]) -> list[tuple[int, int]]:
    """:func:`label_counts` of each ``(cutoff, target)`` of ``pairs``: one task per
    bucket for every count the train stage starts from."""
    return [label_counts(res, c, t) for c, t in pairs]


def sample_frame(
    res: BucketFeatures, cutoff: Cutoff, k: int, fraction: float, seed: int, columns: list[str]
) -> pd.DataFrame:
    """About ``fraction`` of the rows at ``cutoff`` (reproducible per bucket), only
    ``columns`` (missing ones NaN)."""
    df = res.frame(cutoff).reindex(columns=columns)
    if fraction >= 1:
        return df
    rng = np.random.default_rng([seed, k, 17])
    return df[rng.random(len(df)) < fraction]


def protected_attributes(
    store: Store, k: int, ids: np.ndarray, protected: list[str]
) -> dict[str, np.ndarray]:
    """The protected attributes of the customers ``ids`` of bucket ``k``, row-aligned
    with them (for the fairness audit only; never model inputs)."""
    out = {a: np.full(len(ids), None, dtype=object) for a in protected}
    cols = [a for a in protected if store.has("customers") and a in store.schema("customers")]
    if not cols:
        return out
    cust = store.read_bucket("customers", k, ["customer_id", *cols]).to_pandas()
    cust = cust.drop_duplicates("customer_id", keep="last").set_index("customer_id")
    pos = cust.index.get_indexer(ids)
    for a in protected:
        if a in cust.columns:
            v = cust[a].to_numpy(dtype=object)
            out[a] = np.where(pos >= 0, v[np.maximum(pos, 0)], None)
    return out
