"""End-to-end peer: Polars (features) + scikit-learn + XGBoost, one process.

Usage::

    python benchmarks/peers/peer_polars.py --data DIR --as-of 2026-09-30 --horizon 90 \\
        --out polars.json

Stages (wall seconds each in ``--out``): load (the raw Parquet tables into eager Polars
DataFrames, only the columns used, low-cardinality strings as categoricals, timestamps as
int64 microseconds), features (lazy Polars queries, one ``group_by().agg`` per table and
cutoff: ``as_of - horizon`` with labels, and ``as_of``, collected together on the
streaming engine and converted to pandas at the end),
segment, train, score, write (``--scores`` Parquet). Polars uses every core by itself.

Features (bigseg's names and definitions, the same as ``peer_pandas.py``), per customer
with a purchase at or before the cutoff, customers without profiling consent dropped:

* RFM: recency_days, frequency, monetary_total, monetary_mean, monetary_max,
  tenure_days, purchase_rate, returns_rate, count_90d, spend_90d;
* channel_share_<channel> (share of purchases), category_share_<category> (share of
  spend), as per-channel/category columns summed in the same aggregation;
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

import pandas  # noqa: F401  (imported up front: to_pandas() at the end of features uses it)
import polars as pl
import pyarrow  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TABLES = {
    "tx": ("transactions", ["customer_id", "timestamp", "amount", "channel", "category"]),
    "ev": ("events", ["customer_id", "timestamp", "event_type", "page_views"]),
    "cp": ("campaigns", ["customer_id", "sent_at", "responded", "responded_at"]),
    "cu": ("customers", ["customer_id", "consent_profiling"]),
}
CATEGORICAL = ("channel", "category", "event_type")
D90 = 90 * C.DAY_US


def read(raw: Path, table: str, columns: list[str]) -> pl.DataFrame | None:
    """Only ``columns``; low-cardinality strings as categoricals; timestamps as int64
    microseconds (the cutoffs are integers)."""
    if not (raw / table).exists():
        return None
    lf = pl.scan_parquet(str(raw / table / "**" / "*.parquet"), hive_partitioning=False)
    lf = lf.select(columns)
    schema = lf.collect_schema()
    conv = []
    for c, dt in schema.items():
        if c in CATEGORICAL:
            conv.append(pl.col(c).cast(pl.Categorical))
        elif isinstance(dt, pl.Datetime):
            conv.append(pl.col(c).dt.epoch("us"))
    return lf.with_columns(conv).collect()


def load(raw: Path) -> dict:
    t = {name: read(raw, table, cols) for name, (table, cols) in TABLES.items()}
    cu = t.pop("cu")
    t["refuse"] = (
        cu.filter(~pl.col("consent_profiling").fill_null(False))["customer_id"]
        if cu is not None
        else pl.Series("customer_id", [], pl.Int64)
    )
    return t


def tx_features(tx: pl.DataFrame, cut: int) -> pl.LazyFrame:
    ts, amt, buy = pl.col("timestamp"), pl.col("amount"), pl.col("buy")
    # the channels and categories bought at this cutoff name the share columns
    p = tx.filter((ts <= cut) & (amt > 0))
    channels = p["channel"].drop_nulls().unique().cast(pl.String).sort().to_list()
    cats = p["category"].drop_nulls().unique().cast(pl.String).sort().to_list()
    buy90 = buy & (ts > cut - D90)
    ch, cat = pl.col("channel"), pl.col("category")
    t = tx.lazy().filter(ts <= cut).with_columns(buy=(amt > 0).fill_null(False))
    # the purchase-only inputs as columns (null or false elsewhere), then one group_by with
    # plain aggregations; the shares from per-channel/category columns summed alongside
    f = (
        t.with_columns(
            pl.when(buy).then(ts).alias("buy_ts"),
            pl.when(buy).then(amt).alias("buy_amt"),
            buy90.alias("buy90"),
            pl.when(buy90).then(amt).alias("buy90_amt"),
            (buy & ch.is_not_null()).alias("n_ch"),
            pl.when(buy & cat.is_not_null()).then(amt).alias("amt_cat"),
            *[(buy & (ch == c)).alias(f"channel_share_{c}") for c in channels],
            *[pl.when(buy & (cat == c)).then(amt).alias(f"category_share_{c}") for c in cats],
        )
        .group_by("customer_id")
        .agg(
            pl.col("buy_ts").max().alias("last"),
            pl.col("buy_ts").min().alias("first"),
            buy.sum().alias("frequency"),
            pl.col("buy_amt").sum().alias("gross"),
            pl.col("buy_amt").max().alias("monetary_max"),
            amt.sum().alias("monetary_total"),
            (~buy).sum().alias("n_returns"),
            pl.col("buy90").sum().alias("count_90d"),
            pl.col("buy90_amt").sum().alias("spend_90d"),
            pl.col("n_ch", "amt_cat", "^channel_share_.*$", "^category_share_.*$").sum(),
        )
        .filter(pl.col("frequency") > 0)
        .with_columns(
            pl.col("^channel_share_.*$") / pl.col("n_ch"),
            pl.col("^category_share_.*$") / pl.col("amt_cat"),
            recency_days=(cut - pl.col("last")) / C.DAY_US,
            tenure_days=(cut - pl.col("first")) / C.DAY_US,
            monetary_mean=pl.col("gross") / pl.col("frequency"),
            returns_rate=pl.col("n_returns") / pl.col("frequency"),
        )
        .with_columns(
            purchase_rate=pl.col("frequency") / (pl.col("tenure_days") + C.RATE_PRIOR_DAYS) * 365.25
        )
    )
    return f.drop("last", "first", "gross", "n_returns", "n_ch", "amt_cat")


def event_features(ev: pl.DataFrame, cut: int) -> pl.LazyFrame:
    ts = pl.col("timestamp")
    recent = ts > cut - D90
    return (
        ev.lazy()
        .filter(ts <= cut)
        .group_by("customer_id")
        .agg(
            pl.len().alias("events_total"),
            ts.max().alias("last"),
            pl.col("page_views").filter(recent).sum().alias("page_views_90d"),
            ((pl.col("event_type") == "session") & recent).sum().alias("sessions_90d"),
            ((pl.col("event_type") == "app_open") & recent).sum().alias("app_opens_90d"),
            (ts // C.DAY_US).filter(recent).n_unique().alias("active_days_90d"),
        )
        .with_columns(days_since_last_activity=(cut - pl.col("last")) / C.DAY_US)
        .drop("last")
    )


def campaign_features(cp: pl.DataFrame, cut: int) -> pl.LazyFrame:
    sent = pl.col("sent_at")
    resp = pl.col("responded").fill_null(False) & (pl.col("responded_at") <= cut).fill_null(False)
    return (
        cp.lazy()
        .filter(sent <= cut)
        .group_by("customer_id")
        .agg(
            pl.len().alias("campaign_sends"),
            (sent > cut - D90).sum().alias("campaign_sends_90d"),
            (resp.sum() / pl.len()).alias("campaign_response_rate"),
        )
    )


def features_at(t: dict, cut: int) -> pl.LazyFrame:
    f = tx_features(t["tx"], cut)
    if t["ev"] is not None:
        f = f.join(event_features(t["ev"], cut), on="customer_id", how="left")
    if t["cp"] is not None:
        f = f.join(campaign_features(t["cp"], cut), on="customer_id", how="left")
    f = f.filter(~pl.col("customer_id").is_in(t["refuse"].implode()))
    zero = [c for c in C.ZERO_WHEN_ABSENT if c in f.collect_schema()]
    return (
        f.with_columns(pl.col(zero).fill_null(0))
        .with_columns(pl.exclude("customer_id").cast(pl.Float32))
        .sort("customer_id")
    )


def labels(tx: pl.DataFrame, cut: int, horizon: int) -> pl.LazyFrame:
    ts = pl.col("timestamp")
    return (
        tx.lazy()
        .filter((ts > cut) & (ts <= cut + horizon * C.DAY_US))
        .group_by("customer_id")
        .agg((pl.col("amount") > 0).any().alias("bought"), pl.col("amount").sum().alias("spend"))
    )


def main(argv=None) -> None:
    a = C.parse_args("polars", argv)
    clock = C.Clock("polars", a)
    with clock.stage("load"):
        t = load(a.raw)
    if clock.done():
        return clock.write(("polars", "pyarrow"))
    with clock.stage("features"):
        # both cutoffs and the labels as lazy queries, run together on Polars' streaming
        # engine; to_pandas(split_blocks=True): one pandas block per column, without the
        # consolidating copy
        train_q = (
            features_at(t, a.train_cut)
            .join(
                labels(t["tx"], a.train_cut, a.horizon),
                on="customer_id",
                how="left",
                maintain_order="left",
            )
            .with_columns(
                churn=~pl.col("bought").fill_null(False),
                value=pl.col("spend").fill_null(0.0).cast(pl.Float64),
            )
            .drop("bought", "spend")
        )
        train_f, score_f = (
            f.to_pandas(split_blocks=True)
            for f in pl.collect_all([train_q, features_at(t, a.score_cut)], engine="streaming")
        )
    del t
    C.finish(clock, train_f, score_f, ("polars", "pyarrow", "pandas"))


if __name__ == "__main__":
    main()
