"""Tests of the synthetic data generator (bigseg.synth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from bigseg import synth
from bigseg.schema import ID, SCHEMAS
from bigseg.synth import generate

N = 4000
CHUNK = 1500  # -> 3 chunks, the last one partial
SEED = 7
END = pd.Timestamp("2026-09-30 23:59:59")
START = pd.Timestamp("2026-09-30") - pd.Timedelta(days=1095)
RAW = ("customers", "transactions", "events", "campaigns", "reviews")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = generate(N, out, seed=SEED, chunk_size=CHUNK)
    return out, summary


def _read(out: Path, table: str) -> pd.DataFrame:
    sub = "ground_truth" if table == "ground_truth" else f"raw/{table}"
    return pq.read_table(out / sub).to_pandas()


@pytest.fixture(scope="module")
def tables(dataset) -> dict[str, pd.DataFrame]:
    out, _ = dataset
    return {t: _read(out, t) for t in (*RAW, "ground_truth")}


@pytest.fixture(scope="module")
def per_customer(tables) -> pd.DataFrame:
    """Ground truth joined with recency / frequency / mean order value from raw data."""
    gt = tables["ground_truth"].copy()
    tx = tables["transactions"]
    pur = tx[tx.amount > 0]
    by = pur.groupby("customer_id")
    gt["recency"] = (END - gt.customer_id.map(by.timestamp.max())).dt.days.fillna(5000)
    gt["frequency"] = gt.customer_id.map(by.size()).fillna(0)
    gt["spend"] = gt.customer_id.map(by.amount.sum()).fillna(0.0)
    gt["aov"] = gt.customer_id.map(by.amount.mean())
    cu = tables["customers"].set_index("customer_id")
    gt["signup_date"] = gt.customer_id.map(cu.signup_date)
    return gt


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.parquet"))
        if ".staging" not in str(p)
    }


# ---------------------------------------------------------------------------------------
# Layout and schemas
# ---------------------------------------------------------------------------------------


def test_layout_and_summary(dataset, tables):
    out, summary = dataset
    n_chunks = -(-N // CHUNK)
    for sub in [f"raw/{t}" for t in RAW] + ["ground_truth"]:
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == [f"part-{i:05d}.parquet" for i in range(n_chunks)], sub
    assert not list(out.glob(".staging-*"))
    assert summary["n_customers"] == N
    assert summary["end_date"] == "2026-09-30"
    assert summary["seconds"] > 0
    for t, df in tables.items():
        assert summary["rows"][t] == len(df), t
    assert sum(summary["persona_counts"].values()) == N


def test_schemas_match_bigseg_schema(dataset):
    out, _ = dataset
    for table in RAW:
        expected = pa.schema(
            [(c, pa.int64() if t == ID else t) for c, t in SCHEMAS[table].columns.items()]
        )
        for part in sorted((out / "raw" / table).iterdir()):
            got = pq.read_schema(part)
            assert got.names == expected.names, (table, part.name)
            assert got.types == expected.types, (table, part.name)
    gt = pq.read_schema(out / "ground_truth" / "part-00000.parquet")
    assert gt.names == [
        "customer_id",
        "persona",
        "buys_in_horizon",
        "spend_in_horizon",
        "alive_at_end",
    ]
    assert gt.types == [pa.int64(), pa.string(), pa.bool_(), pa.float64(), pa.bool_()]


def test_volumes_are_moderate(tables):
    per = {t: len(df) / N for t, df in tables.items()}
    assert 12 <= per["transactions"] <= 28, per
    assert 5 <= per["events"] <= 16, per
    assert 2.5 <= per["campaigns"] <= 5.5, per
    assert 0.15 <= per["reviews"] <= 0.8, per


# ---------------------------------------------------------------------------------------
# Integrity
# ---------------------------------------------------------------------------------------


def test_ids_and_referential_integrity(tables):
    cu = tables["customers"]
    assert cu.customer_id.tolist() == list(range(1, N + 1))
    assert tables["ground_truth"].customer_id.tolist() == list(range(1, N + 1))
    ids = set(cu.customer_id)
    for t in ("transactions", "events", "campaigns", "reviews"):
        assert set(tables[t].customer_id) <= ids, t
    tx = tables["transactions"]
    assert tx.transaction_id.is_unique
    # rows are sorted by customer then time
    for t, col in (
        ("transactions", "timestamp"),
        ("events", "timestamp"),
        ("reviews", "timestamp"),
    ):
        df = tables[t]
        assert df.equals(df.sort_values(["customer_id", col], kind="stable")), t


def test_customer_columns_plausible(tables):
    cu = tables["customers"]
    assert set(cu.gender) <= {"F", "M", "X"}
    assert 5 <= cu.region.nunique() <= 10
    assert cu.age.between(18, 90).all()
    assert 0.92 <= cu.consent_profiling.mean() <= 0.98
    assert 0.75 <= cu.consent_marketing.mean() <= 0.85
    assert cu.email.str.contains("@").all() and cu.email.is_unique
    assert cu.name.str.contains(" ").all()
    assert cu.phone.str.match(r"^\+1-\d{3}-555-\d{4}$").all()
    assert cu.signup_date.notna().all()


def test_no_raw_timestamp_after_end_date(tables):
    checks = {
        "customers": ["signup_date"],
        "transactions": ["timestamp"],
        "events": ["timestamp"],
        "campaigns": ["sent_at", "responded_at"],
        "reviews": ["timestamp"],
    }
    for table, cols in checks.items():
        for col in cols:
            ts = tables[table][col].dropna()
            assert (ts <= END).all(), (table, col, ts.max())
            if table != "customers":  # signups may predate the history window
                assert (ts >= START).all(), (table, col, ts.min())


def test_signup_before_activity(tables):
    signup = tables["customers"].set_index("customer_id").signup_date
    for t in ("transactions", "events"):
        df = tables[t]
        first = df.groupby("customer_id").timestamp.min()
        assert (first >= signup.loc[first.index]).all(), t
    ca = tables["campaigns"]
    assert (ca.sent_at >= ca.customer_id.map(signup)).all()


def test_amounts_and_returns(tables):
    tx = tables["transactions"]
    assert np.isfinite(tx.amount).all()
    assert (tx.amount != 0).all()
    assert np.allclose(tx.amount, tx.amount.round(2))
    returns = tx.amount < 0
    assert 0.02 <= returns.mean() <= 0.06
    assert set(tx.channel) == {"web", "app", "store"}
    assert 8 <= tx.category.nunique() <= 12
    # every return follows an earlier purchase of the same customer and category
    first_buy = tx[~returns].groupby(["customer_id", "category"]).timestamp.min()
    ret = tx[returns]
    key = pd.MultiIndex.from_frame(ret[["customer_id", "category"]])
    assert (ret.timestamp.to_numpy() > first_buy.reindex(key).to_numpy()).all()


def test_campaign_columns(tables):
    ca = tables["campaigns"]
    assert ca.campaign_id.str.match(r"^C\d{4}-\d{2}$").all()
    assert ca.campaign_id.nunique() >= 30  # monthly sends over three years
    assert (ca.groupby("campaign_id").size() > 20).all()  # shared by many customers
    assert set(ca.channel) <= {"email", "sms", "push"}
    assert not (ca.converted & ~ca.responded).any()
    assert (ca.responded == ca.responded_at.notna()).all()
    assert (ca.responded_at[ca.responded] >= ca.sent_at[ca.responded]).all()


def test_event_columns(tables):
    ev = tables["events"]
    assert set(ev.event_type) == {"session", "page_view", "app_open"}
    assert set(ev.channel) == {"web", "app"}
    assert (ev.page_views >= 1).all()


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------


def test_same_seed_identical_different_seed_differs(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    generate(N, again, seed=SEED, chunk_size=CHUNK)
    assert _files(again) == _files(out)
    for t in RAW:
        assert pq.read_table(again / "raw" / t).equals(pq.read_table(out / "raw" / t))

    other = tmp_path / "other"
    generate(N, other, seed=SEED + 1, chunk_size=CHUNK)
    for t in RAW:
        a = pq.read_table(other / "raw" / t)
        b = pq.read_table(out / "raw" / t)
        assert not a.equals(b), t


def test_dask_cluster_gives_identical_bytes(dataset, tmp_path):
    distributed = pytest.importorskip("distributed")
    out, summary = dataset
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask_out = tmp_path / "dask"
        dask_summary = generate(N, dask_out, seed=SEED, chunk_size=CHUNK, client=client)
    assert dask_summary["rows"] == summary["rows"]
    assert dask_summary["persona_counts"] == summary["persona_counts"]
    assert _files(dask_out) == _files(out)
    assert not list(dask_out.glob(".staging-*"))


# ---------------------------------------------------------------------------------------
# Planted behaviour
# ---------------------------------------------------------------------------------------


def test_personas_have_distinct_behaviour(per_customer):
    df = per_customer
    personas = set(df.persona)
    assert len(personas) >= 6
    assert personas == set(synth.PERSONAS)
    g = df.groupby("persona")
    freq, spend, rec = g.frequency.mean(), g.spend.mean(), g.recency.median()
    assert freq["champions"] > 3 * freq["hibernating"]
    assert spend["champions"] > 3 * spend["hibernating"]
    assert rec["at_risk"] > rec["champions"] + 60
    assert rec["hibernating"] > rec["loyal"]
    aov = g.aov.median()
    assert aov["big_spenders"] == aov.max() and aov["big_spenders"] > 3 * aov["loyal"]
    assert aov["bargain_hunters"] == aov.min()
    assert freq["bargain_hunters"] > freq["loyal"]
    # new customers signed up within ~120 days of the end; nobody else did
    days_since_signup = (END - df.signup_date).dt.days
    assert (days_since_signup[df.persona == "new"] <= 121).all()
    assert (days_since_signup[df.persona != "new"] > 121).all()
    assert freq["new"] < freq["loyal"]
    # churn differs by persona: champions mostly alive and buying, hibernating not
    alive, buys = g.alive_at_end.mean(), g.buys_in_horizon.mean()
    assert alive["champions"] > 0.8 and alive["hibernating"] < 0.2
    assert buys["champions"] > 0.7 and buys["hibernating"] < 0.15
    assert buys["at_risk"] < buys["loyal"] / 3


def test_campaign_response_depends_on_persona(tables):
    ca = tables["campaigns"].merge(tables["ground_truth"][["customer_id", "persona"]])
    rate = ca.groupby("persona").responded.mean()
    assert rate["bargain_hunters"] == rate.max()
    assert rate["bargain_hunters"] > 3 * rate["hibernating"]


def test_churn_depends_on_visible_behaviour(per_customer):
    df = per_customer
    gt = df.buys_in_horizon
    assert not (gt & ~df.alive_at_end).any()  # the dead never buy
    assert (df.spend_in_horizon[~gt] <= 0).all()
    assert (df.spend_in_horizon[gt] != 0).any()
    recent = gt[df.recency <= 30].mean()
    lapsed = gt[df.recency > 180].mean()
    assert recent > 0.6
    assert lapsed < recent / 3
    assert roc_auc_score(gt, -df.recency) > 0.7
    assert 0.25 <= gt.mean() <= 0.6


def test_review_sentiment(tables):
    rv = tables["reviews"].merge(tables["ground_truth"][["customer_id", "persona"]])
    assert (rv.text.str.len() > 10).all()
    assert rv.rating.between(1, 5).all()
    mean = rv.groupby("persona").rating.mean()
    assert mean["at_risk"] < mean["champions"] - 0.5
    assert mean["hibernating"] < mean["champions"] - 0.5
    # the words carry the sentiment
    text = rv.text.str.lower()
    pos = text.str.contains("love|excellent|fantastic|great|recommend")
    neg = text.str.contains("terrible|awful|disappointed|broke|refund|waste|poor")
    assert rv.rating[pos].mean() > 4 and rv.rating[neg].mean() < 2.5


# ---------------------------------------------------------------------------------------
# Safety
# ---------------------------------------------------------------------------------------


def test_refuses_to_overwrite_existing_raw(tmp_path):
    out = tmp_path / "data"
    (out / "raw" / "customers").mkdir(parents=True)
    (out / "raw" / "customers" / "part-00000.parquet").write_bytes(b"old")
    with pytest.raises(ValueError, match="already exists"):
        generate(100, out, chunk_size=50)
    assert (out / "raw" / "customers" / "part-00000.parquet").read_bytes() == b"old"
    assert not (out / "ground_truth").exists()
    assert not list(out.glob(".staging-*"))


def test_empty_raw_dir_is_accepted(tmp_path):
    out = tmp_path / "data"
    (out / "raw").mkdir(parents=True)
    summary = generate(200, out, chunk_size=100)
    assert summary["rows"]["customers"] == 200
    assert len(list((out / "raw" / "customers").iterdir())) == 2


def test_failed_run_leaves_no_partial_dataset(tmp_path, monkeypatch):
    real = synth._generate_chunk

    def flaky(chunk_index, *args):
        if chunk_index == 1:
            raise RuntimeError("boom")
        return real(chunk_index, *args)

    monkeypatch.setattr(synth, "_generate_chunk", flaky)
    out = tmp_path / "data"
    with pytest.raises(RuntimeError, match="boom"):
        generate(300, out, chunk_size=100)
    assert not (out / "raw").exists()
    assert not (out / "ground_truth").exists()
    assert not list(out.glob(".staging-*"))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate(0, tmp_path / "a")
    with pytest.raises(ValueError):
        generate(10, tmp_path / "b", chunk_size=0)
