"""The facts a segment's name is checked against (:mod:`bigseg.segment.naming`).

Per bucket, with no shuffle: a sample of the customers at ``as_of`` (the ``score``
cutoff), assigned to their segment on the worker, with the few columns the facts need
and, for the customers already known one horizon earlier (the ``train`` cutoff), whether
they churned since (their label). The client concatenates the samples and takes the
medians and shares per segment, as the stage already does for its other sample
statistics. Medians are not additive across buckets, hence a sample rather than sums;
:data:`NAMING_ROWS` keeps it small enough to gather and large enough for small segments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigseg.features.bucket import BucketFeatures
from bigseg.segment.fitted import FittedSegmenter
from bigseg.segment.tasks import unit_frame

#: customers sampled over all buckets to measure the facts
NAMING_ROWS = 200_000


def fact_rows(
    res: BucketFeatures, seg: FittedSegmenter, k: int, fraction: float, seed: int, eighth=None
) -> pd.DataFrame:
    """The sample of one unit ``k`` (:mod:`bigseg.segment.tasks`: a bucket, or its
    ``eighth``): ``segment`` (position, not id), ``tenure_days``, ``recency_days``,
    ``frequency``, ``spend_per_year`` and ``churn`` (1.0/0.0 for the
    customers of the train cutoff's frame, NaN for the others or without that cutoff:
    beyond ``max_backtest_rows`` customers that frame holds a stable sample of them)."""
    df = unit_frame(res, "score", eighth)
    if fraction < 1:
        df = df[np.random.default_rng([seed, k, 1]).random(len(df)) < fraction]
    out = pd.DataFrame(
        {
            "segment": seg.assign(df)[1] if len(df) else np.zeros(0, np.int64),
            "tenure_days": df["tenure_days"].to_numpy(np.float64),
            "recency_days": df["recency_days"].to_numpy(np.float64),
            "frequency": df["frequency"].to_numpy(np.float64),
            "spend_per_year": (df["purchase_rate"] * df["monetary_mean"]).to_numpy(np.float64),
        }
    )
    churn = np.full(len(df), np.nan)
    train = res.frames.get("train")
    if train is not None and "churn" in train.columns:
        lab = df[["customer_id"]].merge(train[["customer_id", "churn"]], how="left", sort=False)
        churn = lab["churn"].astype("float64").to_numpy()
    out["churn"] = churn
    return out


def _median(s: pd.Series) -> float | None:
    return float(s.median()) if len(s.dropna()) else None


def _share(s: pd.Series) -> float | None:
    s = s.dropna()
    return float(s.mean()) if len(s) else None


def segment_facts(rows: pd.DataFrame, k: int, horizon_days: int) -> list[dict]:
    """The facts of each of ``k`` segments (in fitted order) from the gathered samples:
    medians of tenure, recency and spend per year, the share of one-time buyers, the
    observed churn, and the population's churn and median spend to compare with.
    A fact with no customer to measure it on is None."""
    pop = {
        "horizon_days": int(horizon_days),
        "population_observed_churn": _share(rows["churn"]),
        "population_median_spend_per_year": _median(rows["spend_per_year"]),
    }
    out = []
    for i in range(k):
        r = rows[rows["segment"] == i]
        out.append(
            {
                "customers_sampled": len(r),
                "median_tenure_days": _median(r["tenure_days"]),
                "median_recency_days": _median(r["recency_days"]),
                "one_time_share": _share((r["frequency"] <= 1).astype(float)),
                "median_spend_per_year": _median(r["spend_per_year"]),
                "observed_churn": _share(r["churn"]),
                "labelled_customers_sampled": int(r["churn"].notna().sum()),
                **pop,
            }
        )
    return out
