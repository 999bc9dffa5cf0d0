"""Synthetic customer data with planted ground truth.

:func:`generate` writes the five raw input tables of :mod:`bigseg.schema` (customers,
transactions, events, campaigns, reviews) as Parquet, plus a ``ground_truth`` table with
the persona each customer was drawn from and what that customer really did in the
``horizon_days`` after ``end_date``. The raw tables stop at ``end_date`` (23:59:59); the
ground truth is what a churn / value model should predict from them.

Mechanics, per customer (all vectorised per chunk with NumPy):

* a persona (see :data:`PERSONAS`) sets the mean purchase rate, order value, lifetime,
  channel mix, campaign response, review probability and satisfaction;
* the purchase rate gets a gamma-distributed customer multiplier and the order value a
  lognormal customer offset;
* purchases are a Poisson process thinned by weekly and yearly seasonality (November and
  December peak) and, for ``at_risk``, by an exponential decay that starts 6-9 months
  before ``end_date``;
* a latent dropout ("death") time, exponential with a persona-specific mean (BG/NBD
  style), after which the customer never buys again. Churn is therefore visible in
  recency, frequency and trend, as in real data;
* the process runs until ``end_date + horizon_days``; rows after ``end_date`` are not
  written but define ``buys_in_horizon`` and ``spend_in_horizon``.

Each chunk of ``chunk_size`` customers is generated and written by one task with the
RNG ``np.random.default_rng([seed, chunk_index])``, so the output is byte-identical
whatever the number of workers.

Demographic attributes (gender, region) are drawn independently of the persona, so
they carry no churn or value signal; age does, through the persona's ``age_mean``. For
fairness tests, ``generate(..., bias=...)`` plants a real behavioural disparity: a share
``dropout`` of the customers in one gender or region group get an extra dropout time,
uniform in the last ``window_days`` (default 180) before ``end_date`` (not before their
signup), if that is earlier than their own. They truly stop buying, so they churn more
in the ground truth and their recency shows it. The extra draws come from a separate
RNG, ``np.random.default_rng([seed, chunk_index, 1])``; with ``bias=None`` (the default)
nothing changes and the output is byte-identical to a generator without the option.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bigseg.schema import ID, SCHEMAS

log = logging.getLogger(__name__)

__all__ = ["generate", "PERSONAS", "Persona", "GROUND_TRUTH_SCHEMA", "RAW_SCHEMAS"]

# --------------------------------------------------------------------------------------
# Persona parameters: the one table to tune.
# --------------------------------------------------------------------------------------


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

# --------------------------------------------------------------------------------------
# Other constants
# --------------------------------------------------------------------------------------

CATEGORIES = (
    "electronics", "fashion", "home", "beauty", "grocery",
    "sports", "toys", "books", "garden", "health",
)  # fmt: skip
#: price level of a category relative to the customer's typical order value
CATEGORY_PRICE = np.array([2.2, 1.1, 1.3, 0.7, 0.5, 1.1, 0.8, 0.45, 1.0, 0.7])
#: base popularity of each category (Dirichlet mean of customer preferences)
CATEGORY_POPULARITY = np.array([0.12, 0.16, 0.12, 0.10, 0.14, 0.09, 0.06, 0.07, 0.06, 0.08])
CATEGORY_CONCENTRATION = 4.0  # Dirichlet alpha sum; lower = customers focus on fewer categories
CHANNELS = ("web", "app", "store")
CHANNEL_CONCENTRATION = 6.0  # Dirichlet alpha sum around the persona's channel mix
#: relative purchase rate by weekday, Monday first
WEEKDAY_FACTOR = np.array([0.92, 0.90, 0.95, 1.00, 1.08, 1.15, 1.00])
#: relative purchase rate by month, January first (November/December peak)
MONTH_FACTOR = np.array([0.85, 0.82, 0.92, 0.95, 1.0, 0.95, 0.90, 0.95, 1.0, 1.05, 1.35, 1.55])
#: activity by hour of day (purchases and browsing)
HOUR_WEIGHTS = np.array(
    [0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 0.8, 1.6, 2.6, 3.4, 4.0, 4.6,
     5.2, 5.0, 4.6, 4.4, 4.6, 5.0, 5.6, 6.4, 6.8, 5.8, 3.8, 1.8]
)  # fmt: skip
HOUR_CDF = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
#: lognormal sigma of a customer's typical order value around the persona's
AOV_CUSTOMER_SIGMA = 0.1
#: dead customers still browse occasionally, at this fraction of their rate
POST_DEATH_BROWSE = 0.05
#: engagement decays linearly over this many days before dropout
PRE_DEATH_DECAY_DAYS = 120.0
#: share of web/app purchases that come with a logged session event
PURCHASE_SESSION_PROB = 0.45
CAMPAIGN_SEND_PROB = 0.16  # per month, per consenting customer
CAMPAIGN_CHANNELS = ("email", "sms", "push")
CAMPAIGN_CHANNEL_P = np.array([0.6, 0.2, 0.2])
CAMPAIGN_HOUR = np.array([10, 12, 18])  # send hour per channel
RETURN_DAYS = (2, 30)
REVIEW_DELAY_DAYS = (1, 21)
MAX_TX_PER_CUSTOMER = 100_000  # transaction_id = customer_id * this + sequence
RATE_MULTIPLIER_CAP = 6.0
GENDERS = ("F", "M", "X")
GENDER_P = np.array([0.49, 0.48, 0.03])
#: default window (days before end_date) of the extra dropouts planted by ``bias``
BIAS_WINDOW_DAYS = 180

REGIONS = (
    "North", "South", "East", "West", "Central",
    "Northeast", "Southwest", "Coastal",
)  # fmt: skip
REGION_P = np.array([0.14, 0.16, 0.13, 0.15, 0.12, 0.11, 0.09, 0.10])
REGION_CITIES = (
    ("Northfield", "Lakeview"), ("Riverton", "Southport"), ("Easton", "Brookhaven"),
    ("Westbury", "Sunset Hills"), ("Midvale", "Centerville"), ("Pinecrest", "Maple Falls"),
    ("Red Rock", "Dry Creek"), ("Bayside", "Harborview"),
)  # fmt: skip
FIRST_NAMES_F = (
    "Emma", "Olivia", "Sophia", "Ava", "Mia", "Isabella", "Amelia", "Harper", "Chloe",
    "Laura", "Anna", "Maria", "Sarah", "Julia", "Lena", "Nora", "Elena", "Grace",
)  # fmt: skip
FIRST_NAMES_M = (
    "Liam", "Noah", "Oliver", "James", "Lucas", "Henry", "Leo", "Daniel", "Samuel",
    "David", "Thomas", "Michael", "Adam", "Jonas", "Felix", "Marco", "Ethan", "Paul",
)  # fmt: skip
FIRST_NAMES_X = ("Alex", "Sam", "Robin", "Charlie", "Jordan", "Taylor", "Kim", "Riley")
LAST_NAMES = (
    "Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Martinez", "Lopez",
    "Wilson", "Anderson", "Taylor", "Moore", "Martin", "Lee", "Walker", "Hall",
    "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill",
    "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner",
    "Schmidt", "Novak", "Rossi", "Dubois", "Silva", "Kowalski", "Jensen", "Murphy",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
STREETS = ("Oak", "Maple", "Cedar", "Elm", "Pine", "Lake", "Hill", "Park", "Mill", "River")
STREET_SUFFIXES = ("Street", "Avenue", "Road", "Lane", "Drive", "Way")

# Review phrases, indexed by rating 1..5 (row 0 = rating 1). Sentiment lives in the words.
REVIEW_OPENERS = (
    ("Terrible experience.", "Awful, very disappointed.", "Complete waste of money.",
     "Worst purchase ever.", "Horrible quality."),
    ("Disappointed.", "Not great.", "Below expectations.", "Poor value for money.",
     "Rather unhappy with this order."),
    ("It is okay.", "Average experience.", "Decent, nothing special.",
     "Mixed feelings about this one.", "Acceptable."),
    ("Very good overall.", "Happy with this purchase.", "Good quality for the price.",
     "Nice product.", "Pleased with my order."),
    ("Absolutely love it!", "Fantastic purchase.", "Excellent quality, very happy.",
     "Best order I have made in a while.", "Great value and fast delivery."),
)  # fmt: skip
REVIEW_QUALITY = (
    ("broke on the first day.", "is defective and useless.", "never worked properly.",
     "was the wrong item and support ignored me.", "fell apart immediately."),
    ("stopped working after a week.", "feels flimsy and cheap.",
     "does not match the description.", "arrived damaged.", "is poorly made."),
    ("is fine for everyday use.", "is average.", "works but feels a bit cheap.",
     "is as expected, no more.", "arrived a little late but works."),
    ("works well.", "is solid and well made.", "does the job nicely.",
     "looks good and fits well.", "is good, with a minor flaw."),
    ("works perfectly.", "exceeded my expectations.", "is beautifully made.",
     "is exactly as described and feels premium.", "is wonderful and arrived early."),
)  # fmt: skip
REVIEW_CLOSERS = (
    ("I want a refund.", "Never ordering again.", "Avoid this shop.", "Returned it.", ""),
    ("Probably will not order again.", "Customer service was slow.", "Expected better.",
     "", ""),
    ("Might buy again.", "Not sure yet.", "", "", ""),
    ("Would recommend.", "Would buy again.", "Good service.", "", ""),
    ("Highly recommend!", "Will definitely buy again.", "Five stars.", "Thank you!", ""),
)  # fmt: skip
CATEGORY_ITEMS = (
    ("pair of headphones", "charger", "speaker"), ("jacket", "pair of jeans", "dress"),
    ("lamp", "cushion set", "kettle"), ("face cream", "perfume", "shampoo"),
    ("coffee", "olive oil", "tea selection"),
    ("pair of running shoes", "yoga mat", "water bottle"),
    ("puzzle", "board game", "toy car"), ("novel", "cookbook", "notebook"),
    ("hose", "plant pot", "garden chair"), ("vitamin pack", "thermometer", "first aid kit"),
)  # fmt: skip


def _check_constants() -> None:
    """Fail at import if the tables above were edited inconsistently."""
    for rows in (REVIEW_OPENERS, REVIEW_QUALITY, REVIEW_CLOSERS, CATEGORY_ITEMS, REGION_CITIES):
        if len({len(r) for r in rows}) != 1:
            raise ValueError("phrase tables need rows of equal length")
    if not len(REVIEW_OPENERS) == len(REVIEW_QUALITY) == len(REVIEW_CLOSERS) == 5:
        raise ValueError("review phrase tables need one row per rating 1..5")
    if (
        not len(CATEGORY_ITEMS)
        == len(CATEGORIES)
        == CATEGORY_PRICE.size
        == CATEGORY_POPULARITY.size
    ):
        raise ValueError("category tables differ in length")
    if not len(REGION_CITIES) == len(REGIONS) == REGION_P.size:
        raise ValueError("region tables differ in length")


_check_constants()

DAY_S = 86_400
US = 1_000_000

# --------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------

RAW_TABLES = ("customers", "transactions", "events", "campaigns", "reviews")


def _arrow_schema(table: str) -> pa.Schema:
    cols = SCHEMAS[table].columns
    return pa.schema([(c, pa.int64() if t == ID else t) for c, t in cols.items()])


#: Arrow schema of each generated raw table (customer_id int64), in bigseg.schema order.
RAW_SCHEMAS: dict[str, pa.Schema] = {t: _arrow_schema(t) for t in RAW_TABLES}

GROUND_TRUTH_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("persona", pa.string()),
        ("buys_in_horizon", pa.bool_()),
        ("spend_in_horizon", pa.float64()),
        ("alive_at_end", pa.bool_()),
    ]
)


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

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _seasonality(start_day: np.datetime64, n_days: int) -> np.ndarray:
    """Relative purchase rate per day (mean 1) from weekday and month factors."""
    days = start_day + np.arange(n_days)
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    s = WEEKDAY_FACTOR[dow] * MONTH_FACTOR[month]
    return s / (WEEKDAY_FACTOR.mean() * MONTH_FACTOR.mean())


def _pick(rng: np.random.Generator, cum: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """One categorical draw per row, with the per-owner cumulative probabilities ``cum``."""
    u = rng.random(owner.size)
    idx = (u[:, None] > cum[owner]).sum(axis=1)
    return np.minimum(idx, cum.shape[1] - 1)


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` (rows may differ)."""
    g = rng.gamma(alpha)
    g = np.maximum(g, 1e-12)
    return g / g.sum(axis=1, keepdims=True)


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the day, following :data:`HOUR_WEIGHTS`."""
    hour = np.searchsorted(HOUR_CDF, rng.random(n), side="right")
    return np.minimum(hour, 23) * 3600 + rng.integers(0, 3600, n)


def _take(values: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(idx))


def _flat_pick(rng: np.random.Generator, rows: tuple[tuple[str, ...], ...], row: np.ndarray):
    """For each entry of ``row``, a random phrase of ``rows[row]`` (rows of equal length)."""
    width = len(rows[0])
    flat = [s for r in rows for s in r]
    return _take(flat, row * width + rng.integers(0, width, row.size))


def _ts(start_us: int, sec: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(start_us + sec.astype(np.int64) * US, type=pa.timestamp("us"), mask=mask)


def _sorted(owner: np.ndarray, sec: np.ndarray) -> np.ndarray:
    return np.lexsort((sec, owner))


def _write(table: pa.Table, path: Path) -> None:
    # The folder is made by generate(): if the staging area was removed after a failure,
    # a straggling task fails here instead of recreating it.
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=1)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# One chunk
# --------------------------------------------------------------------------------------


def _generate_chunk(
    chunk_index: int,
    first_id: int,
    n: int,
    seed: int,
    staging: str,
    end_date: str,
    horizon_days: int,
    history_days: int,
    bias: dict | None = None,
) -> dict:
    """Generate and write customers ``first_id .. first_id + n - 1``.

    ``bias`` is the validated ``bias`` argument of :func:`generate` (or None).
    Returns a small summary: row counts per table and a few ground-truth counts.
    """
    rng = np.random.default_rng([seed, chunk_index])
    staging_p = Path(staging)
    part = f"part-{chunk_index:05d}.parquet"

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

    def p(name: str) -> np.ndarray:
        return _P[name][code]

    # ---- signup, dropout, decay -----------------------------------------------------
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

    # ---- customer-level noise ----------------------------------------------------------
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

    # ---- customers table --------------------------------------------------------------
    gender_code = rng.choice(len(GENDERS), size=n, p=GENDER_P)
    first_f = rng.integers(0, len(FIRST_NAMES_F), n)
    first_m = rng.integers(0, len(FIRST_NAMES_M), n)
    first_x = rng.integers(0, len(FIRST_NAMES_X), n)
    first_all = FIRST_NAMES_F + FIRST_NAMES_M + FIRST_NAMES_X
    first_idx = np.select(
        [gender_code == 0, gender_code == 1],
        [first_f, len(FIRST_NAMES_F) + first_m],
        len(FIRST_NAMES_F) + len(FIRST_NAMES_M) + first_x,
    )
    first = _take(first_all, first_idx)
    last = _take(LAST_NAMES, rng.integers(0, len(LAST_NAMES), n))
    id_str = pc.cast(pa.array(ids), pa.string())
    region_code = rng.choice(len(REGIONS), size=n, p=REGION_P)
    city = _flat_pick(rng, REGION_CITIES, region_code)
    email = pc.binary_join_element_wise(
        pc.utf8_lower(first),
        ".",
        pc.utf8_lower(last),
        id_str,
        "@",
        _take(EMAIL_DOMAINS, rng.integers(0, len(EMAIL_DOMAINS), n)),
        "",
    )
    phone = pc.binary_join_element_wise(
        "+1",
        pc.cast(pa.array(rng.integers(201, 990, n)), pa.string()),
        "555",
        pc.utf8_lpad(pc.cast(pa.array(ids % 10_000), pa.string()), width=4, padding="0"),
        "-",
    )
    address = pc.binary_join_element_wise(
        pc.binary_join_element_wise(
            pc.cast(pa.array(rng.integers(1, 2000, n)), pa.string()),
            _take(STREETS, rng.integers(0, len(STREETS), n)),
            _take(STREET_SUFFIXES, rng.integers(0, len(STREET_SUFFIXES), n)),
            " ",
        ),
        city,
        ", ",
    )
    age = np.clip(np.rint(rng.normal(p("age_mean"), 12.0)), 18, 90).astype(np.int16)
    consent_profiling = rng.random(n) < 0.95
    consent_marketing = rng.random(n) < 0.80
    customers = pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array(age),
            _take(GENDERS, gender_code),
            _take(REGIONS, region_code),
            _ts(start_us, signup_sec),
            pa.array(consent_profiling),
            pa.array(consent_marketing),
            pc.binary_join_element_wise(first, last, " "),
            email,
            phone,
            address,
        ],
        schema=RAW_SCHEMAS["customers"],
    )

    # ---- planted bias: extra dropouts in one group (separate RNG; none by default) --------
    if bias is not None:
        codes = gender_code if bias["attribute"] == "gender" else region_code
        values = GENDERS if bias["attribute"] == "gender" else REGIONS
        brng = np.random.default_rng([seed, chunk_index, 1])
        hit = (codes == values.index(bias["group"])) & (brng.random(n) < bias["dropout"])
        extra = H - brng.random(n) * bias["window_days"]
        death = np.where(hit, np.minimum(death, np.maximum(extra, birth)), death)
        alive_at_end = death > H

    # ---- base purchases: thinned Poisson process -------------------------------------------
    stop = np.minimum(death, E)
    length = np.clip(stop - birth, 0.0, None)
    n_cand = rng.poisson(lam * smax * length)
    owner = np.repeat(np.arange(n), n_cand)
    t = birth[owner] + rng.random(owner.size) * length[owner]
    day = np.minimum(t.astype(np.int64), E - 1)
    decay = np.exp(-np.maximum(t - tau[owner], 0.0) / decay_scale[owner])
    keep = rng.random(owner.size) * smax < season[day] * decay
    owner, day = owner[keep], day[keep]
    p_sec = day * DAY_S + _time_of_day(rng, owner.size)
    p_sec = np.maximum(p_sec, signup_sec[owner] + 300)

    # ---- campaigns ----------------------------------------------------------------------
    months = np.arange(
        start_day.astype("datetime64[M]"), end_day.astype("datetime64[M]") + 1
    )  # campaign months
    n_months = months.size
    send_day = (months.astype("datetime64[D]") + np.timedelta64(4, "D") - start_day).astype(
        np.int64
    )
    send = consent_marketing[:, None] & (rng.random((n, n_months)) < CAMPAIGN_SEND_PROB)
    c_owner, c_month = np.nonzero(send)
    c_chan = np.searchsorted(
        np.cumsum(CAMPAIGN_CHANNEL_P), rng.random(c_owner.size), side="right"
    ).clip(0, 2)
    c_sec = send_day[c_month] * DAY_S + CAMPAIGN_HOUR[c_chan] * 3600
    ok = (c_sec >= 0) & (c_sec <= end_s) & (c_sec >= signup_sec[c_owner])
    c_owner, c_month, c_chan, c_sec = c_owner[ok], c_month[ok], c_chan[ok], c_sec[ok]
    c_alive = death[c_owner] * DAY_S > c_sec
    c_engaged = np.exp(-np.maximum(c_sec / DAY_S - tau[c_owner], 0.0) / decay_scale[c_owner])
    p_resp = p("campaign_response")[c_owner] * np.where(c_alive, c_engaged, 0.1)
    responded = rng.random(c_owner.size) < p_resp
    r_sec = c_sec + np.maximum(60, rng.exponential(0.4 * DAY_S, c_owner.size)).astype(np.int64)
    responded &= r_sec <= end_s
    # a conversion is a purchase shortly after the response, only by a customer still alive
    conv_sec_all = r_sec + rng.exponential(2 * 3600, c_owner.size).astype(np.int64)
    converted = (
        responded
        & (death[c_owner] * DAY_S > conv_sec_all)
        & (rng.random(c_owner.size) < p("campaign_conversion")[c_owner])
    )
    campaign_ids = np.char.add("C", np.datetime_as_string(months))
    campaigns = pa.Table.from_arrays(
        [
            pa.array(ids[c_owner]),
            _take(list(campaign_ids), c_month),
            _ts(start_us, c_sec),
            _take(CAMPAIGN_CHANNELS, c_chan),
            pa.array(responded),
            pa.array(converted),
            _ts(start_us, r_sec, mask=~responded),
        ],
        schema=RAW_SCHEMAS["campaigns"],
    )

    # campaign conversions are purchases too
    conv = np.nonzero(converted)[0]
    conv_sec = conv_sec_all[conv]
    owner = np.concatenate([owner, c_owner[conv]])
    p_sec = np.concatenate([p_sec, conv_sec])
    n_p = owner.size

    # purchase attributes
    p_chan = _pick(rng, chan_cum, owner)
    from_campaign = np.zeros(n_p, dtype=bool)
    from_campaign[n_p - conv.size :] = True
    p_chan = np.where(from_campaign & (p_chan == 2), 0, p_chan)  # campaign -> online
    p_cat = _pick(rng, cat_cum, owner)
    amount = np.exp(mu[owner] + sigma[owner] * rng.standard_normal(n_p)) * cat_price[p_cat]
    amount = np.maximum(np.round(amount, 2), 0.5)

    # returns
    returned = rng.random(n_p) < p("return_rate")[owner]
    ret = np.nonzero(returned)[0]
    ret_sec = p_sec[ret] + rng.integers(RETURN_DAYS[0] * DAY_S, RETURN_DAYS[1] * DAY_S, ret.size)
    partial = rng.random(ret.size) < 0.2
    ret_amount = np.where(
        partial,
        np.maximum(np.round(amount[ret] * rng.uniform(0.2, 0.8, ret.size), 2), 0.01),
        amount[ret],
    )

    tx_owner = np.concatenate([owner, owner[ret]])
    tx_sec = np.concatenate([p_sec, ret_sec])
    tx_amount = np.concatenate([amount, -ret_amount])
    tx_chan = np.concatenate([p_chan, p_chan[ret]])
    tx_cat = np.concatenate([p_cat, p_cat[ret]])

    # ground truth from the horizon window (end, end + horizon]
    hend_s = end_s + horizon_days * DAY_S
    in_h = (tx_sec > end_s) & (tx_sec <= hend_s)
    buys = np.bincount(tx_owner[in_h & (tx_amount > 0)], minlength=n) > 0
    spend = np.round(np.bincount(tx_owner[in_h], weights=tx_amount[in_h], minlength=n), 2)
    ground_truth = pa.Table.from_arrays(
        [
            pa.array(ids),
            _take(PERSONA_NAMES, code),
            pa.array(buys),
            pa.array(spend),
            pa.array(alive_at_end),
        ],
        schema=GROUND_TRUTH_SCHEMA,
    )

    # transactions table: only up to end_date
    w = tx_sec <= end_s
    tx_owner, tx_sec, tx_amount, tx_chan, tx_cat = (
        a[w] for a in (tx_owner, tx_sec, tx_amount, tx_chan, tx_cat)
    )
    order = _sorted(tx_owner, tx_sec)
    tx_owner, tx_sec, tx_amount, tx_chan, tx_cat = (
        a[order] for a in (tx_owner, tx_sec, tx_amount, tx_chan, tx_cat)
    )
    counts = np.bincount(tx_owner, minlength=n)
    if counts.max(initial=0) >= MAX_TX_PER_CUSTOMER:
        raise RuntimeError("too many transactions for one customer; lower the rates")
    seq = np.arange(tx_owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    transactions = pa.Table.from_arrays(
        [
            pa.array(ids[tx_owner]),
            _ts(start_us, tx_sec),
            pa.array(tx_amount),
            pa.array(ids[tx_owner] * MAX_TX_PER_CUSTOMER + seq),
            _take(CHANNELS, tx_chan),
            _take(CATEGORIES, tx_cat),
        ],
        schema=RAW_SCHEMAS["transactions"],
    )
    del tx_owner, tx_sec, tx_amount, tx_chan, tx_cat, order, seq

    # ---- events ----------------------------------------------------------------------------
    # sessions that led to an online purchase
    online = np.nonzero((p_chan < 2) & (p_sec <= end_s))[0]
    online = online[rng.random(online.size) < PURCHASE_SESSION_PROB]
    e1_owner = owner[online]
    e1_sec = np.maximum(
        p_sec[online] - rng.integers(60, 3600, online.size),
        np.maximum(signup_sec[e1_owner], 0),  # not before signup nor the window start
    )
    e1_type = np.where(p_chan[online] == 1, 2, 0)  # app -> app_open, web -> session
    e1_views = 2 + rng.poisson(5.0, online.size)
    # browsing not tied to a purchase; decays before dropout, rare after it
    b_rate = p("browse_per_year") / 365.25 * mult
    b_len = np.clip(H - birth, 0.0, None)
    nb = rng.poisson(b_rate * b_len)
    b_owner = np.repeat(np.arange(n), nb)
    bt = birth[b_owner] + rng.random(b_owner.size) * b_len[b_owner]
    d_o = death[b_owner]
    factor = np.clip((d_o - bt) / PRE_DEATH_DECAY_DAYS, 0.1, 1.0)
    factor = np.where(bt > d_o, POST_DEATH_BROWSE, factor)
    factor *= np.maximum(np.exp(-np.maximum(bt - tau[b_owner], 0.0) / decay_scale[b_owner]), 0.1)
    keep = rng.random(b_owner.size) < factor
    b_owner, bt = b_owner[keep], bt[keep]
    b_sec = np.minimum(bt.astype(np.int64), H - 1) * DAY_S + _time_of_day(rng, b_owner.size)
    b_sec = np.maximum(b_sec, signup_sec[b_owner] + 60)
    app_share = chan_pref[:, 1] / (chan_pref[:, 0] + chan_pref[:, 1])
    is_app = rng.random(b_owner.size) < app_share[b_owner]
    b_type = np.where(is_app, 2, np.where(rng.random(b_owner.size) < 0.5, 0, 1))
    b_views = np.where(
        b_type == 0,
        1 + rng.poisson(3.0, b_owner.size),
        np.where(b_type == 2, 1 + rng.poisson(2.0, b_owner.size), 1),
    )
    ev_owner = np.concatenate([e1_owner, b_owner])
    ev_sec = np.concatenate([e1_sec, b_sec])
    ev_type = np.concatenate([e1_type, b_type])
    ev_views = np.concatenate([e1_views, b_views]).astype(np.int32)
    w = ev_sec <= end_s
    order = _sorted(ev_owner[w], ev_sec[w])
    ev_owner, ev_sec, ev_type, ev_views = (
        a[w][order] for a in (ev_owner, ev_sec, ev_type, ev_views)
    )
    events = pa.Table.from_arrays(
        [
            pa.array(ids[ev_owner]),
            _ts(start_us, ev_sec),
            _take(("session", "page_view", "app_open"), ev_type),
            _take(("web", "web", "app"), ev_type),
            pa.array(ev_views),
        ],
        schema=RAW_SCHEMAS["events"],
    )
    del ev_owner, ev_sec, ev_type, ev_views, b_owner, bt, order

    # ---- reviews ----------------------------------------------------------------------------
    rv_prob = p("review_prob")[owner] * np.where(returned, 4.0, 1.0)
    rv = np.nonzero(rng.random(n_p) < rv_prob)[0]
    rv_owner = owner[rv]
    rv_sec = p_sec[rv] + rng.integers(
        REVIEW_DELAY_DAYS[0] * DAY_S, REVIEW_DELAY_DAYS[1] * DAY_S, rv.size
    )
    rv_day = rv_sec / DAY_S
    sentiment = (
        satisfaction[rv_owner]
        - 1.5 * returned[rv]
        - 1.0 * (rv_day > tau[rv_owner])
        - 1.0 * (rv_day > death[rv_owner] - PRE_DEATH_DECAY_DAYS)
        + rng.normal(0.0, 0.7, rv.size)
    )
    rating = np.clip(np.rint(3.2 + 1.1 * sentiment), 1, 5).astype(np.int8)
    w = rv_sec <= end_s
    rv_owner, rv_sec, rating, rv_cat = rv_owner[w], rv_sec[w], rating[w], p_cat[rv][w]
    order = _sorted(rv_owner, rv_sec)
    rv_owner, rv_sec, rating, rv_cat = (a[order] for a in (rv_owner, rv_sec, rating, rv_cat))
    r0 = rating.astype(np.int64) - 1
    parts = [
        _flat_pick(rng, REVIEW_OPENERS, r0),
        "The",
        _flat_pick(rng, CATEGORY_ITEMS, rv_cat),
        _flat_pick(rng, REVIEW_QUALITY, r0),
        _flat_pick(rng, REVIEW_CLOSERS, r0),
    ]
    text = pc.binary_join_element_wise(*parts, " ")
    reviews = pa.Table.from_arrays(
        [
            pa.array(ids[rv_owner]),
            _ts(start_us, rv_sec),
            pc.utf8_rtrim_whitespace(text),
            pa.array(rating),
        ],
        schema=RAW_SCHEMAS["reviews"],
    )

    tables = {
        "customers": customers,
        "transactions": transactions,
        "events": events,
        "campaigns": campaigns,
        "reviews": reviews,
    }
    for name, table in tables.items():
        _write(table, staging_p / "raw" / name / part)
    _write(ground_truth, staging_p / "ground_truth" / part)
    rows = {name: table.num_rows for name, table in tables.items()}
    rows["ground_truth"] = ground_truth.num_rows
    return {
        "chunk": chunk_index,
        "rows": rows,
        "buys_in_horizon": int(buys.sum()),
        "alive_at_end": int(alive_at_end.sum()),
        "persona_counts": np.bincount(code, minlength=len(PERSONA_NAMES)).tolist(),
    }


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def _non_empty_dir(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _check_bias(bias: dict | None, history_days: int) -> dict | None:
    """Validate :func:`generate`'s ``bias`` and fill in ``window_days``."""
    if bias is None:
        return None
    known = {"attribute", "group", "dropout", "window_days"}
    if not isinstance(bias, dict) or not {"attribute", "group", "dropout"} <= set(bias):
        raise ValueError("bias needs the keys 'attribute', 'group' and 'dropout'")
    if set(bias) - known:
        raise ValueError(f"unknown bias keys: {sorted(set(bias) - known)}")
    values = {"gender": GENDERS, "region": REGIONS}.get(bias["attribute"])
    if values is None:
        raise ValueError(f"bias attribute must be 'gender' or 'region', got {bias['attribute']!r}")
    if bias["group"] not in values:
        raise ValueError(f"bias group {bias['group']!r} is not one of {values}")
    dropout = float(bias["dropout"])
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"bias dropout must be in [0, 1], got {dropout}")
    window = int(bias.get("window_days", BIAS_WINDOW_DAYS))
    if not 1 <= window <= history_days:
        raise ValueError(f"bias window_days must be in [1, history_days], got {window}")
    return {
        "attribute": bias["attribute"],
        "group": bias["group"],
        "dropout": dropout,
        "window_days": window,
    }


def generate(
    n_customers: int,
    out: str | Path,
    seed: int = 0,
    *,
    client=None,
    chunk_size: int = 50_000,
    end_date: str = "2026-09-30",
    horizon_days: int = 90,
    history_days: int = 1095,
    bias: dict | None = None,
) -> dict:
    """Generate a synthetic customer data set with planted ground truth.

    Writes ``out/raw/<table>/part-NNNNN.parquet`` for the tables ``customers``,
    ``transactions``, ``events``, ``campaigns`` and ``reviews`` (columns and types as in
    :mod:`bigseg.schema`, ``customer_id`` int64) and ``out/ground_truth/part-NNNNN.parquet``
    (``customer_id``, ``persona``, ``buys_in_horizon``, ``spend_in_horizon``,
    ``alive_at_end``). Everything is first written to ``out/.staging-<uuid>`` and renamed
    into place at the end, so a failed run leaves no partial data set.

    Parameters
    ----------
    n_customers : int
        Number of customers; their ids are ``1 .. n_customers`` (int64).
    out : str or Path
        Output directory. ``out/raw`` and ``out/ground_truth`` must not exist or be empty.
    seed : int, default 0
        Random seed. Chunk ``i`` uses ``np.random.default_rng([seed, i])``, so the output
        depends only on ``seed``, ``n_customers``, ``chunk_size`` and the dates, not on
        the number of workers.
    client : distributed.Client, optional
        Dask client to run the chunks on. If None, the active client is used when there
        is one; otherwise chunks run serially in this process. Only small summaries are
        sent back; each task writes its own files, so ``out`` must be on a file system
        that all workers share.
    chunk_size : int, default 50_000
        Customers per task. Memory use is bounded by this.
    end_date : str, default "2026-09-30"
        Last day of the history (inclusive, up to 23:59:59). No raw row is later.
    horizon_days : int, default 90
        Length of the prediction window after ``end_date`` used for the ground truth.
    history_days : int, default 1095
        History window: purchases, events, campaigns and reviews fall in
        ``[end_date - history_days, end_date]``. Signup dates may be older.
    bias : dict, optional
        Plant a churn disparity for fairness tests, e.g.
        ``{"attribute": "gender", "group": "F", "dropout": 0.4}``: each customer of
        that group (``attribute`` is ``"gender"`` or ``"region"``) drops out, with
        probability ``dropout`` (0 .. 1), at a time uniform in the last ``window_days``
        (optional key, default 180, at most ``history_days``) before ``end_date`` and
        not before signup, unless already gone by then. Such customers buy nothing
        after that time, so they churn in the ground truth and look recent-inactive in
        the raw data. Other customers keep their attributes and the distribution of
        their behaviour, not their exact random draws (the shared stream shifts). None
        (the default) leaves the output unchanged, byte for byte.

    Returns
    -------
    dict
        ``n_customers``, ``n_chunks``, ``rows`` (rows per table, ``ground_truth``
        included), ``persona_counts``, ``buys_in_horizon`` (count), ``alive_at_end``
        (count), ``end_date``, ``out``, ``seconds`` and ``bias`` (the normalised
        ``bias`` argument, or None).

    Raises
    ------
    ValueError
        If an argument is out of range, or ``out/raw`` (or ``out/ground_truth``) already
        exists and is not empty: delete it first.
    """
    t0 = time.perf_counter()
    if n_customers < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if horizon_days < 1 or history_days < 1:
        raise ValueError("horizon_days and history_days must be >= 1")
    np.datetime64(end_date, "D")  # validates the date string
    bias = _check_bias(bias, history_days)
    out = Path(out)
    for sub in ("raw", "ground_truth"):
        if _non_empty_dir(out / sub):
            raise ValueError(
                f"{out / sub} already exists and is not empty; delete it first "
                "(synth.generate never overwrites a data set)"
            )
    out.mkdir(parents=True, exist_ok=True)
    staging = out.absolute() / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    for sub in [f"raw/{t}" for t in RAW_TABLES] + ["ground_truth"]:
        (staging / sub).mkdir(parents=True)

    n_chunks = -(-n_customers // chunk_size)
    starts = [1 + i * chunk_size for i in range(n_chunks)]
    sizes = [min(chunk_size, n_customers - (s - 1)) for s in starts]
    args = (seed, str(staging), end_date, horizon_days, history_days, bias)

    if client is None:
        try:
            from distributed import get_client

            client = get_client()
        except (ValueError, ImportError):
            client = None

    log.info(
        "generating %d customers in %d chunks into %s (%s)",
        n_customers,
        n_chunks,
        out,
        "dask" if client is not None else "in-process",
    )
    try:
        if client is not None:
            n = n_chunks
            futures = client.map(
                _generate_chunk,
                list(range(n_chunks)),
                starts,
                sizes,
                *([a] * n for a in args),
                pure=False,
            )
            try:
                summaries = client.gather(futures)
            except BaseException:
                client.cancel(futures)
                raise
        else:
            summaries = []
            for i in range(n_chunks):
                summaries.append(_generate_chunk(i, starts[i], sizes[i], *args))
                log.debug("chunk %d/%d done", i + 1, n_chunks)
        moved: list[tuple[Path, Path]] = []
        try:
            for sub in ("raw", "ground_truth"):
                dst = out / sub
                if dst.exists():
                    dst.rmdir()  # empty (checked above)
                os.replace(staging / sub, dst)
                moved.append((dst, staging / sub))
        except BaseException:
            for dst, src in moved:  # roll back so no half data set stays
                os.replace(dst, src)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    rows: dict[str, int] = {}
    for s in summaries:
        for k, v in s["rows"].items():
            rows[k] = rows.get(k, 0) + v
    persona_counts = np.sum([s["persona_counts"] for s in summaries], axis=0)
    seconds = time.perf_counter() - t0
    summary = {
        "n_customers": n_customers,
        "n_chunks": n_chunks,
        "rows": rows,
        "persona_counts": dict(zip(PERSONA_NAMES, (int(c) for c in persona_counts), strict=True)),
        "buys_in_horizon": sum(s["buys_in_horizon"] for s in summaries),
        "alive_at_end": sum(s["alive_at_end"] for s in summaries),
        "end_date": str(np.datetime64(end_date, "D")),
        "out": str(out),
        "seconds": round(seconds, 3),
        "bias": bias,
    }
    log.info("generated %s in %.1f s", rows, seconds)
    return summary
