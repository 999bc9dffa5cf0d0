"""End to end on real parts: synthetic Parquet -> bucketed store -> features -> K-Means
-> xgboost.dask -> scores, on real Dask worker processes."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import yaml

import bigseg
from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.engine import connect
from bigseg.io.output import scores_dataset
from bigseg.pipeline import run_stages
from bigseg.registry import load_version
from bigseg.segment import METHODS
from bigseg.testing.outputs import committed, files, report_path
from bigseg.testing.outputs import metrics as read_metrics

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")
SCORE_COLUMNS = [
    "customer_id",
    "segment",
    "segment_name",
    "churn_probability",
    "value_prediction",
    "high_value",
]


def write_config(path, data_dir, out, **extra):
    doc = {
        "data": {t: {"path": str(data_dir / "raw" / t)} for t in TABLES},
        "horizon_days": 90,
        "seed": 3,
        "segmentation": {"k": 5},
        "prediction": {"n_estimators": 60},
        "output": str(out),
        **extra,
    }
    path.write_text(yaml.safe_dump(doc))
    return load_run_config(path)


def read_scores(out, as_of=None) -> pd.DataFrame:
    """The committed scores (:func:`bigseg.read_scores`), sorted by customer; without
    ``as_of`` the latest commit must hold scores of exactly one date."""
    dates = committed(out).scores_dates()
    if as_of is None:
        assert len(dates) == 1, dates
    day = str(as_of) if as_of is not None else dates[0]
    parts = files(out, scores_dataset(day))
    assert parts and all(p.name.startswith("part-") for p in parts), parts
    df = bigseg.read_scores(out, as_of).to_pandas()
    return df.sort_values("customer_id").reset_index(drop=True)


def read_dataset(out, name: str) -> pd.DataFrame:
    """Every Parquet file the latest commit lists for dataset ``name``, concatenated."""
    parts = files(out, name)
    assert parts and all(p.suffix == ".parquet" for p in parts), parts
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def checksum(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()


@pytest.fixture
def run_2w(small_run):
    """The session's small run (tests/conftest.py): 3,000 customers on 2 workers."""
    return small_run


def test_outputs_follow_the_contract(run_2w, synth_data):
    cfg, metrics = run_2w
    out = cfg.output_dir
    scores = read_scores(out)
    assert set(SCORE_COLUMNS) <= set(scores.columns)
    reasons = [c for c in scores.columns if c.startswith("segment_reason_")]
    assert reasons == ["segment_reason_1", "segment_reason_2", "segment_reason_3"]
    assert scores["segment_reason_1"].str.fullmatch(r"[a-z0-9_]+: (low|high)").all()
    assert scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["value_prediction"] >= 0).all()
    assert abs(scores["high_value"].mean() - 0.2) < 0.03
    assert scores["segment"].nunique() == 5
    # every segment id has one name, and names are unique across segments
    names = scores.groupby("segment")["segment_name"].nunique()
    assert (names == 1).all() and scores["segment_name"].nunique() == 5
    # consent: customers without profiling consent are never scored
    cust = pd.read_parquet(synth_data / "raw" / "customers")
    refused = set(cust.loc[~cust["consent_profiling"], "customer_id"])
    assert refused and not refused & set(scores["customer_id"])
    assert metrics["excluded_no_consent"] > 0
    # segments/ and features/ hold the same customers
    seg = read_dataset(out, "segments")
    feats = read_dataset(out, "features")
    assert set(seg["customer_id"]) == set(scores["customer_id"]) == set(feats["customer_id"])
    assert "name" not in feats.columns and "email" not in feats.columns
    # metrics.json
    m = read_metrics(out)
    assert m["n_customers"] == len(scores)
    top = m["segments"][0]["top_features"]
    assert len(top) == 3 and all(abs(t["z"]) >= 0 for t in top)
    assert m["segments"][0]["lift"]["recency_days"] > 0
    assert sum(s["size"] for s in m["segments"]) == len(scores)
    assert {"auc", "pr_auc", "brier"} <= set(m["churn"])
    assert set(m["timings"]) >= {"ingest", "features", "segment", "train", "score", "report"}
    # models: safe formats, hashes verified on load
    vdir, manifest = load_version(committed(out))
    assert {"churn.ubj", "value.ubj", "segmenter.json", "preprocess.json"} <= set(manifest["files"])
    assert not list(vdir.glob("*.pkl"))
    html = report_path(out).read_text()
    assert "<svg" in html and m["segments"][0]["name"] in html
    assert "src=" not in html and "<link" not in html  # self-contained: nothing to fetch


def test_churn_model_learns_planted_behaviour(run_2w, synth_data):
    cfg, metrics = run_2w
    # backtest AUC is measured forward in time; the planted churn is learnable
    assert metrics["churn"]["auc"] > 0.75
    # and on the hidden future (ground truth after as_of), the scores rank churners first
    truth = pd.read_parquet(synth_data / "ground_truth")
    s = read_scores(cfg.output_dir).merge(truth, on="customer_id")
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(~s["buys_in_horizon"], s["churn_probability"]) > 0.75


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_same_seed_same_scores_with_one_and_two_workers(run_2w, synth_data, tmp_path):
    cfg2, _ = run_2w
    cfg1 = write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out")
    with connect(n_workers=1, reuse_current=False) as client:
        run_stages(cfg1, client, resolve("cpu"))
    a, b = read_scores(cfg1.output_dir), read_scores(cfg2.output_dir)
    assert checksum(a) == checksum(b)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both); the default suite
# starts external clusters in test_engine.py and test_no_shared_disk.py
def test_pipeline_through_external_scheduler(external_cluster, synth_data, tmp_path):
    from bigseg.pipeline import run_pipeline

    cfg = write_config(
        tmp_path / "job.yaml",
        synth_data,
        tmp_path / "out",
        prediction={"targets": ["churn"], "n_estimators": 30},
    )
    metrics = run_pipeline(cfg, cluster=str(external_cluster.config_path), device="cpu")
    assert metrics["n_customers"] > 0
    scores = read_scores(tmp_path / "out")
    assert scores["churn_probability"].between(0, 1).all()
    assert "value_prediction" not in scores  # value not asked for: no column of NaN


def test_user_csv_with_other_column_names_keeps_string_ids(local_client, tmp_path):
    rng = np.random.default_rng(1)
    n_cust, n = 400, 6000
    cust = rng.integers(0, n_cust, n)
    # customers buy at different rates, some stop early: enough signal to train on
    stop = rng.uniform(200, 800, n_cust)[cust]
    day = rng.uniform(0, 800, n)
    keep = day < stop
    df = pd.DataFrame(
        {
            "CustID": [f"{i:06d}" for i in cust[keep]],
            "OrderDate": (
                pd.Timestamp("2023-01-01") + pd.to_timedelta(day[keep], unit="D")
            ).strftime("%Y-%m-%d"),
            "Total": rng.gamma(2, 25, keep.sum()).round(2),
        }
    )
    df.to_csv(tmp_path / "orders.csv", index=False, sep=";")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {
                    "transactions": {
                        "path": "orders.csv",
                        "csv": {"delimiter": ";"},
                        "columns": {
                            "customer_id": "CustID",
                            "timestamp": "OrderDate",
                            "amount": "Total",
                        },
                    }
                },
                "segmentation": {"k": 4},
                "prediction": {"n_estimators": 30},
                "output": "out",
            }
        )
    )
    cfg = load_run_config(tmp_path / "job.yaml")
    run_stages(cfg, local_client, resolve("cpu"))
    scores = read_scores(tmp_path / "out")
    import pyarrow.parquet as pq

    (day,) = committed(tmp_path / "out").scores_dates()
    first = files(tmp_path / "out", scores_dataset(day))[0]
    assert str(pq.read_schema(first).field("customer_id").type) == "string"
    assert set(scores["customer_id"]) <= set(df["CustID"])
    assert all(len(i) == 6 for i in scores["customer_id"])
    assert "000000" in set(scores["customer_id"]) or "000001" in set(scores["customer_id"])
    # features needing tables the user did not give are absent, not zero-filled
    feats = read_dataset(tmp_path / "out", "features")
    assert "recency_days" in feats and "clv_expected_value" in feats
    assert not [c for c in feats if c.startswith(("events_", "campaign_", "review_", "channel_"))]


def test_stage_commands_reuse_published_outputs(run_2w, local_client, tmp_path):
    """`bigseg score` alone reloads the published model and reproduces the scores."""
    import datetime as dt
    import shutil

    cfg, metrics = run_2w
    # a copy: the session's run stays as other tests expect it (one commit)
    shutil.copytree(cfg.output_dir, tmp_path / "out")
    cfg = cfg.model_copy(update={"output": str(tmp_path / "out")})
    before = read_scores(cfg.output_dir)
    run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    assert checksum(read_scores(cfg.output_dir)) == checksum(before)
    # scoring at another date publishes beside, leaving the first untouched
    earlier = dt.date.fromisoformat(metrics["as_of"]) - dt.timedelta(days=30)
    run_stages(
        cfg.model_copy(update={"as_of": earlier}), local_client, resolve("cpu"), stages=("score",)
    )
    assert committed(cfg.output_dir).scores_dates() == [str(earlier), metrics["as_of"]]
    assert checksum(read_scores(cfg.output_dir, metrics["as_of"])) == checksum(before)


# kmeans runs in run_2w; hdbscan stays in the default suite, the rest in test-slow
@pytest.mark.parametrize(
    "method",
    [
        # every one in `make test-slow` (the CPU paths of each method also run in
        # tests/test_devices.py's default suite)
        pytest.param(m, marks=pytest.mark.slow)
        for m in METHODS
        if m != "kmeans"
    ],
)
def test_every_segmentation_method_runs_and_reloads(method, synth_data, tmp_path, local_client):
    cfg = write_config(
        tmp_path / "job.yaml",
        synth_data,
        tmp_path / "out",
        segmentation={"method": method, "k": 4},
        prediction={"targets": ["churn"], "n_estimators": 20},
    )
    metrics = run_stages(cfg, local_client, resolve("cpu"))
    scores = read_scores(cfg.output_dir)
    assert metrics["segmentation"]["method"] == method
    names = {s["id"]: s["name"] for s in metrics["segments"]}
    assert set(scores["segment"]) <= set(names)
    assert len(set(names.values())) == len(names)
    if method == "hdbscan":
        assert "Unusual customers" in names.values()
    else:
        assert scores["segment"].nunique() >= 3
    if method == "hierarchical":
        assert "<svg" in report_path(cfg.output_dir).read_text().split("Dendrogram")[1]
    # the stored segmenter (JSON + npz, no pickle) reproduces the assignment on its own
    before = checksum(scores)
    run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    assert checksum(read_scores(cfg.output_dir)) == before


def test_short_history_skips_the_backtest_but_still_scores(local_client, tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    pd.DataFrame(
        {
            "customer_id": rng.integers(0, 300, n),
            "timestamp": pd.Timestamp("2025-01-01")
            + pd.to_timedelta(rng.uniform(0, 150, n), unit="D"),
            "amount": rng.gamma(2, 20, n).round(2),
        }
    ).to_parquet(tmp_path / "tx.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"transactions": {"path": "tx.parquet"}},
                "segmentation": {"k": 3},
                "prediction": {"n_estimators": 20},
                "output": "out",
            }
        )
    )
    metrics = run_stages(load_run_config(tmp_path / "job.yaml"), local_client, resolve("cpu"))
    assert metrics["clv"]["backtest"] is None  # nobody had bought 180 days before as_of
    assert "auc" not in metrics.get("churn", {})  # no backtest, so no evaluation claimed
    # what serves without a backtest, and why, is stated
    assert metrics["value"]["served"] == {"model": 1.0}
    assert metrics["value"]["served_reason"].startswith("no backtest: no customer had bought")
    scores = read_scores(tmp_path / "out")
    # 1 churner among ~300 buyers: churn cannot be learnt, so it is absent, with the reason
    assert "churn_probability" not in scores
    assert "churned in the label window" in metrics["churn"]["skipped"]
    assert (scores["value_prediction"] >= 0).all() and len(scores) > 250


@pytest.mark.parametrize("method", ["kmeans", pytest.param("gmm", marks=pytest.mark.slow)])
def test_small_segments_are_merged(method, synth_data, tmp_path, local_client):
    def sizes(merge: bool):
        out = tmp_path / f"out-{merge}"
        cfg = write_config(
            tmp_path / f"job-{merge}.yaml",
            synth_data,
            out,
            segmentation={"method": method, "k": 12, "merge_small_segments": merge},
            privacy={"min_segment_size": 150},
        )
        m = run_stages(cfg, local_client, resolve("cpu"), stages=("ingest", "segment"))
        seg = read_dataset(out, "segments")
        return m["segmentation"], seg["segment"].value_counts()

    kept, counts = sizes(False)
    assert counts.min() < 150 and kept["merged_small_segments"] == []  # there is work to do
    merged, counts = sizes(True)
    assert counts.min() >= 150, counts
    assert merged["k"] == len(counts) < 12
    assert merged["merged_small_segments"][0]["k"] == 12
