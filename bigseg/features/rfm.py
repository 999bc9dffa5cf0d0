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

#: feature name -> description (the report and the docs print these)
FEATURES: dict[str, str] = {
    "recency_days": "days since the last purchase",
    "frequency": "number of purchases",
    "purchase_days": "days with a purchase (BG/NBD's repeat-purchase occasions, plus one)",
    "monetary_total": "net spend (purchases minus returns)",
    "monetary_mean": "mean purchase value",
    "monetary_max": "largest purchase",
    "tenure_days": "days since the first purchase",
    "purchase_rate": "purchases per year since the first purchase (tenure + 30 days)",
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
    "recency_days",
    "frequency",
    "purchase_days",
    "monetary_total",
    "monetary_mean",
    "monetary_max",
    "tenure_days",
    "purchase_rate",
    "interpurchase_days",
    "count_90d",
    "spend_90d",
}
#: days added to the tenure in ``purchase_rate`` so one recent purchase is not a huge rate
RATE_PRIOR_DAYS = 30.0

#: microseconds in a day (every feature module's times are int64 microseconds)
DAY_US = 86_400 * 1_000_000


def days_since(cutoff_us: int, t_us: np.ndarray) -> np.ndarray:
    """Days from ``t_us`` to ``cutoff_us`` (microseconds since the epoch): every "days
    since" feature (recency, tenure, last activity, last response, last negative review)
    is this one formula.
    ``t_us`` is used as given (int64 or float64), so the arithmetic is the caller's."""
    return (cutoff_us - t_us) / DAY_US


def rfm_columns(
    cutoff_us: int,
    *,
    count: np.ndarray,
    days: np.ndarray,
    net: np.ndarray,
    gross: np.ndarray,
    returns: np.ndarray,
    last: np.ndarray,
    first: np.ndarray,
    largest: np.ndarray,
    count_90d: np.ndarray,
    spend_90d: np.ndarray,
    count_prev: np.ndarray,
    spend_prev: np.ndarray,
) -> dict[str, np.ndarray]:
    """The :data:`FEATURE_NAMES` columns, in order, from each customer's aggregates of the
    rows at or before ``cutoff_us``: purchases, net amount, purchase amount, returns,
    last and first purchase time (int64 us), largest purchase, and the purchases and
    purchase amount in the last 90 days and in the 90 days before, and the distinct
    (UTC) days with a purchase. The one definition of
    the RFM formulas: :func:`rfm_features` and the compiled pass
    (:func:`bigseg.features.fused.transaction_features`) gather the aggregates their own
    way and both derive the features here."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tenure = days_since(cutoff_us, first)
        return {
            "recency_days": days_since(cutoff_us, last),
            "frequency": count,
            "purchase_days": days,
            "monetary_total": net,
            "monetary_mean": gross / np.maximum(count, 1),
            "monetary_max": largest,
            "tenure_days": tenure,
            "purchase_rate": count / (tenure + RATE_PRIOR_DAYS) * 365.25,
            "interpurchase_days": np.where(
                count > 1, (last - first) / DAY_US / np.maximum(count - 1, 1), tenure
            ),
            "returns_rate": returns / np.maximum(count, 1),
            "count_90d": count_90d,
            "spend_90d": spend_90d,
            "count_trend": np.log1p(count_90d) - np.log1p(count_prev),
            "spend_trend": np.log1p(np.maximum(spend_90d, 0)) - np.log1p(np.maximum(spend_prev, 0)),
        }


def _runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique ids, start offset of each id's run, order) for rows grouped by id.

    The store keeps rows sorted by customer id, so runs are found by comparing neighbours
    (20x cheaper than hashing every id); unsorted input is first put in a stable order.
    ``order`` is None when the input was already grouped, else the permutation applied.
    """
    n = len(ids)
    if n == 0:
        return ids[:0], np.zeros(0, np.int64), None
    order = None
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(ids[1:], ids[:-1], out=change[1:])
    if n > 1 and not bool(np.all(ids[1:] >= ids[:-1])):
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        np.not_equal(ids[1:], ids[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    return ids[starts], starts, order


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
    ids = np.asarray(ids)
    if len(ts_us) and ts_us.max() > cutoff_us:  # most calls at the latest cutoff keep all
        keep = ts_us <= cutoff_us
        ids, ts_us, amount = ids[keep], ts_us[keep], amount[keep]
    uniq, starts, order = _runs(ids)
    ts, amt = (ts_us, amount) if order is None else (ts_us[order], amount[order])
    n = len(uniq)
    if n == 0:
        return pd.DataFrame({"customer_id": uniq, **{f: np.zeros(0) for f in FEATURE_NAMES}})

    def per(values) -> np.ndarray:  # sum of each customer's run
        return np.add.reduceat(np.asarray(values, dtype=np.float64), starts)

    buy = amt > 0
    cnt = per(buy)
    net = per(amt)
    gross = per(np.where(buy, amt, 0.0))
    n_ret = per(~buy)
    last = np.maximum.reduceat(np.where(buy, ts, np.iinfo(np.int64).min), starts)
    first = np.minimum.reduceat(np.where(buy, ts, np.iinfo(np.int64).max), starts)
    amax = np.maximum.reduceat(np.where(buy, amt, 0.0), starts)
    w90 = cutoff_us - 90 * DAY_US
    w180 = cutoff_us - 180 * DAY_US
    recent = buy & (ts > w90)
    prev = buy & (ts > w180) & (ts <= w90)
    cols = rfm_columns(
        cutoff_us,
        count=cnt,
        days=_distinct_days(
            ts[buy], np.repeat(np.arange(n), np.diff(np.r_[starts, len(ts)]))[buy], n
        ),
        net=net,
        gross=gross,
        returns=n_ret,
        last=last,
        first=first,
        largest=amax,
        count_90d=per(recent),
        spend_90d=per(np.where(recent, amt, 0.0)),
        count_prev=per(prev),
        spend_prev=per(np.where(prev, amt, 0.0)),
    )
    out = pd.DataFrame({"customer_id": uniq, **cols})
    return out[cnt > 0].reset_index(drop=True)


def _distinct_days(ts_us: np.ndarray, run: np.ndarray, n: int) -> np.ndarray:
    """Per customer (``run``: each row's customer index), the distinct days of ``ts_us``."""
    if len(ts_us) == 0:
        return np.zeros(n)
    pairs = np.unique(np.stack([run, ts_us // DAY_US]), axis=1)
    return np.bincount(pairs[0], minlength=n).astype(np.float64)


def horizon_labels(
    customers, ids, ts_us: np.ndarray, amount: np.ndarray, cutoff_us: int, horizon_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels in ``(cutoff, cutoff + horizon]`` of each of ``customers`` (unique ids):
    ``bought`` (any purchase) and ``spend`` (net amount, 0 without a row in the window).
    Rows of other customers are ignored. Looked up straight into the customers' order:
    a join of per-window aggregates cost twice as much in the features stage."""
    end = cutoff_us + horizon_days * DAY_US
    w = (ts_us > cutoff_us) & (ts_us <= end)
    pos = _positions(np.asarray(customers), np.asarray(ids)[w])
    ok = pos >= 0
    pos, amt = pos[ok], amount[w][ok]
    n = len(customers)
    buys = np.bincount(pos, weights=amt > 0, minlength=n)
    return buys > 0, np.bincount(pos, weights=amt, minlength=n)


def _positions(customers: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Where each of ``ids`` is in ``customers`` (unique), -1 where absent: a binary
    search where the customers are sorted integers (as a bucket's are), else a hash."""
    c = customers
    if c.dtype.kind in "iu" and ids.dtype.kind in "iu" and bool(np.all(c[1:] > c[:-1])):
        pos = np.searchsorted(c, ids)
        inside = pos < len(c)
        inside[inside] = c[pos[inside]] == ids[inside]
        return np.where(inside, pos, -1)
    return pd.Index(c).get_indexer(ids)


def known_with_labels(ids, ts, amt, cut: int, horizon_days: int, refuse):
    """The customers with a purchase by ``cut`` (``rfm_features``' customers, less those
    in ``refuse``) in order of first appearance, and their labels (:func:`horizon_labels`).
    Where the ids are sorted (a bucket written by one ingest), the distinct ids are
    found by comparing neighbours instead of hashing every row (the same array; at 3M
    customers the hashing was ~10 % of the features stage)."""
    ids = np.asarray(ids)
    k = ids[(ts <= cut) & (amt > 0)]
    if ids.dtype.kind in "iu" and bool(np.all(ids[1:] >= ids[:-1])):
        known = k[np.r_[True, k[1:] != k[:-1]]] if len(k) else k
    else:
        known = pd.unique(k)
    if refuse is not None and len(refuse):
        known = known[~np.isin(known, refuse)]
    return (known, *horizon_labels(known, ids, ts, amt, cut, horizon_days))
