"""End-to-end peer: pandas + scikit-learn + XGBoost, one process, vectorised.

Usage::

    python benchmarks/peers/peer_pandas.py --data DIR --as-of 2026-09-30 --horizon 90 \\
        --out pandas.json

Stages (wall seconds each in ``--out``): load (the raw Parquet tables into pandas, only
the columns used, low-cardinality strings as categoricals), features (at ``as_of - horizon``
with labels, and at ``as_of``), segment, train, score, write (``--scores`` Parquet).

Features (bigseg's names and definitions, :mod:`bigseg.features`), per customer with a
purchase at or before the cutoff, customers without profiling consent dropped:

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
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def read(raw: Path, table: str, columns: list[str], categorical=()) -> pd.DataFrame | None:
    """Only ``columns``; low-cardinality strings dictionary-encoded in Arrow (pandas gets
    categoricals without a per-row conversion); timestamps as int64 microseconds."""
    if not (raw / table).exists():
        return None
    t = pq.read_table(raw / table, columns=columns)
    for i, f in enumerate(t.schema):
        if f.name in categorical:
            t = t.set_column(i, f.name, pc.dictionary_encode(t.column(i)))
        elif pa.types.is_timestamp(f.type):
            t = t.set_column(i, f.name, t.column(i).cast(pa.timestamp("us")).cast(pa.int64()))
    return t.to_pandas()


def load(raw: Path) -> dict:
    t = {
        "tx": read(
            raw,
            "transactions",
            ["customer_id", "timestamp", "amount", "channel", "category"],
            ("channel", "category"),
        ),
        "ev": read(
            raw, "events", ["customer_id", "timestamp", "event_type", "page_views"], ("event_type",)
        ),
        "cp": read(raw, "campaigns", ["customer_id", "sent_at", "responded", "responded_at"]),
        "cu": read(raw, "customers", ["customer_id", "consent_profiling"]),
    }
    cu = t.pop("cu")
    t["refuse"] = (
        cu.loc[~cu["consent_profiling"].fillna(False).astype(bool), "customer_id"]
        if cu is not None
        else pd.Series([], dtype=np.int64)
    )
    return t


def tx_features(tx: pd.DataFrame, cut: int) -> pd.DataFrame:
    t = tx[tx["timestamp"] <= cut]
    buy = t["amount"] > 0
    p = t[buy]
    g = p.groupby("customer_id", sort=False)
    f = g.agg(
        last=("timestamp", "max"),
        first=("timestamp", "min"),
        frequency=("amount", "size"),
        gross=("amount", "sum"),
        monetary_max=("amount", "max"),
    )
    f["monetary_total"] = t.groupby("customer_id", sort=False)["amount"].sum()
    f["n_returns"] = (~buy).groupby(t["customer_id"], sort=False).sum()
    f["recency_days"] = (cut - f.pop("last")) / C.DAY_US
    f["tenure_days"] = (cut - f.pop("first")) / C.DAY_US
    f["monetary_mean"] = f.pop("gross") / f["frequency"]
    f["purchase_rate"] = f["frequency"] / (f["tenure_days"] + C.RATE_PRIOR_DAYS) * 365.25
    f["returns_rate"] = f.pop("n_returns").reindex(f.index).fillna(0) / f["frequency"]
    recent = p[p["timestamp"] > cut - 90 * C.DAY_US].groupby("customer_id", sort=False)["amount"]
    f["count_90d"] = recent.size().reindex(f.index).fillna(0)
    f["spend_90d"] = recent.sum().reindex(f.index).fillna(0)
    ch = p.groupby(["customer_id", "channel"], observed=True).size().unstack(fill_value=0)
    ch = ch.div(ch.sum(axis=1), axis=0).add_prefix("channel_share_")
    cat = (
        p.groupby(["customer_id", "category"], observed=True)["amount"].sum().unstack(fill_value=0)
    )
    cat = cat.div(cat.sum(axis=1), axis=0).add_prefix("category_share_")
    return f.join(ch).join(cat)


def event_features(ev: pd.DataFrame, cut: int) -> pd.DataFrame:
    e = ev[ev["timestamp"] <= cut]
    f = e.groupby("customer_id", sort=False).agg(
        events_total=("timestamp", "size"), last=("timestamp", "max")
    )
    f["days_since_last_activity"] = (cut - f.pop("last")) / C.DAY_US
    r = e[e["timestamp"] > cut - 90 * C.DAY_US]
    g = r.groupby("customer_id", sort=False)
    f["page_views_90d"] = g["page_views"].sum()
    f["sessions_90d"] = (r["event_type"] == "session").groupby(r["customer_id"], sort=False).sum()
    f["app_opens_90d"] = (r["event_type"] == "app_open").groupby(r["customer_id"], sort=False).sum()
    days = pd.DataFrame(
        {"customer_id": r["customer_id"].to_numpy(), "day": r["timestamp"].to_numpy() // C.DAY_US}
    ).drop_duplicates()
    f["active_days_90d"] = days.groupby("customer_id", sort=False).size()
    return f


def campaign_features(cp: pd.DataFrame, cut: int) -> pd.DataFrame:
    c = cp[cp["sent_at"] <= cut]
    resp = c["responded"].fillna(False).astype(bool) & (c["responded_at"] <= cut)
    g = c.groupby("customer_id", sort=False)
    f = g.size().to_frame("campaign_sends")
    f["campaign_sends_90d"] = (
        (c["sent_at"] > cut - 90 * C.DAY_US).groupby(c["customer_id"], sort=False).sum()
    )
    f["campaign_response_rate"] = (
        resp.groupby(c["customer_id"], sort=False).sum() / f["campaign_sends"]
    )
    return f


def features_at(t: dict, cut: int) -> pd.DataFrame:
    f = tx_features(t["tx"], cut)
    if t["ev"] is not None:
        f = f.join(event_features(t["ev"], cut))
    if t["cp"] is not None:
        f = f.join(campaign_features(t["cp"], cut))
    for c in C.ZERO_WHEN_ABSENT:
        if c in f.columns:
            f[c] = f[c].fillna(0)
    f = f[~f.index.isin(t["refuse"])]
    return f.astype(np.float32).reset_index()


def labels(tx: pd.DataFrame, cut: int, horizon: int) -> pd.DataFrame:
    w = tx[(tx["timestamp"] > cut) & (tx["timestamp"] <= cut + horizon * C.DAY_US)]
    g = w.groupby("customer_id", sort=False)
    return pd.DataFrame(
        {"bought": (w["amount"] > 0).groupby(w["customer_id"]).any(), "spend": g["amount"].sum()}
    )


def main(argv=None) -> None:
    a = C.parse_args("pandas", argv)
    clock = C.Clock("pandas", a)
    with clock.stage("load"):
        t = load(a.raw)
    if clock.done():
        return clock.write(("pandas", "pyarrow"))
    with clock.stage("features"):
        train_f = features_at(t, a.train_cut)
        lab = labels(t["tx"], a.train_cut, a.horizon)
        train_f = train_f.join(lab, on="customer_id")
        train_f["churn"] = ~train_f.pop("bought").fillna(False).astype(bool)
        train_f["value"] = train_f.pop("spend").fillna(0.0)
        score_f = features_at(t, a.score_cut)
    del t
    C.finish(clock, train_f, score_f, ("pandas", "pyarrow"))


if __name__ == "__main__":
    main()
