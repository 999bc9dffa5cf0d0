"""RFM features and forward-in-time labels, computed per bucket with no shuffle.

A bucket's transactions arrive sorted by customer id (then time), so per-customer
aggregates are segment reductions over contiguous runs: ``np.add.reduceat`` and
friends, at NumPy speed. Only rows at or before the cutoff feed the features; the labels
look at ``(cutoff, cutoff + horizon]`` only.

Conventions: a row with a positive amount is a purchase, a negative amount a return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

#: feature name -> description (the report and the docs print these)
FEATURES: dict[str, str] = {
    "recency_days": "days since the last purchase",
    "frequency": "number of purchases",
    "monetary_total": "net spend (purchases minus returns)",
    "monetary_mean": "mean purchase value",
    "monetary_max": "largest purchase",
    "tenure_days": "days since the first purchase",
    "interpurchase_days": "mean days between purchases",
    "returns_rate": "returns per purchase",
    "count_90d": "purchases in the last 90 days",
    "spend_90d": "spend in the last 90 days",
    "count_trend": "log ratio of purchases, last 90 days vs the 90 before",
    "spend_trend": "log ratio of spend, last 90 days vs the 90 before",
}
FEATURE_NAMES = list(FEATURES)

#: non-negative, right-skewed features that get a log1p before scaling
SKEWED = {
    "recency_days", "frequency", "monetary_total", "monetary_mean", "monetary_max",
    "tenure_days", "interpurchase_days", "count_90d", "spend_90d",
}

_DAY_US = 86_400 * 1_000_000


def _runs(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths of each customer's run (codes sorted ascending)."""
    counts = np.bincount(codes, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return starts, counts


def rfm_features(ids, ts_us: np.ndarray, amount: np.ndarray, cutoff_us: int) -> pd.DataFrame:
    """Features at ``cutoff_us`` for transactions sorted by customer id.

    Parameters
    ----------
    ids : array-like
        Customer ids, sorted ascending (int64 or string).
    ts_us : ndarray of int64
        Timestamps in microseconds since the epoch.
    amount : ndarray of float64
        Positive for purchases, negative for returns.
    cutoff_us : int
        Only rows with ``ts_us <= cutoff_us`` are used.

    Returns
    -------
    DataFrame with ``customer_id`` and one column per name in :data:`FEATURE_NAMES`, one
    row per customer with at least one purchase at or before the cutoff.

    Examples
    --------
    >>> import numpy as np
    >>> day = 86_400 * 10**6
    >>> f = rfm_features(np.array([1, 1, 2]), np.array([0, 10 * day, 5 * day]),
    ...                  np.array([10.0, 30.0, 5.0]), 20 * day)
    >>> f["frequency"].tolist(), f["recency_days"].tolist()
    ([2.0, 1.0], [10.0, 15.0])
    """
    keep = ts_us <= cutoff_us
    ids = np.asarray(ids)[keep] if not isinstance(ids, pa.Array) else ids.filter(pa.array(keep))
    ts = ts_us[keep]
    amt = amount[keep]
    buy = amt > 0
    # population: customers with a purchase at or before the cutoff
    codes, uniq = pd.factorize(np.asarray(ids), sort=False)
    n = len(uniq)
    if n == 0:
        return pd.DataFrame({"customer_id": uniq, **{f: np.zeros(0) for f in FEATURE_NAMES}})
    cnt = np.bincount(codes, weights=buy, minlength=n)
    net = np.bincount(codes, weights=amt, minlength=n)
    gross = np.bincount(codes, weights=np.where(buy, amt, 0.0), minlength=n)
    n_ret = np.bincount(codes, weights=~buy, minlength=n)
    ts_buy = np.where(buy, ts, np.iinfo(np.int64).min)
    starts, lengths = _runs(codes, n)
    last = np.maximum.reduceat(ts_buy, starts) if len(ts) else np.zeros(0, np.int64)
    first = np.minimum.reduceat(np.where(buy, ts, np.iinfo(np.int64).max), starts)
    amax = np.maximum.reduceat(np.where(buy, amt, 0.0), starts)
    w90 = cutoff_us - 90 * _DAY_US
    w180 = cutoff_us - 180 * _DAY_US
    recent = buy & (ts > w90)
    prev = buy & (ts > w180) & (ts <= w90)
    c90 = np.bincount(codes, weights=recent, minlength=n)
    s90 = np.bincount(codes, weights=np.where(recent, amt, 0.0), minlength=n)
    cprev = np.bincount(codes, weights=prev, minlength=n)
    sprev = np.bincount(codes, weights=np.where(prev, amt, 0.0), minlength=n)
    has = cnt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tenure = (cutoff_us - first) / _DAY_US
        out = pd.DataFrame(
            {
                "customer_id": uniq,
                "recency_days": (cutoff_us - last) / _DAY_US,
                "frequency": cnt,
                "monetary_total": net,
                "monetary_mean": gross / np.maximum(cnt, 1),
                "monetary_max": amax,
                "tenure_days": tenure,
                "interpurchase_days": np.where(
                    cnt > 1, (last - first) / _DAY_US / np.maximum(cnt - 1, 1), tenure
                ),
                "returns_rate": n_ret / np.maximum(cnt, 1),
                "count_90d": c90,
                "spend_90d": s90,
                "count_trend": np.log1p(c90) - np.log1p(cprev),
                "spend_trend": np.log1p(np.maximum(s90, 0)) - np.log1p(np.maximum(sprev, 0)),
            }
        )
    return out[has].reset_index(drop=True)


def horizon_labels(ids, ts_us: np.ndarray, amount: np.ndarray, cutoff_us: int,
                   horizon_days: int) -> pd.DataFrame:
    """Labels in ``(cutoff, cutoff + horizon]``: ``bought`` (any purchase) and
    ``spend`` (net amount), for every customer with a row in that window."""
    end = cutoff_us + horizon_days * _DAY_US
    w = (ts_us > cutoff_us) & (ts_us <= end)
    wids = np.asarray(ids)[w]
    codes, uniq = pd.factorize(wids, sort=False)
    n = len(uniq)
    buys = np.bincount(codes, weights=amount[w] > 0, minlength=n)
    spend = np.bincount(codes, weights=amount[w], minlength=n)
    return pd.DataFrame({"customer_id": uniq, "bought": buys > 0, "spend": spend})
