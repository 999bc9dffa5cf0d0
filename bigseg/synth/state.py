"""The state one chunk's tables share: its time axis, personas and latent customers.

Times are seconds (``*_sec``) or days from ``start_day`` 00:00, the first day of the
history window. :func:`make_frame` and :func:`draw_latent` are the first users of the
chunk's RNG; every table is drawn after them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bigseg.synth.constants import (
    AOV_CUSTOMER_SIGMA,
    CATEGORIES,
    CATEGORY_CONCENTRATION,
    CATEGORY_POPULARITY,
    CATEGORY_PRICE,
    CHANNEL_CONCENTRATION,
    DAY_S,
    RATE_MULTIPLIER_CAP,
)
from bigseg.synth.draws import _dirichlet_rows, _seasonality
from bigseg.synth.personas import _P, PERSONA_NAMES


@dataclass(frozen=True)
class Frame:
    """A chunk's customers and time axis."""

    ids: np.ndarray  # customer ids, int64
    code: np.ndarray  # persona code of each customer
    start_day: np.datetime64
    end_day: np.datetime64
    start_us: int  # start_day 00:00 in microseconds since the epoch
    H: int  # days in the history window, end_date included
    E: int  # simulation stops here (days from start)
    end_s: int  # last second written to raw tables: end_date 23:59:59
    horizon_days: int
    season: np.ndarray  # relative purchase rate per day, days 0 .. E - 1
    smax: float  # season.max(), the envelope of the thinned Poisson process

    @property
    def n(self) -> int:
        return self.ids.size

    def p(self, name: str) -> np.ndarray:
        """Persona parameter ``name`` of each customer."""
        return _P[name][self.code]


@dataclass(frozen=True)
class Latent:
    """What each customer really is and does, never written as such."""

    signup_sec: np.ndarray  # may be negative: signed up before the history window
    birth: np.ndarray  # start of activity, days: signup or the window start
    tau: np.ndarray  # start of the at_risk decay, days (inf: no decay)
    death: np.ndarray  # dropout time, days
    decay_scale: np.ndarray  # e-folding time of the decay after tau, days
    alive_at_end: np.ndarray  # death > H
    mult: np.ndarray  # customer multiplier of the purchase and browsing rates
    lam: np.ndarray  # purchases per day while alive, before seasonality
    sigma: np.ndarray  # lognormal sigma of one order
    mu: np.ndarray  # log-scale mean of the customer's orders
    chan_pref: np.ndarray  # (n, 3) channel preferences
    chan_cum: np.ndarray  # their cumulative sums, for _pick
    cat_cum: np.ndarray  # cumulative category preferences, for _pick
    cat_price: np.ndarray  # price factor of each category, popularity-weighted mean 1
    satisfaction: np.ndarray  # latent review sentiment


def make_frame(
    rng: np.random.Generator,
    first_id: int,
    n: int,
    end_date: str,
    horizon_days: int,
    history_days: int,
) -> Frame:
    """The time axis of the chunk and a persona per customer (the RNG's first draw)."""
    end_day = np.datetime64(end_date, "D")
    start_day = end_day - np.timedelta64(history_days, "D")
    start_us = int(start_day.astype("datetime64[us]").astype(np.int64))
    H = history_days + 1  # days in the history window, end_date included
    E = H + horizon_days  # simulation stops here (days from start)
    end_s = H * DAY_S - 1  # last second written to raw tables: end_date 23:59:59
    season = _seasonality(start_day, E)
    smax = season.max()

    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    code = rng.choice(len(PERSONA_NAMES), size=n, p=_P["share"])
    return Frame(
        ids=ids,
        code=code,
        start_day=start_day,
        end_day=end_day,
        start_us=start_us,
        H=H,
        E=E,
        end_s=end_s,
        horizon_days=horizon_days,
        season=season,
        smax=smax,
    )


def _lifecycle(rng: np.random.Generator, f: Frame) -> dict[str, np.ndarray]:
    """Signup, decay start and dropout ("death") of each customer."""
    n, H, p = f.n, f.H, f.p
    lo, hi = p("signup_days_before_end_0"), p("signup_days_before_end_1")
    signup_days_before = lo + rng.random(n) * (hi - lo)
    signup_sec = (H * DAY_S - signup_days_before * DAY_S).astype(np.int64)
    signup_day = signup_sec / DAY_S  # days from start, may be negative
    birth = np.maximum(signup_day, 0.0)
    has_decay = p("decay_days_before_end_0") >= 0
    dlo, dhi = p("decay_days_before_end_0"), p("decay_days_before_end_1")
    tau = np.where(has_decay, H - (dlo + rng.random(n) * (dhi - dlo)), np.inf)
    life = rng.exponential(1.0, n)
    death = np.where(
        has_decay,
        tau + life * p("post_decay_lifetime_days"),
        birth + life * p("lifetime_days"),
    )
    decay_scale = p("decay_scale_days")
    alive_at_end = death > H
    return {
        "signup_sec": signup_sec,
        "birth": birth,
        "tau": tau,
        "death": death,
        "decay_scale": decay_scale,
        "alive_at_end": alive_at_end,
    }


def _tastes(rng: np.random.Generator, f: Frame) -> dict[str, np.ndarray]:
    """Customer-level noise: rate, order value, channel and category preferences, mood."""
    n, code, p = f.n, f.code, f.p
    shape = p("rate_shape")
    mult = np.minimum(rng.gamma(shape, 1.0 / shape), RATE_MULTIPLIER_CAP)
    lam = p("purchases_per_year") / 365.25 * mult
    sigma = p("order_sigma")
    mu = np.log(p("order_value")) - 0.5 * sigma**2 + rng.normal(0.0, AOV_CUSTOMER_SIGMA, n)
    chan_alpha = np.stack([_P[f"channel_weights_{k}"][code] for k in range(3)], axis=1)
    chan_pref = _dirichlet_rows(rng, chan_alpha * CHANNEL_CONCENTRATION)
    chan_cum = np.cumsum(chan_pref, axis=1)
    cat_pref = _dirichlet_rows(
        rng, np.broadcast_to(CATEGORY_POPULARITY * CATEGORY_CONCENTRATION, (n, len(CATEGORIES)))
    )
    cat_cum = np.cumsum(cat_pref, axis=1)
    cat_price = CATEGORY_PRICE / (CATEGORY_PRICE @ CATEGORY_POPULARITY)
    satisfaction = p("satisfaction") + rng.normal(0.0, 0.5, n)
    return {
        "mult": mult,
        "lam": lam,
        "sigma": sigma,
        "mu": mu,
        "chan_pref": chan_pref,
        "chan_cum": chan_cum,
        "cat_cum": cat_cum,
        "cat_price": cat_price,
        "satisfaction": satisfaction,
    }


def draw_latent(rng: np.random.Generator, f: Frame) -> Latent:
    """Each customer's life and tastes, in this order of draws."""
    life = _lifecycle(rng, f)
    tastes = _tastes(rng, f)
    return Latent(**life, **tastes)
