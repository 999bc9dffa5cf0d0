"""The events table: sessions that led to an online purchase, and browsing.

Browsing is not tied to a purchase; it decays before dropout and is rare after it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigseg.synth.arrow import RAW_SCHEMAS, _sorted, _take, _ts
from bigseg.synth.constants import (
    DAY_S,
    POST_DEATH_BROWSE,
    PRE_DEATH_DECAY_DAYS,
    PURCHASE_SESSION_PROB,
)
from bigseg.synth.draws import _time_of_day
from bigseg.synth.purchases import Purchases
from bigseg.synth.state import Frame, Latent


def _purchase_sessions(
    rng: np.random.Generator, f: Frame, lat: Latent, pur: Purchases
) -> tuple[np.ndarray, ...]:
    """Owner, time, type and page views of the sessions before online purchases."""
    owner, p_chan, p_sec, signup_sec = pur.owner, pur.chan, pur.sec, lat.signup_sec
    online = np.nonzero((p_chan < 2) & (p_sec <= f.end_s))[0]
    online = online[rng.random(online.size) < PURCHASE_SESSION_PROB]
    e1_owner = owner[online]
    e1_sec = np.maximum(
        p_sec[online] - rng.integers(60, 3600, online.size),
        np.maximum(signup_sec[e1_owner], 0),  # not before signup nor the window start
    )
    e1_type = np.where(p_chan[online] == 1, 2, 0)  # app -> app_open, web -> session
    e1_views = 2 + rng.poisson(5.0, online.size)
    return e1_owner, e1_sec, e1_type, e1_views


def _browsing(rng: np.random.Generator, f: Frame, lat: Latent) -> tuple[np.ndarray, ...]:
    """Owner, time, type and page views of the browsing events."""
    H, birth, death, tau, decay_scale = f.H, lat.birth, lat.death, lat.tau, lat.decay_scale
    b_rate = f.p("browse_per_year") / 365.25 * lat.mult
    b_len = np.clip(H - birth, 0.0, None)
    nb = rng.poisson(b_rate * b_len)
    b_owner = np.repeat(np.arange(f.n), nb)
    bt = birth[b_owner] + rng.random(b_owner.size) * b_len[b_owner]
    d_o = death[b_owner]
    factor = np.clip((d_o - bt) / PRE_DEATH_DECAY_DAYS, 0.1, 1.0)
    factor = np.where(bt > d_o, POST_DEATH_BROWSE, factor)
    factor *= np.maximum(np.exp(-np.maximum(bt - tau[b_owner], 0.0) / decay_scale[b_owner]), 0.1)
    keep = rng.random(b_owner.size) < factor
    b_owner, bt = b_owner[keep], bt[keep]
    b_sec = np.minimum(bt.astype(np.int64), H - 1) * DAY_S + _time_of_day(rng, b_owner.size)
    b_sec = np.maximum(b_sec, lat.signup_sec[b_owner] + 60)
    chan_pref = lat.chan_pref
    app_share = chan_pref[:, 1] / (chan_pref[:, 0] + chan_pref[:, 1])
    is_app = rng.random(b_owner.size) < app_share[b_owner]
    b_type = np.where(is_app, 2, np.where(rng.random(b_owner.size) < 0.5, 0, 1))
    b_views = np.where(
        b_type == 0,
        1 + rng.poisson(3.0, b_owner.size),
        np.where(b_type == 2, 1 + rng.poisson(2.0, b_owner.size), 1),
    )
    return b_owner, b_sec, b_type, b_views


def events_table(rng: np.random.Generator, f: Frame, lat: Latent, pur: Purchases) -> pa.Table:
    """The events table, up to end_date, by customer and time."""
    e1_owner, e1_sec, e1_type, e1_views = _purchase_sessions(rng, f, lat, pur)
    b_owner, b_sec, b_type, b_views = _browsing(rng, f, lat)
    ev_owner = np.concatenate([e1_owner, b_owner])
    ev_sec = np.concatenate([e1_sec, b_sec])
    ev_type = np.concatenate([e1_type, b_type])
    ev_views = np.concatenate([e1_views, b_views]).astype(np.int32)
    w = ev_sec <= f.end_s
    order = _sorted(ev_owner[w], ev_sec[w])
    ev_owner, ev_sec, ev_type, ev_views = (
        a[w][order] for a in (ev_owner, ev_sec, ev_type, ev_views)
    )
    return pa.Table.from_arrays(
        [
            pa.array(f.ids[ev_owner]),
            _ts(f.start_us, ev_sec),
            _take(("session", "page_view", "app_open"), ev_type),
            _take(("web", "web", "app"), ev_type),
            pa.array(ev_views),
        ],
        schema=RAW_SCHEMAS["events"],
    )
