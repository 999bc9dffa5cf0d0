"""One chunk of customers: every table drawn from one RNG, then written.

The tables are drawn in a fixed order from ``np.random.default_rng([seed, chunk_index])``;
each step consumes the draws its predecessor left, so that order is part of the output.
Changing it, or any draw inside a step, changes every later table of the chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bigseg.synth.arrow import _write
from bigseg.synth.bias import plant_bias
from bigseg.synth.campaigns import campaigns_table
from bigseg.synth.customers import customers_table
from bigseg.synth.events import events_table
from bigseg.synth.personas import PERSONA_NAMES
from bigseg.synth.purchases import base_purchases, ledger_tables, purchases
from bigseg.synth.reviews import reviews_table
from bigseg.synth.state import draw_latent, make_frame


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
    f = make_frame(rng, first_id, n, end_date, horizon_days, history_days)
    lat = draw_latent(rng, f)
    customers, gender_code, region_code, consent_marketing = customers_table(rng, f, lat.signup_sec)
    if bias is not None:  # draws from its own RNG, not from rng
        lat = plant_bias(bias, seed, chunk_index, f, lat, gender_code, region_code)
    owner, p_sec = base_purchases(rng, f, lat)
    campaigns, conv_owner, conv_sec = campaigns_table(rng, f, lat, consent_marketing)
    pur = purchases(rng, f, lat, owner, p_sec, conv_owner, conv_sec)
    del owner, p_sec  # pur holds concatenated copies
    ground_truth, buys, transactions = ledger_tables(f, lat.alive_at_end, pur)
    events = events_table(rng, f, lat, pur)
    reviews = reviews_table(rng, f, lat, pur)

    tables = {
        "customers": customers,
        "transactions": transactions,
        "events": events,
        "campaigns": campaigns,
        "reviews": reviews,
    }
    staging_p = Path(staging)
    part = f"part-{chunk_index:05d}.parquet"
    for name, table in tables.items():
        _write(table, staging_p / "raw" / name / part)
    _write(ground_truth, staging_p / "ground_truth" / part)
    rows = {name: table.num_rows for name, table in tables.items()}
    rows["ground_truth"] = ground_truth.num_rows
    return {
        "chunk": chunk_index,
        "rows": rows,
        "buys_in_horizon": int(buys.sum()),
        "alive_at_end": int(lat.alive_at_end.sum()),
        "persona_counts": np.bincount(f.code, minlength=len(PERSONA_NAMES)).tolist(),
    }
