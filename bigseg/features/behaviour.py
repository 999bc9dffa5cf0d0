"""Behaviour features from transactions, events and campaigns, per bucket, no Dask inside.

Every function takes one bucket of one table as a :class:`pyarrow.Table` (rows sorted by
``customer_id`` then time, although nothing here relies on the order) and a cutoff in
microseconds since the epoch, and returns a :class:`pandas.DataFrame` with
``customer_id`` plus float32 feature columns: one row per customer with at least one
row at or before the cutoff in that table, in order of first appearance. Only rows at or
before the cutoff are read, so adding or changing later rows never changes the output.

Grouping is vectorised: customer ids become integer codes (Arrow dictionary encoding,
first-appearance order, like ``pd.factorize``) and per-customer aggregates are
``np.bincount`` / ``np.maximum.at`` reductions over those codes; per (customer, value)
distinct counts use ``np.unique`` on a combined int64 key. No per-customer Python loop.
Those helpers are in :mod:`bigseg.features.columnar` (and still importable from here).

Conventions:

* a transaction with ``amount > 0`` is a purchase (as in :mod:`bigseg.features.rfm`);
* "the last 90 days" is the window ``(cutoff - 90 days, cutoff]``;
* a feature that needs a column the table lacks is absent from the output (not filled
  with zeros); a customer for whom a ratio has no denominator gets NaN (the models
  handle NaN);
* rows with a null customer id or a null time are ignored;
* value names become column-name suffixes through :func:`column_suffixes` (lower case,
  runs of other characters than ``a-z0-9`` become ``_``), so ``"Home & Garden"`` gives
  ``category_share_home_garden``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.features.columnar import (
    _bool,
    _count,
    _distinct_pairs,
    _equals,
    _factorize,
    _frame,
    _group_max,
    _ratio,
    _select,
    _times,
    _vocab,
    _vocab_index,
    column_suffixes,
    vocabulary,
)
from bigseg.features.columnar import _bool_of as _bool_of
from bigseg.features.columnar import _dict_codes as _dict_codes
from bigseg.features.columnar import encode_strings as encode_strings
from bigseg.features.rfm import DAY_US, days_since

__all__ = [
    "FEATURES",
    "campaign_features",
    "category_features",
    "channel_features",
    "column_suffixes",
    "engagement_features",
    "vocabulary",
]

#: feature name (``<x>`` marks a name pattern) -> description, for the report and docs
FEATURES: dict[str, str] = {
    # channel_features (transactions)
    "channel_share_<channel>": "share of the customer's purchases made in that channel "
    "(purchases with a known channel; one column per channel of the vocabulary)",
    "channel_dominant": "index into the channel vocabulary of the channel with the most "
    "purchases (ties: the earlier channel of the vocabulary); NaN with no purchase in a "
    "vocabulary channel",
    "channel_count": "number of distinct channels the customer bought in",
    # category_features (transactions)
    "category_share_<category>": "share of the customer's spend in that category "
    "(purchases with a known category; one column per top category)",
    "category_other_share": "share of spend in categories outside the top categories",
    "category_entropy": "Shannon entropy (natural log) of the customer's spend over all "
    "categories: 0 = one category only",
    "category_count": "number of distinct categories the customer bought in",
    # engagement_features (events)
    "active_days_90d": "distinct calendar days (UTC) with any event in the last 90 days",
    "sessions_90d": "sessions (event_type 'session') in the last 90 days",
    "sessions_90d_<channel>": "sessions in the last 90 days in that channel",
    "page_views_90d": "page views (sum of page_views) in the last 90 days",
    "app_opens_90d": "app opens (event_type 'app_open') in the last 90 days",
    "days_since_last_activity": "days since the last event of any kind",
    "events_total": "events of any kind up to the cutoff",
    # campaign_features (campaigns)
    "campaign_sends": "campaign messages sent to the customer up to the cutoff",
    "campaign_sends_90d": "campaign messages sent in the last 90 days",
    "campaign_response_rate": "responses per message sent (a response counts only once "
    "its responded_at is at or before the cutoff)",
    "campaign_conversion_rate": "conversions per message sent (a conversion counts only "
    "with a response at or before the cutoff)",
    "days_since_last_response": "days since the last campaign response; NaN if none",
}


# --------------------------------------------------------------------------------------
# transactions
# --------------------------------------------------------------------------------------


def channel_features(
    tx: pa.Table, cutoff_us: int, channels: Sequence[str] | None = None
) -> pd.DataFrame:
    """Purchase channel mix at ``cutoff_us``.

    Parameters
    ----------
    tx : pyarrow.Table
        One bucket of transactions: ``customer_id``, ``timestamp``, ``amount`` and,
        for any feature, ``channel``.
    cutoff_us : int
        Only rows with ``timestamp <= cutoff_us`` are used.
    channels : sequence of str, optional
        The channel vocabulary: one ``channel_share_<name>`` column per entry, in this
        order, whatever the bucket holds (use :func:`vocabulary` on a sample so every
        bucket yields the same columns). If None: the sorted distinct channels of the
        rows at or before the cutoff.

    Returns
    -------
    DataFrame with ``customer_id`` and, when ``tx`` has a ``channel`` column:

    * ``channel_share_<name>``: purchases in that channel / purchases with a known
      (non-null) channel. Purchases in channels outside the vocabulary count in the
      denominator only, so the shares sum to 1 when the vocabulary covers every channel.
      NaN for a customer with no purchase with a known channel (e.g. returns only);
    * ``channel_dominant``: the index in ``channels`` of the vocabulary channel with the
      most purchases, ties to the lower index; NaN when none;
    * ``channel_count``: distinct channels (any, not only the vocabulary) with a
      purchase.

    Without a ``channel`` column only ``customer_id`` is returned.
    """
    t, codes, uniq, _, _ = _select(tx, cutoff_us, "timestamp")
    n = len(uniq)
    if "channel" not in t.column_names:
        return _frame(uniq, {})
    ch, ch_uniq = _factorize(t.column("channel"))
    vocab = _vocab(channels, ch_uniq, "channel")
    k = len(vocab)
    vidx = _vocab_index(vocab, ch_uniq)[ch]
    amt = pc.fill_null(t.column("amount").cast(pa.float64()), 0.0).to_numpy()
    known = (amt > 0) & (ch >= 0)
    in_v = known & (vidx >= 0)
    mat = np.bincount(codes[in_v] * k + vidx[in_v], minlength=n * k).reshape(n, k)
    den = _count(codes, n, known)
    pairs, _ = _distinct_pairs(codes[known], ch[known], len(ch_uniq))
    count = np.bincount(pairs // max(len(ch_uniq), 1), minlength=n)
    return _frame(uniq, channel_columns(mat, den, count, vocab))


def channel_columns(
    mat: np.ndarray, den: np.ndarray, count: np.ndarray, vocab: list[str]
) -> dict[str, np.ndarray]:
    """The channel feature columns from each customer's purchases per vocabulary channel
    (``mat``, customers x ``len(vocab)``), purchases with a known channel (``den``) and
    distinct channels bought in (``count``). The one definition of these formulas: used
    by :func:`channel_features` and by :func:`bigseg.features.fused.transaction_features`."""
    n, k = len(mat), len(vocab)
    shares = _ratio(mat, den[:, None]) if k else np.zeros((n, 0))
    dominant = (
        np.where(mat.sum(axis=1) > 0, mat.argmax(axis=1), np.nan) if k else np.full(n, np.nan)
    )
    cols = {f"channel_share_{s}": shares[:, j] for j, s in enumerate(column_suffixes(vocab))}
    cols["channel_dominant"] = dominant
    cols["channel_count"] = count
    return cols


def category_features(tx: pa.Table, cutoff_us: int, categories: Sequence[str]) -> pd.DataFrame:
    """Spend mix over product categories at ``cutoff_us`` (purchases only, weighted by
    amount; purchases with a null category are ignored).

    Parameters
    ----------
    tx : pyarrow.Table
        One bucket of transactions: ``customer_id``, ``timestamp``, ``amount`` and,
        for any feature, ``category``.
    cutoff_us : int
        Only rows with ``timestamp <= cutoff_us`` are used.
    categories : sequence of str
        The top categories (e.g. :func:`vocabulary` of a sample): one
        ``category_share_<name>`` column each, in this order.

    Returns
    -------
    DataFrame with ``customer_id`` and, when ``tx`` has a ``category`` column,
    ``category_share_<name>`` per top category, ``category_other_share`` (spend outside
    them), ``category_entropy`` (Shannon entropy, natural log, of the spend distribution
    over all categories: within ``[0, log(category_count)]``) and ``category_count``
    (distinct categories bought). Shares and entropy are NaN for a customer with no
    purchase with a known category; ``category_count`` is then 0.
    """
    t, codes, uniq, _, _ = _select(tx, cutoff_us, "timestamp")
    n = len(uniq)
    if "category" not in t.column_names:
        return _frame(uniq, {})
    cat, cat_uniq = _factorize(t.column("category"))
    vocab = _vocab(categories, cat_uniq, "category")
    amt = pc.fill_null(t.column("amount").cast(pa.float64()), 0.0).to_numpy()
    known = (amt > 0) & (cat >= 0)
    m = max(len(cat_uniq), 1)
    pairs, inv = _distinct_pairs(codes[known], cat[known], m)
    p_cust, p_cat = pairs // m, pairs % m
    p_spend = np.bincount(inv, weights=amt[known], minlength=len(pairs))
    p_v = _vocab_index(vocab, cat_uniq)[p_cat]
    return _frame(uniq, category_columns(p_cust, p_v, p_spend, n, vocab))


def category_columns(
    p_cust: np.ndarray, p_v: np.ndarray, p_spend: np.ndarray, n: int, vocab: list[str]
) -> dict[str, np.ndarray]:
    """The category feature columns of ``n`` customers from their distinct (customer,
    category) purchase pairs, sorted by customer: the customer (``p_cust``), the
    category's index in ``vocab`` (``p_v``, -1 outside it) and the pair's spend
    (``p_spend``). The one definition of these formulas: used by
    :func:`category_features` and by :func:`bigseg.features.fused.transaction_features`."""
    k = len(vocab)
    total = np.bincount(p_cust, weights=p_spend, minlength=n)
    has = total > 0
    p = p_spend / total[p_cust] if len(p_cust) else np.zeros(0)
    entropy = np.bincount(p_cust, weights=-p * np.log(p), minlength=n) if len(p_cust) else None
    top = p_v >= 0
    mat = np.bincount(p_cust[top] * k + p_v[top], weights=p[top], minlength=n * k).reshape(n, k)
    other = np.bincount(p_cust[~top], weights=p[~top], minlength=n)
    nan = np.float64(np.nan)
    cols = {
        f"category_share_{s}": np.where(has, mat[:, j], nan)
        for j, s in enumerate(column_suffixes(vocab))
    }
    cols["category_other_share"] = np.where(has, other, nan)
    cols["category_entropy"] = (
        np.where(has, np.maximum(entropy, 0.0), nan) if entropy is not None else np.full(n, nan)
    )
    cols["category_count"] = np.bincount(p_cust, minlength=n)
    return cols


# --------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------


def engagement_features(
    events: pa.Table, cutoff_us: int, channels: Sequence[str] | None = None
) -> pd.DataFrame:
    """Engagement from events (sessions, page views, app opens) at ``cutoff_us``.

    Parameters
    ----------
    events : pyarrow.Table
        One bucket of events: ``customer_id``, ``timestamp``, ``event_type``
        (``session`` / ``page_view`` / ``app_open``), optional ``channel``, optional
        ``page_views``.
    cutoff_us : int
        Only rows with ``timestamp <= cutoff_us`` are used.
    channels : sequence of str, optional
        Channel vocabulary for ``sessions_90d_<channel>``; if None the sorted distinct
        channels of the rows at or before the cutoff.

    Returns
    -------
    DataFrame with ``customer_id``, ``active_days_90d`` (distinct UTC calendar days with
    any event in ``(cutoff - 90 d, cutoff]``), ``sessions_90d``, ``sessions_90d_<channel>``
    (only with a ``channel`` column), ``page_views_90d`` (only with a ``page_views``
    column; nulls count 0), ``app_opens_90d``, ``days_since_last_activity`` and
    ``events_total``.
    """
    t, codes, uniq, ts, _ = _select(events, cutoff_us, "timestamp")
    n = len(uniq)
    in90 = ts > cutoff_us - 90 * DAY_US
    day = ts[in90] // DAY_US
    d0 = int(day.min()) if len(day) else 0
    span = int(day.max()) - d0 + 1 if len(day) else 1
    pairs, _ = _distinct_pairs(codes[in90], day - d0, span)
    cols: dict[str, np.ndarray] = {"active_days_90d": np.bincount(pairs // span, minlength=n)}
    session = _equals(t, "event_type", "session") & in90
    cols["sessions_90d"] = _count(codes, n, session)
    if "channel" in t.column_names:
        ch, ch_uniq = _factorize(t.column("channel"))
        vocab = _vocab(channels, ch_uniq, "channel")
        vidx = _vocab_index(vocab, ch_uniq)[ch]
        for j, s in enumerate(column_suffixes(vocab)):
            cols[f"sessions_90d_{s}"] = _count(codes, n, session & (vidx == j))
    if "page_views" in t.column_names:
        pv = pc.fill_null(t.column("page_views").cast(pa.float64()), 0.0).to_numpy()
        cols["page_views_90d"] = np.bincount(codes[in90], weights=pv[in90], minlength=n)
    cols["app_opens_90d"] = _count(codes, n, _equals(t, "event_type", "app_open") & in90)
    last = _group_max(codes, ts, n, np.iinfo(np.int64).min)
    cols["days_since_last_activity"] = days_since(cutoff_us, last)
    cols["events_total"] = _count(codes, n)
    return _frame(uniq, cols)


# --------------------------------------------------------------------------------------
# campaigns
# --------------------------------------------------------------------------------------


def campaign_features(campaigns: pa.Table, cutoff_us: int) -> pd.DataFrame:
    """Campaign exposure and response at ``cutoff_us``.

    Sends count when ``sent_at <= cutoff_us``. A response counts only when its
    ``responded_at`` is at or before the cutoff (and ``responded`` is true, when that
    column exists): a response that came later is no response at the cutoff. Without a
    ``responded_at`` column the response features are absent, since it cannot be told
    whether a response was known at the cutoff. A conversion counts only together with
    a counted response (the table has no conversion time).

    Returns
    -------
    DataFrame with ``customer_id``, ``campaign_sends``, ``campaign_sends_90d`` and, with
    ``responded_at``: ``campaign_response_rate`` (responses / sends),
    ``days_since_last_response`` (NaN when the customer never responded) and, with a
    ``converted`` column too, ``campaign_conversion_rate`` (conversions / sends).
    """
    t, codes, uniq, ts, _ = _select(campaigns, cutoff_us, "sent_at")
    n = len(uniq)
    sends = _count(codes, n)
    cols: dict[str, np.ndarray] = {
        "campaign_sends": sends,
        "campaign_sends_90d": _count(codes, n, ts > cutoff_us - 90 * DAY_US),
    }
    if "responded_at" in t.column_names:
        rat = _times(t, "responded_at")
        resp = rat <= cutoff_us
        if "responded" in t.column_names:
            resp &= _bool(t, "responded")
        cols["campaign_response_rate"] = _ratio(_count(codes, n, resp), sends)
        if "converted" in t.column_names:
            conv = resp & _bool(t, "converted")
            cols["campaign_conversion_rate"] = _ratio(_count(codes, n, conv), sends)
        last = _group_max(codes[resp], rat[resp], n, np.iinfo(np.int64).min)
        cols["days_since_last_response"] = np.where(
            last > np.iinfo(np.int64).min, days_since(cutoff_us, last.astype(np.float64)), np.nan
        )
    return _frame(uniq, cols)


def response_labels(campaigns: pa.Table, cutoff_us: int, horizon_days: int) -> pd.DataFrame:
    """Campaign-response label in ``(cutoff, cutoff + horizon]``: per customer sent a
    campaign in that window, ``response`` = 1.0 when any of those sends got a response
    within the window (``responded`` true, when that column exists, and ``responded_at``
    inside the window), else 0.0. Customers sent nothing in the window are absent (the
    label is undefined for them). Needs ``responded_at``: without it, an empty frame."""
    end = cutoff_us + horizon_days * DAY_US
    if "responded_at" not in campaigns.column_names or campaigns.num_rows == 0:
        return pd.DataFrame({"customer_id": [], "response": []})
    sent = _times(campaigns, "sent_at")
    win = (sent > cutoff_us) & (sent <= end)
    t = campaigns.filter(pa.array(win))
    ids = t.column("customer_id")
    if ids.null_count:
        t = t.filter(pc.is_valid(ids))
    if t.num_rows == 0:
        return pd.DataFrame({"customer_id": [], "response": []})
    codes, uniq = _factorize(t.column("customer_id"))
    rat = _times(t, "responded_at")
    resp = (rat > cutoff_us) & (rat <= end)
    if "responded" in t.column_names:
        resp &= _bool(t, "responded")
    n = len(uniq)
    hit = _count(codes, n, resp) > 0
    return pd.DataFrame({"customer_id": uniq, "response": hit.astype(np.float64)})
