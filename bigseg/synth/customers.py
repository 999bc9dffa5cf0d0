"""The customers table: demographics, consents and made-up contact details.

Gender and region are drawn independently of the persona, so they carry no churn or
value signal; age follows the persona's ``age_mean``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.synth.arrow import RAW_SCHEMAS, _take, _ts
from bigseg.synth.constants import (
    EMAIL_DOMAINS,
    FIRST_NAMES_F,
    FIRST_NAMES_M,
    FIRST_NAMES_X,
    GENDER_P,
    GENDERS,
    LAST_NAMES,
    REGION_CITIES,
    REGION_P,
    REGIONS,
    STREET_SUFFIXES,
    STREETS,
)
from bigseg.synth.draws import _flat_pick
from bigseg.synth.state import Frame


def _names(rng: np.random.Generator, n: int) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """Gender code, first name (by gender) and last name of each customer."""
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
    return gender_code, first, last


def _contact(
    rng: np.random.Generator, ids: np.ndarray, first: pa.Array, last: pa.Array
) -> tuple[np.ndarray, pa.Array, pa.Array, pa.Array]:
    """Region code, email, phone and address (in a city of the region) of each customer."""
    n = ids.size
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
    return region_code, email, phone, address


def customers_table(
    rng: np.random.Generator, f: Frame, signup_sec: np.ndarray
) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]:
    """The customers table, and the gender code, region code and marketing consent of
    each customer (the bias and the campaigns depend on them)."""
    n, ids = f.n, f.ids
    gender_code, first, last = _names(rng, n)
    region_code, email, phone, address = _contact(rng, ids, first, last)
    age = np.clip(np.rint(rng.normal(f.p("age_mean"), 12.0)), 18, 90).astype(np.int16)
    consent_profiling = rng.random(n) < 0.95
    consent_marketing = rng.random(n) < 0.80
    customers = pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array(age),
            _take(GENDERS, gender_code),
            _take(REGIONS, region_code),
            _ts(f.start_us, signup_sec),
            pa.array(consent_profiling),
            pa.array(consent_marketing),
            pc.binary_join_element_wise(first, last, " "),
            email,
            phone,
            address,
        ],
        schema=RAW_SCHEMAS["customers"],
    )
    return customers, gender_code, region_code, consent_marketing
