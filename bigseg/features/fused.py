"""Per-bucket features of every cutoff in one compiled pass a cutoff: transactions and
events.

:func:`~bigseg.features.rfm.rfm_features`, :func:`~bigseg.features.behaviour.channel_features`
and :func:`~bigseg.features.behaviour.category_features` each filter the bucket's
transactions to the cutoff, find the customers' runs and reduce with several NumPy
passes over all rows (about 2.2 of the 3.9 seconds a bucket of 125k customers takes at
three cutoffs). A bucket in the store is sorted by customer id, so one numba loop over
each customer's run can gather what all three need: the sums, counts, extremes and window
sums of RFM, the channel counts and the (customer, category) spend pairs. The features
are then derived from those by the functions the three use themselves
(:func:`~bigseg.features.rfm.rfm_columns`,
:func:`~bigseg.features.behaviour.channel_columns`,
:func:`~bigseg.features.behaviour.category_columns`: each formula is written once), so
the frames are the same (``tests/test_fast_paths.py`` compares them on every edge case:
returns, zero amounts, null channels and categories, values outside the vocabulary,
customers with returns only or no row before the cutoff).

:func:`transaction_features` returns None when the bucket does not fit this path (ids
not sorted, a null id, time or amount, a categorical column not dictionary-encoded,
no channel vocabulary); the caller then uses the three functions.

:func:`bigseg.features.fused_events.engagement_features` does the same for
:func:`~bigseg.features.behaviour.engagement_features` over the bucket's events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd
import pyarrow as pa

from bigseg.features import behaviour
from bigseg.features.rfm import DAY_US, rfm_columns
from bigseg.features.sample import customer_numbers

_I64_MIN = np.iinfo(np.int64).min
_I64_MAX = np.iinfo(np.int64).max


@numba.njit(cache=True, nogil=True)
def _pairwise_block(a, lo, n):  # pragma: no cover - compiled
    """NumPy's ``pairwise_sum`` of ``a[lo:lo + n]`` for ``n <= 128``: sequential below 8,
    else 8 accumulators, combined as a tree, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def _pairwise(a, lo, n):  # pragma: no cover - compiled
    """NumPy's summation of ``a[lo:lo + n]`` (``pairwise_sum``: blocks of up to 128, the
    halves of longer runs added), so that sums equal ``np.add.reduceat``'s to the bit.
    The halving is walked with an explicit stack: numba's cache cannot hold a recursive
    function safely."""
    if n <= 128:
        return _pairwise_block(a, lo, n)
    s_lo = np.empty(64, np.int64)
    s_n = np.empty(64, np.int64)
    s_stage = np.zeros(64, np.int64)
    s_left = np.empty(64)
    top = 0
    s_lo[0], s_n[0] = lo, n
    ret = 0.0
    while top >= 0:
        m = s_n[top]
        if m <= 128:
            ret = _pairwise_block(a, s_lo[top], m)
            top -= 1
            continue
        n2 = m // 2
        n2 -= n2 % 8
        if s_stage[top] == 0:  # the left half first
            s_stage[top] = 1
            top += 1
            s_lo[top], s_n[top], s_stage[top] = s_lo[top - 1], n2, 0
        elif s_stage[top] == 1:  # left done (in ret): the right half
            s_left[top] = ret
            s_stage[top] = 2
            top += 1
            s_lo[top], s_n[top], s_stage[top] = s_lo[top - 1] + n2, m - n2, 0
        else:  # both done
            ret = s_left[top] + ret
            top -= 1
    return ret


@numba.njit(cache=True, nogil=True)
def _reduce(a, n):  # pragma: no cover - compiled
    """``np.add.reduce(a[:n])``: the first value, plus the pairwise sum of the rest."""
    return a[0] + _pairwise(a, 1, n - 1) if n else 0.0


# Over the ~80-line function guideline on purpose: this is a compiled numba kernel whose
# loop body runs once per transaction row. Splitting the per-row work into helpers would
# either cost a call per row (a Python-level helper cannot be called from nopython code
# cheaply) or scatter the 17 per-customer accumulators over helpers that take and return
# them all; one flat loop keeps every accumulator in registers/locals.
@numba.njit(cache=True, nogil=True)
def _pass(starts, ends, ts, amt, ch, ch_v, n_ch, k_ch, cat, n_cat, cutoff, w90, w180):
    """Per customer run ``[starts[i], ends[i])``, the rows at or before ``cutoff``."""
    n = len(starts)
    cnt = np.zeros(n)
    days = np.zeros(n)
    net = np.zeros(n)
    gross = np.zeros(n)
    n_ret = np.zeros(n)
    last = np.full(n, _I64_MIN)
    first = np.full(n, _I64_MAX)
    amax = np.zeros(n)
    c90 = np.zeros(n)
    s90 = np.zeros(n)
    cprev = np.zeros(n)
    sprev = np.zeros(n)
    ch_mat = np.zeros((n, max(k_ch, 1)), np.int64)
    ch_den = np.zeros(n)
    ch_count = np.zeros(n, np.int64)
    ch_seen = np.zeros(max(n_ch, 1), np.bool_)
    spend = np.zeros(max(n_cat, 1))
    bought = np.zeros(max(n_cat, 1), np.bool_)
    p_cust = np.empty(len(ts), np.int64)
    p_cat = np.empty(len(ts), np.int64)
    p_spend = np.empty(len(ts))
    n_pairs = 0
    longest = 0
    for i in range(n):
        longest = max(longest, ends[i] - starts[i])
    # a customer's values of the four float sums, summed as np.add.reduceat does
    b_net, b_gross = np.empty(longest), np.empty(longest)
    b_s90, b_sprev = np.empty(longest), np.empty(longest)
    b_day = np.empty(longest, np.int64)
    for i in range(n):
        m = 0
        for r in range(starts[i], ends[i]):
            t = ts[r]
            if t > cutoff:
                continue
            a = amt[r]
            b_net[m] = a
            b_gross[m] = 0.0
            b_s90[m] = 0.0
            b_sprev[m] = 0.0
            if a > 0:
                b_day[int(cnt[i])] = t // DAY_US
                cnt[i] += 1.0
                b_gross[m] = a
                if t > last[i]:
                    last[i] = t
                if t < first[i]:
                    first[i] = t
                if a > amax[i]:
                    amax[i] = a
                if t > w90:
                    c90[i] += 1.0
                    b_s90[m] = a
                elif t > w180:
                    cprev[i] += 1.0
                    b_sprev[m] = a
                if n_ch > 0:
                    c = ch[r]
                    if c >= 0:
                        ch_den[i] += 1.0
                        ch_seen[c] = True
                        v = ch_v[c]
                        if v >= 0:
                            ch_mat[i, v] += 1
                if n_cat > 0:
                    c = cat[r]
                    if c >= 0:
                        spend[c] += a
                        bought[c] = True
            else:
                n_ret[i] += 1.0
            m += 1
        k = int(cnt[i])
        if k:  # distinct purchase days: the run's rows need not be in time order
            d = np.sort(b_day[:k])
            days[i] = 1.0 + np.sum(d[1:] != d[:-1])
        net[i] = _reduce(b_net, m)
        gross[i] = _reduce(b_gross, m)
        s90[i] = _reduce(b_s90, m)
        sprev[i] = _reduce(b_sprev, m)
        for c in range(n_ch):
            if ch_seen[c]:
                ch_count[i] += 1
                ch_seen[c] = False
        for c in range(n_cat):  # ascending category code, as the pairs are sorted
            if bought[c]:
                p_cust[n_pairs] = i
                p_cat[n_pairs] = c
                p_spend[n_pairs] = spend[c]
                n_pairs += 1
                bought[c] = False
                spend[c] = 0.0
    return (
        cnt,
        days,
        net,
        gross,
        n_ret,
        last,
        first,
        amax,
        c90,
        s90,
        cprev,
        sprev,
        ch_mat,
        ch_den,
        ch_count,
        p_cust[:n_pairs],
        p_cat[:n_pairs],
        p_spend[:n_pairs],
    )


def _codes(tx: pa.Table, name: str):
    """Dictionary indices (-1 for null) and dictionary of a dictionary-encoded column, or
    None when the column is plain."""
    col = tx.column(name)
    if not pa.types.is_dictionary(col.type):
        return None
    return behaviour._dict_codes(col)


def _plain_numpy(tx: pa.Table, name: str, dtype) -> np.ndarray | None:
    col = tx.column(name)
    if col.null_count:
        return None
    if pa.types.is_timestamp(col.type):
        if col.type.unit != "us":
            return None
        col = col.cast(pa.int64())
    return np.asarray(col.to_numpy(), dtype=dtype)


def _sorted_runs(table: pa.Table):
    """``(uniq, starts, ends)`` of the customers' runs of rows, or None when the ids have
    a null or are not sorted (then the rows of a customer may not be contiguous)."""
    col = table.column("customer_id")
    if table.num_rows == 0 or col.null_count:
        return None
    ids = col.to_numpy()
    if len(ids) > 1 and not bool(np.all(ids[1:] >= ids[:-1])):
        return None
    change = np.empty(len(ids), dtype=bool)
    change[0] = True
    np.not_equal(ids[1:], ids[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    return ids[starts], starts, np.append(starts[1:], len(ids))


def transaction_features(
    tx: pa.Table,
    cutoffs: dict[str, int],
    channels: Sequence[str] | None,
    categories: Sequence[str],
    sample: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, pd.DataFrame] | None:
    """For each named cutoff, the frame ``rfm_features`` left-joined with
    ``channel_features(tx, cut, channels)`` and ``category_features(tx, cut, categories)``
    (the columns those add only when ``tx`` has ``channel`` / ``category``); None when
    ``tx`` does not fit this path (see the module docstring). ``sample``: cutoffs whose
    frames hold only the customers whose sampling number (with ``seed``) lies below the
    given share; the pass reads only their rows."""
    names = tx.column_names
    has_ch, has_cat = "channel" in names, "category" in names
    runs = _sorted_runs(tx)
    if runs is None or has_ch and channels is None:
        return None
    uniq, starts, ends = runs
    ts = _plain_numpy(tx, "timestamp", np.int64)
    amt = _plain_numpy(tx, "amount", np.float64)
    if ts is None or amt is None:
        return None
    empty = (np.zeros(0, np.int64), np.zeros(0, dtype=object))
    ch = _codes(tx, "channel") if has_ch else empty
    cat = _codes(tx, "category") if has_cat else empty
    if ch is None or cat is None:
        return None
    (ch_codes, ch_dict), (cat_codes, cat_dict) = ch, cat
    ch_vocab = behaviour._vocab(channels, ch_dict, "channel") if has_ch else []
    cat_vocab = behaviour._vocab(categories, cat_dict, "category") if has_cat else []
    ch_v = behaviour._vocab_index(ch_vocab, ch_dict)[:-1] if has_ch else ch_codes
    cat_v = behaviour._vocab_index(cat_vocab, cat_dict)
    if not has_ch:
        ch_codes = np.zeros(tx.num_rows, np.int64)
    if not has_cat:
        cat_codes = np.zeros(tx.num_rows, np.int64)
    ch_codes = np.ascontiguousarray(ch_codes, dtype=np.int64)
    cat_codes = np.ascontiguousarray(cat_codes, dtype=np.int64)
    sel = _selections(uniq, cutoffs, sample, seed)
    out = {}
    for name, cut in cutoffs.items():
        r = _pass(
            starts[sel[name]],
            ends[sel[name]],
            ts,
            amt,
            ch_codes,
            np.asarray(ch_v, np.int64),
            len(ch_dict) if has_ch else 0,
            len(ch_vocab),
            cat_codes,
            len(cat_dict) if has_cat else 0,
            cut,
            cut - 90 * DAY_US,
            cut - 180 * DAY_US,
        )
        out[name] = _frame(uniq[sel[name]], r, cut, has_ch, ch_vocab, has_cat, cat_vocab, cat_v)
    return out


def _selections(uniq, cutoffs: dict, sample: dict[str, float] | None, seed: int) -> dict:
    """Per cutoff, the customers of ``uniq`` a pass reads: those whose sampling number
    lies below the cutoff's share in ``sample``, else all."""
    u = customer_numbers(uniq, seed) if sample else None
    return {
        name: np.flatnonzero(u < sample[name]) if sample and name in sample else slice(None)
        for name in cutoffs
    }


def _frame(uniq, r, cutoff_us, has_ch, ch_vocab, has_cat, cat_vocab, cat_v) -> pd.DataFrame:
    (
        cnt,
        days,
        net,
        gross,
        n_ret,
        last,
        first,
        amax,
        c90,
        s90,
        cprev,
        sprev,
        ch_mat,
        ch_den,
        ch_count,
        p_cust,
        p_cat,
        p_spend,
    ) = r
    keep = np.flatnonzero(cnt > 0)  # rfm_features' customers: a purchase by the cutoff
    cols = rfm_columns(
        cutoff_us,
        count=cnt[keep],
        days=days[keep],
        net=net[keep],
        gross=gross[keep],
        returns=n_ret[keep],
        last=last[keep],
        first=first[keep],
        largest=amax[keep],
        count_90d=c90[keep],
        spend_90d=s90[keep],
        count_prev=cprev[keep],
        spend_prev=sprev[keep],
    )
    f32 = {}
    if has_ch:  # channel_features' columns, from this pass's counts
        k = len(ch_vocab)
        f32.update(
            behaviour.channel_columns(ch_mat[keep, :k], ch_den[keep], ch_count[keep], ch_vocab)
        )
    if has_cat:  # category_features' columns, from the same sorted pairs
        per_customer = behaviour.category_columns(
            p_cust, cat_v[p_cat], p_spend, len(uniq), cat_vocab
        )
        f32.update({name: v[keep] for name, v in per_customer.items()})
    return pd.DataFrame(
        {
            "customer_id": uniq[keep],
            **cols,
            **{k: np.asarray(v, dtype=np.float32) for k, v in f32.items()},
        }
    )
