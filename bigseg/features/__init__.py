"""Per-customer features over the bucketed store (one task per bucket, no shuffle)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from bigseg.features.rfm import FEATURE_NAMES, FEATURES, SKEWED, horizon_labels, rfm_features
from bigseg.store import Store

__all__ = ["FEATURES", "FEATURE_NAMES", "SKEWED", "bucket_frames", "to_us"]


def to_us(day) -> int:
    """End of ``day`` (23:59:59.999999) in microseconds since the epoch."""
    d = np.datetime64(str(day), "D") + np.timedelta64(1, "D")
    return int(d.astype("datetime64[us]").astype(np.int64)) - 1


def _non_consenting(store: Store, k: int) -> np.ndarray | None:
    """Ids in bucket ``k`` whose customers row says no profiling consent (null = no)."""
    if not store.has("customers") or "consent_profiling" not in store.schema("customers"):
        return None
    t = store.read_bucket("customers", k, ["customer_id", "consent_profiling"])
    ok = pc.fill_null(t.column("consent_profiling"), False)
    return t.column("customer_id").filter(pc.invert(ok)).to_numpy(zero_copy_only=False)


def bucket_frames(store: Store, k: int, cutoffs: dict[str, int], labelled: tuple[str, ...],
                  horizon_days: int, require_consent: bool) -> dict:
    """Features of bucket ``k`` at each named cutoff, with labels for ``labelled`` ones.

    Returns ``{"frames": {name: DataFrame}, "excluded": n}``: each DataFrame holds
    ``customer_id``, the features and, for labelled cutoffs, ``churn`` (no purchase in the
    horizon) and ``value`` (net spend in the horizon). Customers without profiling
    consent are dropped and counted in ``excluded`` (at the latest cutoff).
    """
    t = store.read_bucket("transactions", k, ["customer_id", "timestamp", "amount"])
    ids = t.column("customer_id").to_numpy(zero_copy_only=False)
    ts = t.column("timestamp").cast("int64").to_numpy()
    amt = t.column("amount").to_numpy(zero_copy_only=False).astype(np.float64)
    refuse = _non_consenting(store, k) if require_consent else None
    frames, excluded = {}, 0
    last = max(cutoffs, key=cutoffs.get) if cutoffs else None
    for name, cut in cutoffs.items():
        f = rfm_features(ids, ts, amt, cut)
        if refuse is not None and len(refuse):
            drop = f["customer_id"].isin(refuse)
            if name == last:
                excluded = int(drop.sum())
            f = f[~drop].reset_index(drop=True)
        if name in labelled:
            lab = horizon_labels(ids, ts, amt, cut, horizon_days)
            f = f.merge(lab, on="customer_id", how="left", sort=False)
            f["churn"] = ~f.pop("bought").fillna(False).astype(bool)
            f["value"] = f.pop("spend").fillna(0.0).astype(np.float64)
        f[FEATURE_NAMES] = f[FEATURE_NAMES].astype(np.float32)
        frames[name] = f
    return {"frames": frames, "excluded": excluded}


def frame_of(result: dict, name: str) -> pd.DataFrame:
    return result["frames"][name]
