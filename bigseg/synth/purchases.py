"""Purchases and returns, and the two tables made of them: transactions and ground truth.

Purchases are a Poisson process thinned by seasonality and the at_risk decay, stopped by
dropout, and run to ``end_date + horizon_days``: the rows up to ``end_date`` are the
transactions table, the ones after it the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bigseg.synth.arrow import GROUND_TRUTH_SCHEMA, RAW_SCHEMAS, _sorted, _take, _ts
from bigseg.synth.constants import (
    CATEGORIES,
    CHANNELS,
    DAY_S,
    MAX_TX_PER_CUSTOMER,
    RETURN_DAYS,
)
from bigseg.synth.draws import _pick, _time_of_day
from bigseg.synth.personas import PERSONA_NAMES
from bigseg.synth.state import Frame, Latent


@dataclass(frozen=True)
class Purchases:
    """Every purchase of a chunk, campaign conversions last, and its returns."""

    owner: np.ndarray  # row of the customer in the chunk
    sec: np.ndarray
    chan: np.ndarray  # index into CHANNELS
    cat: np.ndarray  # index into CATEGORIES
    amount: np.ndarray
    returned: np.ndarray  # bool per purchase
    ret: np.ndarray  # indices of the returned purchases
    ret_sec: np.ndarray
    ret_amount: np.ndarray  # refunded, positive: all or part of the amount


def base_purchases(rng: np.random.Generator, f: Frame, lat: Latent) -> tuple[np.ndarray, ...]:
    """Owner and time (seconds) of the purchases not caused by a campaign."""
    stop = np.minimum(lat.death, f.E)
    length = np.clip(stop - lat.birth, 0.0, None)
    n_cand = rng.poisson(lat.lam * f.smax * length)
    owner = np.repeat(np.arange(f.n), n_cand)
    t = lat.birth[owner] + rng.random(owner.size) * length[owner]
    day = np.minimum(t.astype(np.int64), f.E - 1)
    decay = np.exp(-np.maximum(t - lat.tau[owner], 0.0) / lat.decay_scale[owner])
    keep = rng.random(owner.size) * f.smax < f.season[day] * decay
    owner, day = owner[keep], day[keep]
    p_sec = day * DAY_S + _time_of_day(rng, owner.size)
    p_sec = np.maximum(p_sec, lat.signup_sec[owner] + 300)
    return owner, p_sec


def _returns(
    rng: np.random.Generator, f: Frame, owner: np.ndarray, p_sec: np.ndarray, amount: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Which purchases are returned, when, and for how much."""
    returned = rng.random(owner.size) < f.p("return_rate")[owner]
    ret = np.nonzero(returned)[0]
    ret_sec = p_sec[ret] + rng.integers(RETURN_DAYS[0] * DAY_S, RETURN_DAYS[1] * DAY_S, ret.size)
    partial = rng.random(ret.size) < 0.2
    ret_amount = np.where(
        partial,
        np.maximum(np.round(amount[ret] * rng.uniform(0.2, 0.8, ret.size), 2), 0.01),
        amount[ret],
    )
    return returned, ret, ret_sec, ret_amount


def purchases(
    rng: np.random.Generator,
    f: Frame,
    lat: Latent,
    owner: np.ndarray,
    p_sec: np.ndarray,
    conv_owner: np.ndarray,
    conv_sec: np.ndarray,
) -> Purchases:
    """The base purchases and the campaign conversions, with channel, category, amount
    and returns."""
    owner = np.concatenate([owner, conv_owner])
    p_sec = np.concatenate([p_sec, conv_sec])
    n_p = owner.size

    p_chan = _pick(rng, lat.chan_cum, owner)
    from_campaign = np.zeros(n_p, dtype=bool)
    from_campaign[n_p - conv_owner.size :] = True
    p_chan = np.where(from_campaign & (p_chan == 2), 0, p_chan)  # campaign -> online
    p_cat = _pick(rng, lat.cat_cum, owner)
    amount = (
        np.exp(lat.mu[owner] + lat.sigma[owner] * rng.standard_normal(n_p)) * lat.cat_price[p_cat]
    )
    amount = np.maximum(np.round(amount, 2), 0.5)

    returned, ret, ret_sec, ret_amount = _returns(rng, f, owner, p_sec, amount)
    return Purchases(owner, p_sec, p_chan, p_cat, amount, returned, ret, ret_sec, ret_amount)


def _ground_truth(
    f: Frame,
    alive_at_end: np.ndarray,
    tx_owner: np.ndarray,
    tx_sec: np.ndarray,
    tx_amount: np.ndarray,
) -> tuple[pa.Table, np.ndarray]:
    """The ground truth from the horizon window (end, end + horizon], and ``buys``."""
    n, end_s = f.n, f.end_s
    hend_s = end_s + f.horizon_days * DAY_S
    in_h = (tx_sec > end_s) & (tx_sec <= hend_s)
    buys = np.bincount(tx_owner[in_h & (tx_amount > 0)], minlength=n) > 0
    spend = np.round(np.bincount(tx_owner[in_h], weights=tx_amount[in_h], minlength=n), 2)
    ground_truth = pa.Table.from_arrays(
        [
            pa.array(f.ids),
            _take(PERSONA_NAMES, f.code),
            pa.array(buys),
            pa.array(spend),
            pa.array(alive_at_end),
        ],
        schema=GROUND_TRUTH_SCHEMA,
    )
    return ground_truth, buys


def _transactions(
    f: Frame,
    tx_owner: np.ndarray,
    tx_sec: np.ndarray,
    tx_amount: np.ndarray,
    tx_chan: np.ndarray,
    tx_cat: np.ndarray,
) -> pa.Table:
    """The transactions table: the ledger up to end_date, by customer and time."""
    ids = f.ids
    w = tx_sec <= f.end_s
    tx_owner, tx_sec, tx_amount, tx_chan, tx_cat = (
        a[w] for a in (tx_owner, tx_sec, tx_amount, tx_chan, tx_cat)
    )
    order = _sorted(tx_owner, tx_sec)
    tx_owner, tx_sec, tx_amount, tx_chan, tx_cat = (
        a[order] for a in (tx_owner, tx_sec, tx_amount, tx_chan, tx_cat)
    )
    counts = np.bincount(tx_owner, minlength=f.n)
    if counts.max(initial=0) >= MAX_TX_PER_CUSTOMER:
        raise RuntimeError("too many transactions for one customer; lower the rates")
    seq = np.arange(tx_owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return pa.Table.from_arrays(
        [
            pa.array(ids[tx_owner]),
            _ts(f.start_us, tx_sec),
            pa.array(tx_amount),
            pa.array(ids[tx_owner] * MAX_TX_PER_CUSTOMER + seq),
            _take(CHANNELS, tx_chan),
            _take(CATEGORIES, tx_cat),
        ],
        schema=RAW_SCHEMAS["transactions"],
    )


def ledger_tables(
    f: Frame, alive_at_end: np.ndarray, pur: Purchases
) -> tuple[pa.Table, np.ndarray, pa.Table]:
    """Ground truth, ``buys_in_horizon`` per customer, and the transactions table.

    A return is a negative transaction in the purchase's channel and category.
    """
    owner, ret = pur.owner, pur.ret
    tx_owner = np.concatenate([owner, owner[ret]])
    tx_sec = np.concatenate([pur.sec, pur.ret_sec])
    tx_amount = np.concatenate([pur.amount, -pur.ret_amount])
    tx_chan = np.concatenate([pur.chan, pur.chan[ret]])
    tx_cat = np.concatenate([pur.cat, pur.cat[ret]])
    ground_truth, buys = _ground_truth(f, alive_at_end, tx_owner, tx_sec, tx_amount)
    transactions = _transactions(f, tx_owner, tx_sec, tx_amount, tx_chan, tx_cat)
    return ground_truth, buys, transactions
