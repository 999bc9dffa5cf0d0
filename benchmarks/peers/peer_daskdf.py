"""End-to-end peer: dask.dataframe (features) + scikit-learn + XGBoost, on a local Dask
cluster.

Usage::

    python benchmarks/peers/peer_daskdf.py --data DIR --as-of 2026-09-30 --horizon 90 \\
        --out daskdf.json

Stages (wall seconds each in ``--out``): cluster_start (a ``distributed.LocalCluster``,
one single-threaded worker process per core, and its ``Client``), load (``dd.read_parquet``
of the raw tables, only the columns used, timestamps as int64 microseconds, persisted on
the workers), features (dask.dataframe groupby-aggregations at ``as_of - horizon`` with
labels, and at ``as_of``, all computed in one ``dask.compute`` to per-customer pandas
frames; the per-customer shares are pivoted in pandas), segment, train, score, write
(``--scores`` Parquet).

Features (bigseg's names and definitions, the same as ``peer_pandas.py``), per customer
with a purchase at or before the cutoff, customers without profiling consent dropped:

* RFM: recency_days, frequency, monetary_total, monetary_mean, monetary_max,
  tenure_days, purchase_rate, returns_rate, count_90d, spend_90d;
* channel_share_<channel> (share of purchases), category_share_<category> (share of
  spend);
* engagement from events: events_total, days_since_last_activity, sessions_90d,
  app_opens_90d, page_views_90d, active_days_90d;
* campaigns: campaign_sends, campaign_sends_90d, campaign_response_rate.

Not computed (bigseg has them): trends, inter-purchase time, channel/category entropy
and counts, per-channel sessions, conversion rate, review sentiment, CLV (BG/NBD).
Models: see ``_common.py`` (they run in this process, on the computed pandas frames).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TABLES = {
    "tx": ("transactions", ["customer_id", "timestamp", "amount", "channel", "category"]),
    "ev": ("events", ["customer_id", "timestamp", "event_type", "page_views"]),
    "cp": ("campaigns", ["customer_id", "sent_at", "responded", "responded_at"]),
    "cu": ("customers", ["customer_id", "consent_profiling"]),
}
#: timestamp columns that may be missing (NaN as float64 microseconds, like the pandas peer)
NULLABLE_TIMES = ("responded_at",)
D90 = 90 * C.DAY_US


def _epoch_us(df: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as int64 microseconds (float64 with NaN for the nullable ones)."""
    df = df.copy()
    for c in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[c]):
            us = df[c].to_numpy("datetime64[us]")
            if c in NULLABLE_TIMES:
                v = us.astype(np.int64).astype(np.float64)
                v[np.isnat(us)] = np.nan
                df[c] = v
            else:
                df[c] = us.astype(np.int64)
    return df


def load(raw: Path) -> dict:
    import dask
    import dask.dataframe as dd
    from distributed import wait

    t = {}
    for name, (table, cols) in TABLES.items():
        if (raw / table).exists():
            d = dd.read_parquet(str(raw / table), columns=cols)
            t[name] = d.map_partitions(_epoch_us, meta=_epoch_us(d._meta))
        else:
            t[name] = None
    cu = t.pop("cu")
    t["refuse"] = (
        cu[~cu["consent_profiling"].fillna(False).astype(bool)]["customer_id"]
        if cu is not None
        else None
    )
    # optimize() before persisting: small Parquet files are fused into fewer partitions by
    # the optimizer, and a collection persisted without it can reference partitions that
    # were never computed ("lost dependencies" on the next compute; dask/dask#12488)
    keep = {k: v.optimize() for k, v in t.items() if v is not None}
    persisted = dict(zip(keep, dask.persist(*keep.values()), strict=True))
    wait(list(persisted.values()))
    t.update(persisted)
    return t


def tx_aggs(tx, cut: int) -> dict:
    """Lazy per-customer aggregations of the transactions at ``cut``."""
    t = tx[tx["timestamp"] <= cut]
    buy = t["amount"] > 0
    t = t.assign(ret=(~buy).astype("int64"))
    p = t[buy]
    recent = p["timestamp"] > cut - D90
    p = p.assign(n90=recent.astype("int64"), amount90=p["amount"].where(recent, 0.0))
    return {
        "buy": p.groupby("customer_id").agg(
            last=("timestamp", "max"),
            first=("timestamp", "min"),
            frequency=("amount", "count"),
            gross=("amount", "sum"),
            monetary_max=("amount", "max"),
            count_90d=("n90", "sum"),
            spend_90d=("amount90", "sum"),
        ),
        "all": t.groupby("customer_id").agg(
            monetary_total=("amount", "sum"), n_returns=("ret", "sum")
        ),
        "ch": p.groupby(["customer_id", "channel"])["amount"].count(),
        "cat": p.groupby(["customer_id", "category"])["amount"].sum(),
    }


def event_aggs(ev, cut: int) -> dict:
    e = ev[ev["timestamp"] <= cut]
    recent = e["timestamp"] > cut - D90
    e = e.assign(
        pv90=e["page_views"].where(recent, 0),
        s90=(e["event_type"].eq("session").fillna(False).astype(bool) & recent).astype("int64"),
        a90=(e["event_type"].eq("app_open").fillna(False).astype(bool) & recent).astype("int64"),
    )
    r = e[recent]
    r = r.assign(day=r["timestamp"] // C.DAY_US)
    return {
        "ev": e.groupby("customer_id").agg(
            events_total=("timestamp", "count"),
            last=("timestamp", "max"),
            page_views_90d=("pv90", "sum"),
            sessions_90d=("s90", "sum"),
            app_opens_90d=("a90", "sum"),
        ),
        # distinct active days: one row per (customer, day) pair, counted per customer
        # after the compute (a tree reduction; nunique would shuffle)
        "days": r.groupby(["customer_id", "day"])["timestamp"].count(),
    }


def campaign_aggs(cp, cut: int):
    c = cp[cp["sent_at"] <= cut]
    resp = c["responded"].fillna(False).astype(bool) & (c["responded_at"] <= cut)
    c = c.assign(s90=(c["sent_at"] > cut - D90).astype("int64"), resp=resp.astype("int64"))
    return c.groupby("customer_id").agg(
        campaign_sends=("sent_at", "count"),
        campaign_sends_90d=("s90", "sum"),
        n_resp=("resp", "sum"),
    )


def label_aggs(tx, cut: int, horizon: int):
    w = tx[(tx["timestamp"] > cut) & (tx["timestamp"] <= cut + horizon * C.DAY_US)]
    w = w.assign(b=(w["amount"] > 0).astype("int64"))
    return w.groupby("customer_id").agg(bought=("b", "max"), spend=("amount", "sum"))


def lazy_features(t: dict, cut: int) -> dict:
    g = tx_aggs(t["tx"], cut)
    if t["ev"] is not None:
        g.update(event_aggs(t["ev"], cut))
    if t["cp"] is not None:
        g["cp"] = campaign_aggs(t["cp"], cut)
    return g


def assemble(g: dict, refuse: np.ndarray, cut: int) -> pd.DataFrame:
    """The computed per-customer aggregations into one float32 feature frame."""
    f = g["buy"]
    f["recency_days"] = (cut - f.pop("last")) / C.DAY_US
    f["tenure_days"] = (cut - f.pop("first")) / C.DAY_US
    f["monetary_mean"] = f.pop("gross") / f["frequency"]
    f["purchase_rate"] = f["frequency"] / (f["tenure_days"] + C.RATE_PRIOR_DAYS) * 365.25
    tot = g["all"].reindex(f.index)
    f["monetary_total"] = tot["monetary_total"]
    f["returns_rate"] = tot["n_returns"].fillna(0) / f["frequency"]
    ch = g["ch"].unstack(fill_value=0)
    ch = ch.div(ch.sum(axis=1), axis=0).add_prefix("channel_share_")
    cat = g["cat"].unstack(fill_value=0)
    cat = cat.div(cat.sum(axis=1), axis=0).add_prefix("category_share_")
    f = f.join(ch).join(cat)
    if "ev" in g:
        e = g["ev"]
        e["days_since_last_activity"] = (cut - e.pop("last")) / C.DAY_US
        e["active_days_90d"] = g["days"].groupby(level=0).size()
        f = f.join(e)
    if "cp" in g:
        c = g["cp"]
        c["campaign_response_rate"] = c.pop("n_resp") / c["campaign_sends"]
        f = f.join(c)
    for c in C.ZERO_WHEN_ABSENT:
        if c in f.columns:
            f[c] = f[c].fillna(0)
    f = f[~f.index.isin(refuse)]
    return f.astype(np.float32).sort_index().reset_index()


def features(t: dict, a) -> tuple[pd.DataFrame, pd.DataFrame]:
    import dask

    lazy = {
        "train": lazy_features(t, a.train_cut),
        "score": lazy_features(t, a.score_cut),
        "labels": label_aggs(t["tx"], a.train_cut, a.horizon),
        "refuse": t["refuse"],
    }
    (got,) = dask.compute(lazy)
    refuse = got["refuse"].to_numpy() if got["refuse"] is not None else np.array([], np.int64)
    train_f = assemble(got["train"], refuse, a.train_cut)
    lab = got["labels"]
    train_f = train_f.join(lab, on="customer_id")
    train_f["churn"] = ~(train_f.pop("bought").fillna(0) > 0)
    train_f["value"] = train_f.pop("spend").fillna(0.0)
    score_f = assemble(got["score"], refuse, a.score_cut)
    return train_f, score_f


def main(argv=None) -> None:
    from distributed import Client, LocalCluster

    a = C.parse_args("daskdf", argv)
    clock = C.Clock("daskdf", a)
    versions = ("dask", "distributed", "pandas", "pyarrow")
    with clock.stage("cluster_start"):
        cluster = LocalCluster(
            n_workers=C.cores(), threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        with clock.stage("load"):
            t = load(a.raw)
        if clock.done():
            return clock.write(versions)
        with clock.stage("features"):
            train_f, score_f = features(t, a)
        del t
    finally:
        client.close()
        cluster.close()
    C.finish(clock, train_f, score_f, versions)


if __name__ == "__main__":
    main()
