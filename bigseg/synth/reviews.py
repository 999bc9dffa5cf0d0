"""The reviews table: ratings from latent satisfaction, text from the phrase tables.

A returned purchase is four times as likely to get a review. Ratings drop after a
return, after the at_risk decay starts and in the ``PRE_DEATH_DECAY_DAYS`` before dropout.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.synth.arrow import RAW_SCHEMAS, _sorted, _ts
from bigseg.synth.constants import (
    CATEGORY_ITEMS,
    DAY_S,
    PRE_DEATH_DECAY_DAYS,
    REVIEW_CLOSERS,
    REVIEW_DELAY_DAYS,
    REVIEW_OPENERS,
    REVIEW_QUALITY,
)
from bigseg.synth.draws import _flat_pick
from bigseg.synth.purchases import Purchases
from bigseg.synth.state import Frame, Latent


def _ratings(
    rng: np.random.Generator, f: Frame, lat: Latent, pur: Purchases
) -> tuple[np.ndarray, ...]:
    """Owner, time, rating and category of each review up to end_date, sorted."""
    owner, returned, tau, death = pur.owner, pur.returned, lat.tau, lat.death
    rv_prob = f.p("review_prob")[owner] * np.where(returned, 4.0, 1.0)
    rv = np.nonzero(rng.random(owner.size) < rv_prob)[0]
    rv_owner = owner[rv]
    rv_sec = pur.sec[rv] + rng.integers(
        REVIEW_DELAY_DAYS[0] * DAY_S, REVIEW_DELAY_DAYS[1] * DAY_S, rv.size
    )
    rv_day = rv_sec / DAY_S
    sentiment = (
        lat.satisfaction[rv_owner]
        - 1.5 * returned[rv]
        - 1.0 * (rv_day > tau[rv_owner])
        - 1.0 * (rv_day > death[rv_owner] - PRE_DEATH_DECAY_DAYS)
        + rng.normal(0.0, 0.7, rv.size)
    )
    rating = np.clip(np.rint(3.2 + 1.1 * sentiment), 1, 5).astype(np.int8)
    w = rv_sec <= f.end_s
    rv_owner, rv_sec, rating, rv_cat = rv_owner[w], rv_sec[w], rating[w], pur.cat[rv][w]
    order = _sorted(rv_owner, rv_sec)
    return tuple(a[order] for a in (rv_owner, rv_sec, rating, rv_cat))


def reviews_table(rng: np.random.Generator, f: Frame, lat: Latent, pur: Purchases) -> pa.Table:
    """The reviews table, by customer and time."""
    rv_owner, rv_sec, rating, rv_cat = _ratings(rng, f, lat, pur)
    r0 = rating.astype(np.int64) - 1
    parts = [
        _flat_pick(rng, REVIEW_OPENERS, r0),
        "The",
        _flat_pick(rng, CATEGORY_ITEMS, rv_cat),
        _flat_pick(rng, REVIEW_QUALITY, r0),
        _flat_pick(rng, REVIEW_CLOSERS, r0),
    ]
    text = pc.binary_join_element_wise(*parts, " ")
    return pa.Table.from_arrays(
        [
            pa.array(f.ids[rv_owner]),
            _ts(f.start_us, rv_sec),
            pc.utf8_rtrim_whitespace(text),
            pa.array(rating),
        ],
        schema=RAW_SCHEMAS["reviews"],
    )
