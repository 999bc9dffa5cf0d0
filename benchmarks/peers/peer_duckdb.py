"""End-to-end peer: DuckDB (features in SQL) + scikit-learn + XGBoost, one process.

Usage::

    python benchmarks/peers/peer_duckdb.py --data DIR --as-of 2026-09-30 --horizon 90 \\
        --out duckdb.json

Stages (wall seconds each in ``--out``): load (the raw Parquet tables into DuckDB
in-memory tables, only the columns used), features (one SQL query per cutoff:
``as_of - horizon`` with labels, and ``as_of``; results fetched as pandas), segment,
train, score, write (``--scores`` Parquet). DuckDB uses every core of the machine.

Features (bigseg's names and definitions; the query is in ``_sql.py``), per customer with
a purchase at or before the cutoff, customers without profiling consent dropped:

* RFM: recency_days, frequency, monetary_total, monetary_mean, monetary_max,
  tenure_days, purchase_rate, returns_rate, count_90d, spend_90d;
* channel_share_<channel> (share of purchases), category_share_<category> (share of
  spend);
* engagement from events: events_total, days_since_last_activity, sessions_90d,
  app_opens_90d, page_views_90d, active_days_90d;
* campaigns: campaign_sends, campaign_sends_90d, campaign_response_rate.

Not computed (bigseg has them): trends, inter-purchase time, channel/category entropy
and counts, per-channel sessions, conversion rate, review sentiment, CLV (BG/NBD).
Models: see ``_common.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _sql import feature_sql  # noqa: E402

TABLES = {
    "tx": ("transactions", "customer_id, timestamp, amount, channel, category"),
    "ev": ("events", "customer_id, timestamp, event_type, page_views"),
    "cp": ("campaigns", "customer_id, sent_at, responded, responded_at"),
    "cu": ("customers", "customer_id, consent_profiling"),
}


def main(argv=None) -> None:
    import duckdb

    a = C.parse_args("duckdb", argv)
    clock = C.Clock("duckdb", a)
    con = duckdb.connect()
    con.execute(f"SET threads = {C.cores()}")
    have = set()
    with clock.stage("load"):
        for name, (table, cols) in TABLES.items():
            if (a.raw / table).exists():
                glob = str(a.raw / table / "**" / "*.parquet")
                con.execute(f"CREATE TABLE {name} AS SELECT {cols} FROM read_parquet('{glob}')")
                have.add(name)
    if clock.done():
        return clock.write(("duckdb",))
    with clock.stage("features"):
        channels = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT channel FROM tx WHERE channel IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
        cats = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT category FROM tx WHERE category IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
        train_f = con.execute(
            feature_sql(a.train_cut, "epoch_us", channels, cats, have, a.horizon)
        ).df()
        score_f = con.execute(feature_sql(a.score_cut, "epoch_us", channels, cats, have)).df()
        for f in (train_f, score_f):
            num = [c for c in f.columns if c != "customer_id"]
            f[num] = f[num].astype(np.float32)
    con.close()
    C.finish(clock, train_f, score_f, ("duckdb", "pandas"))


if __name__ == "__main__":
    main()
