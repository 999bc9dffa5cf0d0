"""Prediction end to end on generated data with a planted bias: per-segment models
chosen on the backtest, baselines, calibration, drivers, fairness audit, next-best
offers and audiences (issue: prediction that beats the classics)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_pipeline import read_dataset, read_scores

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.pipeline import run_stages
from bigseg.predict import blend
from bigseg.registry import load_version
from bigseg.synth import generate
from bigseg.testing.outputs import committed, files

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")


@pytest.fixture(scope="module")
def run(tmp_path_factory, local_client):
    d = tmp_path_factory.mktemp("predict")
    generate(
        8000,
        d,
        seed=5,
        client=local_client,
        bias={"attribute": "gender", "group": "F", "dropout": 0.8, "window_days": 360},
    )
    doc = {
        "data": {t: {"path": str(d / "raw" / t)} for t in TABLES},
        "horizon_days": 90,
        "seed": 0,
        "segmentation": {"k": 4},
        "prediction": {"n_estimators": 80, "targets": ["churn", "value", "response"]},
        "fairness": {"protected": ["gender", "age"]},
        "privacy": {"pseudonymize": False},
        "output": str(d / "out"),
    }
    (d / "job.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_run_config(d / "job.yaml")
    metrics = run_stages(cfg, local_client, resolve("cpu"))
    scores = read_scores(d / "out")
    return d, cfg, metrics, scores


def test_each_segment_is_served_by_the_model_its_backtest_chose(run):
    d, cfg, m, scores = run
    vdir, manifest = load_version(committed(cfg.output_dir))
    for t in ("churn", "value"):
        per = m[t]["per_segment"]
        assert set(per) == {str(s) for s in scores["segment"].unique()}
        for s, rec in per.items():
            assert rec["model"] in ("segment", "global")
            if rec["model"] == "segment":  # chosen on the backtest, by the better score
                assert (vdir / f"{t}.segment_{s}.ubj").is_file()
                key = "auc" if t == "churn" else "rmse"
                better = (
                    (rec[f"{key}_segment"] > rec[f"{key}_global"])
                    if key == "auc"
                    else (rec[f"{key}_segment"] < rec[f"{key}_global"])
                )
                assert better
        assert manifest["model_choice"][t] == {s: r["model"] for s, r in per.items()}
        # at the final cutoff only the chosen segments' models are trained and published
        chosen = {f"{t}.segment_{s}.ubj" for s, r in per.items() if r["model"] == "segment"}
        assert {f.name for f in vdir.glob(f"{t}.segment_*.ubj")} == chosen
        assert set(m[t]["training"]) == {"global"} | {
            s for s, r in per.items() if r["model"] == "segment"
        }
        # the backtest trained a model for every segment big enough, to judge it
        judged = m[t]["backtest_training"]
        assert judged["global"]["n_train"] > 0
        assert {s for s, r in per.items() if "auc_segment" in r or "rmse_segment" in r} <= {
            k for k in judged if k != "global"
        }
    assert any(k != "global" for k in m["churn"]["backtest_training"])
    assert all(
        f.startswith("in_segment_")
        for f in manifest["model_features"]
        if f not in manifest["features"]
    )


def test_each_segment_is_served_by_the_source_its_backtest_chose(run):
    """Model, BG/NBD or blend per target and segment, stated in metrics and manifest;
    the served AUC comes with its DeLong interval and its lead over BG/NBD."""
    _, cfg, m, _ = run
    _, manifest = load_version(committed(cfg.output_dir))
    for t, key in (("churn", "auc"), ("value", "rmse")):
        per = m[t]["per_segment"]
        assert manifest["serve"][t] == {s: r["served"] for s, r in per.items()}
        for rec in per.values():
            assert rec["served"] in blend.SOURCES
            # judged on all customers with the segment switched to each source
            got = {k: rec[f"overall_{key}_{k}"] for k in blend.SOURCES}
            sign = 1 if key == "auc" else -1
            if rec["served"] != "model":  # only a clear win displaces the model
                assert sign * (got[rec["served"]] - got["model"]) > 0
            assert all(sign * (got[rec["served"]] - v) >= -blend.MARGIN for v in got.values())
        assert abs(sum(m[t]["served"].values()) - 1) < 1e-9
        assert len(m[t]["training_windows"]) >= 2  # stacked: the history allows it
    ch = m["churn"]
    ci, lead = ch["auc_interval"], ch["lead_over_bgnbd"]
    assert ci["low"] < ch["auc"] < ci["high"] and abs(ci["auc"] - ch["auc"]) < 1e-12
    assert abs(lead["difference"] - (ch["auc"] - ch["baseline_bgnbd_auc"])) < 1e-9
    assert lead["low"] < lead["difference"] < lead["high"]


def test_churn_model_beats_both_baselines_and_is_calibrated(run):
    _, _, m, _ = run
    ch = m["churn"]
    assert ch["auc"] > ch["baseline_recency_auc"]
    assert ch["auc"] > ch["baseline_bgnbd_auc"]
    assert ch["brier"] < 0.15
    cal = ch["calibration"]
    assert sum(b["n"] for b in cal) == ch["n"]
    # calibrated: observed rates follow the predictions (weighted gap under 0.08)
    gap = sum(b["n"] * abs(b["observed_rate"] - b["mean_predicted"]) for b in cal) / ch["n"]
    assert gap < 0.08
    assert {"lift_top10", "capture_top10", "pr_auc"} <= set(ch)
    assert set(ch["by_segment"]) == set(ch["per_segment"])
    v = m["value"]
    assert v["spearman"] > v["baseline_bgnbd"]["spearman"]


def test_every_scored_customer_has_predictions_and_drivers(run):
    d, cfg, m, scores = run
    _, manifest = load_version(committed(cfg.output_dir))
    feats = set(manifest["model_features"])
    at_as_of = scores[["customer_id"]].merge(
        read_dataset(cfg.output_dir, "features"), on="customer_id", how="left"
    )
    for t in ("churn", "value"):
        # a segment BG/NBD alone serves is explained by BG/NBD's three inputs, on the
        # rows with a BG/NBD value (the model serves the others)
        alone = scores["segment"].astype(str).map(manifest["serve"][t]).eq("bgnbd") & (
            np.isfinite(at_as_of[blend.BGNBD_COLUMN[t]].to_numpy(np.float64))
        )
        for r in (1, 2, 3):
            col = scores[f"{t}_driver_{r}"]
            assert (col[alone] == blend.BGNBD_DRIVERS[r - 1]).all()
            parts = col[~alone].str.extract(r"^(\S+) ([+-]\d+\.\d\d)$")
            assert parts.notna().all().all(), col[~alone][parts[0].isna()].head()
            assert set(parts[0]) <= feats
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["value_prediction"] >= 0).all() and scores["high_value"].any()
    assert set(m["drivers"]["churn"]) == {str(s) for s in scores["segment"].unique()}


def test_fairness_audit_finds_the_planted_bias(run):
    d, cfg, m, _ = run
    f = m["fairness"]
    gender = f["attributes"]["gender"]
    dp = gender["demographic_parity"]["churn_flag"]
    assert dp["ratio"] < 0.8 and dp["highest_group"] == "F"
    assert any(x.startswith("gender:") for x in f["flags"])
    assert "age" in f["attributes"]
    # protected attributes are not model inputs
    _, manifest = load_version(committed(cfg.output_dir))
    assert not {"gender", "age"} & set(manifest["model_features"])
    json.dumps(f)  # JSON-serialisable as stored


def test_audiences_honour_marketing_consent(run):
    d, cfg, m, scores = run
    parts = files(cfg.output_dir, "audiences")
    assert all(f.name.startswith("segment=") and f.suffix == ".parquet" for f in parts), parts
    assert {f.stem.split("=")[1] for f in parts} == {str(s) for s in scores["segment"].unique()}
    aud = read_dataset(cfg.output_dir, "audiences")
    cust = pd.read_parquet(d / "raw" / "customers")
    yes = set(cust.loc[cust["consent_marketing"].fillna(False).astype(bool), "customer_id"])
    assert set(aud["customer_id"]) == yes & set(scores["customer_id"])
    assert set(aud["churn_risk_tier"].dropna()) <= {"low", "medium", "high"}
    assert sum(m["audiences"].values()) == len(aud)
    offers = scores[["offer_1", "offer_2", "offer_3"]]
    assert offers.shape[0] == len(scores)
    # an offer is never a category the customer has already bought
    feats = (
        read_dataset(cfg.output_dir, "features")
        if committed(cfg.output_dir).has("features")
        else None
    )
    assert feats is None or len(feats) == len(scores)
    assert np.isfinite(scores["offer_1_score"].dropna()).all()


def test_campaign_response_is_predicted_for_every_customer(run):
    _, cfg, m, scores = run
    r = m["response"]
    assert r["auc"] > 0.6 and r["n"] > 500  # only customers sent a campaign are labelled
    assert r["baseline_past_response_rate_auc"] is not None
    assert scores["response_probability"].between(0, 1).all()
    assert scores["response_driver_1"].notna().all()
    _, manifest = load_version(committed(cfg.output_dir))
    assert "response.ubj" in manifest["files"]


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_balanced_classes_weight_the_rare_class(tmp_path, local_client):
    """With ``balance_classes`` the published churn model carries XGBoost's
    ``scale_pos_weight`` = negatives / positives of its training rows (read back from the
    model file itself)."""
    import json

    import xgboost as xgb

    from bigseg.registry import load_version

    d = tmp_path
    generate(3000, d, seed=2, chunk_size=1000)
    doc = {
        "data": {t: {"path": str(d / "raw" / t)} for t in TABLES},
        "horizon_days": 90,
        "seed": 0,
        "segmentation": {"k": 3},
        "output": str(d / "out"),
        "prediction": {"n_estimators": 20, "targets": ["churn"], "balance_classes": True},
    }
    (d / "job.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_run_config(d / "job.yaml")
    run_stages(cfg, local_client, resolve("cpu"), stages=("ingest", "segment", "train"))
    model_dir, _ = load_version(committed(cfg.output_dir))
    b = xgb.Booster(model_file=str(model_dir / "churn.ubj"))
    weight = float(
        json.loads(b.save_config())["learner"]["objective"]["reg_loss_param"]["scale_pos_weight"]
    )
    assert weight > 0 and weight != 1.0


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_training_samples_refines_and_falls_back(tmp_path, local_client):
    """``max_train_rows`` trains the global model on a stable sample of that size (the
    same model on a second run), segment models are the global model boosted further on
    at most ``segment_max_train_rows`` customers, a depth search keeps the best of its
    depths, and above ``single_worker_max_rows`` the global model trains with
    xgboost.dask."""
    d = tmp_path
    generate(4000, d, seed=3, chunk_size=2000)

    def train(name: str, **prediction) -> tuple[dict, bytes]:
        doc = {
            "data": {t: {"path": str(d / "raw" / t)} for t in TABLES},
            "horizon_days": 90,
            "seed": 0,
            "segmentation": {"k": 3},
            "output": str(d / name),
            "prediction": {"n_estimators": 30, "targets": ["churn"], **prediction},
        }
        (d / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        cfg = load_run_config(d / f"{name}.yaml")
        m = run_stages(cfg, local_client, resolve("cpu"), stages=("ingest", "segment", "train"))
        model_dir, _ = load_version(committed(cfg.output_dir))
        seen[name] = m
        return m["churn"]["training"], (model_dir / "churn.ubj").read_bytes()

    seen: dict = {}

    full, _ = train("full", max_train_rows=0, segment_max_train_rows=0)
    capped, model = train(
        "capped", max_train_rows=1200, segment_max_train_rows=400, max_backtest_rows=1000
    )
    n_all = full["global"]["n_train"]
    assert n_all > 2000 and full["global"]["mode"] == "task"
    assert 0.8 * 1200 < capped["global"]["n_train"] < 1.2 * 1200, capped["global"]
    segs = [v for k, v in seen["capped"]["churn"]["backtest_training"].items() if k != "global"]
    # a refinement keeps no tree when none beat the global model on its validation rows
    assert segs and all(v["mode"] == "refined global" and v["trees_added"] >= 0 for v in segs)
    assert any(v["trees_added"] >= 1 for v in segs), segs
    assert all(v["n_train"] < 1.3 * 400 for v in segs), segs
    # the backtest judged a stable sample of ~1,000 of the next window's customers
    # 4000 customers: the latest cutoffs' frames held the backtest's sample only
    assert 0 < seen["capped"]["sampled_frames"]["train"] < 0.5
    assert "train" not in seen["full"]["sampled_frames"]
    n_eval = seen["full"]["churn"]["n"]
    assert n_eval > 2000 and 0.8 * 1000 < seen["capped"]["churn"]["n"] < 1.2 * 1000
    again, model2 = train(
        "again", max_train_rows=1200, segment_max_train_rows=400, max_backtest_rows=1000
    )
    assert seen["again"]["churn"]["auc"] == seen["capped"]["churn"]["auc"]
    assert model2 == model and again["global"]["n_train"] == capped["global"]["n_train"]
    searched, _ = train("search", search_max_depth=[2, 3])
    assert [s["max_depth"] for s in searched["global"]["search"]] == [2, 3]
    assert searched["global"]["max_depth"] in (2, 3)
    dist, _ = train("dist", single_worker_max_rows=0)
    assert dist["global"]["mode"] == "distributed", dist["global"]


def test_older_windows_weigh_as_much_as_the_latest_within_the_cap():
    from bigseg.pipeline.sampling import older_share as _older_share

    sizes = {"train": 1_000_000, "backtest": 900_000, "back3": 800_000}
    rate, weight = _older_share(["train", "backtest", "back3"], sizes, 100_000)
    r, latest, older = 1 / weight, 1_000_000, 1_700_000
    # the latest window sampled at r, the older ones at `rate`: equal rows, 100k in all
    assert abs(r * latest - rate * older) < 1 and abs(r * latest + rate * older - 100_000) < 1
    # under the cap: every row of the latest window, as many of the older ones
    rate, weight = _older_share(["train", "backtest"], {"train": 1000, "backtest": 4000}, 0)
    assert (rate, weight) == (0.25, 1.0)
    assert _older_share(["train"], {"train": 1000}, 100) == (1.0, 1.0)
