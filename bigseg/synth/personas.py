"""Persona parameters of the synthetic generator: the one table to tune.

Each customer is drawn from one persona; :data:`PERSONAS` sets its behaviour and
``share`` how many customers it gets. :data:`_P` holds the same numbers as arrays indexed
by persona code, for the vectorised chunk generator.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Persona:
    """Behaviour parameters of one persona.

    Rates are per year, times in days. ``channel_weights`` are (web, app, store).
    """

    share: float  # fraction of customers
    purchases_per_year: float  # mean purchase rate while alive (before seasonality)
    rate_shape: float  # gamma shape of the customer rate multiplier (lower = noisier)
    order_value: float  # mean order value (currency units)
    order_sigma: float  # lognormal sigma of a single order around the customer mean
    lifetime_days: float  # mean exponential time to dropout from activity start
    signup_days_before_end: tuple[int, int]  # signup drawn uniform in this range
    channel_weights: tuple[float, float, float]  # web, app, store
    browse_per_year: float  # browsing events (not tied to a purchase)
    campaign_response: float  # P(respond) to a campaign while alive
    campaign_conversion: float  # P(convert | responded)
    return_rate: float  # P(a purchase is returned)
    review_prob: float  # P(a purchase gets a review)
    satisfaction: float  # latent review sentiment (~ -1 .. +1.5)
    age_mean: float
    # at_risk style decay: rate decays from a time drawn in this range (days before end)
    decay_days_before_end: tuple[int, int] | None = None
    decay_scale_days: float = 1.0  # e-folding time of that decay
    post_decay_lifetime_days: float = 0.0  # mean dropout time after decay start


#: Persona table. Shares must sum to 1.
PERSONAS: dict[str, Persona] = {
    "champions": Persona(
        share=0.09,
        purchases_per_year=30.0,
        rate_shape=40.0,
        order_value=110.0,
        order_sigma=0.25,
        lifetime_days=40000.0,
        signup_days_before_end=(200, 1800),
        channel_weights=(0.40, 0.45, 0.15),
        browse_per_year=5.0,
        campaign_response=0.18,
        campaign_conversion=0.45,
        return_rate=0.03,
        review_prob=0.035,
        satisfaction=1.3,
        age_mean=38.0,
    ),
    "loyal": Persona(
        share=0.18,
        purchases_per_year=10.0,
        rate_shape=40.0,
        order_value=40.0,
        order_sigma=0.25,
        lifetime_days=30000.0,
        signup_days_before_end=(200, 1800),
        channel_weights=(0.35, 0.25, 0.40),
        browse_per_year=2.5,
        campaign_response=0.10,
        campaign_conversion=0.35,
        return_rate=0.03,
        review_prob=0.025,
        satisfaction=0.9,
        age_mean=46.0,
    ),
    "big_spenders": Persona(
        share=0.07,
        purchases_per_year=2.0,
        rate_shape=40.0,
        order_value=600.0,
        order_sigma=0.25,
        lifetime_days=30000.0,
        signup_days_before_end=(200, 1800),
        channel_weights=(0.45, 0.10, 0.45),
        browse_per_year=2.5,
        campaign_response=0.06,
        campaign_conversion=0.30,
        return_rate=0.06,
        review_prob=0.06,
        satisfaction=0.6,
        age_mean=50.0,
    ),
    "new": Persona(
        share=0.11,
        purchases_per_year=8.0,
        rate_shape=6.0,
        order_value=48.0,
        order_sigma=0.25,
        lifetime_days=450.0,
        signup_days_before_end=(1, 120),
        channel_weights=(0.60, 0.28, 0.12),
        browse_per_year=7.0,
        campaign_response=0.14,
        campaign_conversion=0.30,
        return_rate=0.04,
        review_prob=0.05,
        satisfaction=0.5,
        age_mean=31.0,
    ),
    "at_risk": Persona(
        share=0.15,
        purchases_per_year=12.0,
        rate_shape=40.0,
        order_value=150.0,
        order_sigma=0.25,
        lifetime_days=1e9,
        signup_days_before_end=(500, 1800),
        channel_weights=(0.40, 0.20, 0.40),
        browse_per_year=3.0,
        campaign_response=0.05,
        campaign_conversion=0.20,
        return_rate=0.05,
        review_prob=0.025,
        satisfaction=-0.2,
        age_mean=42.0,
        decay_days_before_end=(180, 330),
        decay_scale_days=30.0,
        post_decay_lifetime_days=90.0,
    ),
    "hibernating": Persona(
        share=0.25,
        purchases_per_year=1.5,
        rate_shape=8.0,
        order_value=25.0,
        order_sigma=0.25,
        lifetime_days=300.0,
        signup_days_before_end=(500, 1800),
        channel_weights=(0.35, 0.10, 0.55),
        browse_per_year=1.0,
        campaign_response=0.02,
        campaign_conversion=0.10,
        return_rate=0.05,
        review_prob=0.04,
        satisfaction=-0.4,
        age_mean=48.0,
    ),
    "bargain_hunters": Persona(
        share=0.15,
        purchases_per_year=20.0,
        rate_shape=40.0,
        order_value=10.0,
        order_sigma=0.25,
        lifetime_days=30000.0,
        signup_days_before_end=(200, 1800),
        channel_weights=(0.45, 0.45, 0.10),
        browse_per_year=5.0,
        campaign_response=0.5,
        campaign_conversion=0.55,
        return_rate=0.04,
        review_prob=0.02,
        satisfaction=0.3,
        age_mean=35.0,
    ),
}

PERSONA_NAMES: tuple[str, ...] = tuple(PERSONAS)


def _persona_arrays() -> dict[str, np.ndarray]:
    """Persona parameters as arrays indexed by persona code.

    Tuple fields become one array per component, named ``<field>_<k>``; a missing
    decay window becomes ``-1``.
    """
    out: dict[str, np.ndarray] = {}
    for f in fields(Persona):
        vals = [getattr(PERSONAS[p], f.name) for p in PERSONA_NAMES]
        if f.name == "decay_days_before_end":
            vals = [v if v is not None else (-1, -1) for v in vals]
        arr = np.asarray(vals, dtype=np.float64)
        if arr.ndim == 2:
            for k in range(arr.shape[1]):
                out[f"{f.name}_{k}"] = arr[:, k]
        else:
            out[f.name] = arr
    shares = out["share"]
    if not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"persona shares sum to {shares.sum()}, not 1")
    return out


_P = _persona_arrays()
