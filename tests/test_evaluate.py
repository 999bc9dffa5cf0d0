"""Unit tests of the pipeline's pure parts: backtest evaluation, segment profiles,
driver importances and the small-segment merge, without a cluster or a run."""

from __future__ import annotations

import numpy as np
import pytest

from bigseg.backend import resolve
from bigseg.predict import evaluate
from bigseg.predict.ranking import roc_auc
from bigseg.segment.blocks import Blocks
from bigseg.segment.fit import merge_small
from bigseg.segment.methods import METHODS


def _backtest_rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    churn = rng.random(n) < 0.4
    seg = rng.integers(0, 2, n)
    noise = rng.random(n)
    return {
        "segment": seg,
        "churn": churn.astype(np.float32),
        # segment 1's own model is informative, the global one is noise
        "pred_churn_global": noise,
        "pred_churn_segment": np.where(seg == 1, 0.2 + 0.6 * churn, np.nan),
        "recency_days": noise * 100,
        "clv_expected_purchases": -noise,
    }


def test_chosen_serves_each_segment_by_its_chosen_model():
    cat = _backtest_rows()
    choice = {0: {"model": "global"}, 1: {"model": "segment"}}
    p = evaluate.chosen(cat, "churn", choice)
    own = cat["segment"] == 1
    assert np.array_equal(p[own], cat["pred_churn_segment"][own])
    assert np.array_equal(p[~own], cat["pred_churn_global"][~own])


def test_evaluate_churn_reports_the_served_model_beside_the_global_one_and_baselines():
    cat = _backtest_rows()
    choice = {0: {"model": "global"}, 1: {"model": "segment"}}
    out = evaluate.evaluate("churn", cat, choice)
    y = cat["churn"].astype(bool)
    served = evaluate.chosen(cat, "churn", choice)
    assert out["auc"] == pytest.approx(roc_auc(y, served))
    assert out["global_model_only"]["auc"] == pytest.approx(roc_auc(y, cat["pred_churn_global"]))
    assert out["auc"] > out["global_model_only"]["auc"]
    # recency is the same noise as the global model here, BG/NBD its negation
    assert out["baseline_recency_auc"] == pytest.approx(out["global_model_only"]["auc"])
    assert out["baseline_bgnbd_auc"] == pytest.approx(out["global_model_only"]["auc"])
    assert set(out["by_segment"]) == {"0", "1"}
    assert out["by_segment"]["1"]["auc"] == pytest.approx(1.0)
    assert set(out) >= {"calibration", "gains", "by_segment"}


def test_baseline_auc_is_none_without_both_classes_or_without_scores():
    assert evaluate.baseline_auc(np.ones(5), np.arange(5.0)) is None
    assert evaluate.baseline_auc(np.array([0, 1, 0]), np.full(3, np.nan)) is None
    assert evaluate.baseline_auc(np.array([0, 1]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def _profile_part(labels, X, churn, value, k):
    import pandas as pd

    from bigseg.predict.scoring import profile

    frame = pd.DataFrame(X, columns=["a", "b"])
    scores = pd.DataFrame(
        {"segment": labels, "churn_probability": churn, "value_prediction": value}
    )
    return profile(frame, scores, k, ["a", "b"])


def test_segment_profiles_from_bucket_sums_equal_the_direct_means():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    X[::7, 1] = np.nan  # a feature missing for some customers
    labels = rng.integers(0, 3, 300)
    churn, value = rng.random(300), rng.random(300) * 10
    # two buckets, summed
    parts = [
        _profile_part(labels[s], X[s], churn[s], value[s], 3)
        for s in (slice(0, 120), slice(120, 300))
    ]
    segs = evaluate.segment_profiles(parts, [2, 0, 1], ["c", "a", "b"], ["a", "b"])
    assert [s["id"] for s in segs] == [0, 1, 2]  # sorted by id
    for s in segs:
        rows = labels == s["id"]
        assert s["size"] == rows.sum()
        assert s["share"] == pytest.approx(rows.mean())
        assert s["profile"]["a"] == pytest.approx(X[rows, 0].mean())
        assert s["profile"]["b"] == pytest.approx(np.nanmean(X[rows, 1]))
        assert s["churn_probability"] == pytest.approx(churn[rows].mean())
        assert s["value_prediction"] == pytest.approx(value[rows].mean())
    assert {s["name"] for s in segs} == {"a", "b", "c"}


def test_driver_importance_ranks_features_by_mean_absolute_shap():
    parts = [
        {"churn": {0: (np.array([1.0, 5.0, 3.0]), 2)}},
        {"churn": {0: (np.array([1.0, 1.0, 3.0]), 2)}},
        {},
    ]
    out = evaluate.driver_importance(parts, ["churn", "value"], [0, 1], ["x", "y", "z"], top=2)
    assert list(out) == ["churn"] and list(out["churn"]) == ["0"]
    assert out["churn"]["0"] == [
        {"feature": "y", "mean_abs_shap": 1.5},
        {"feature": "z", "mean_abs_shap": 1.5},
    ]


def test_merge_small_refits_until_every_segment_is_large_enough():
    rng = np.random.default_rng(0)
    big = [rng.normal(c, 0.3, size=(400, 2)) for c in ((0, 0), (5, 5), (0, 5))]
    tiny = rng.normal((5, 0), 0.3, size=(6, 2))
    X = np.concatenate([*big, tiny]).astype(np.float32)
    blocks = Blocks([X[:600], X[600:]])
    seg = METHODS["kmeans"](4, random_state=0, device=resolve("cpu")).fit(blocks)
    merged_seg, rounds = merge_small(seg, blocks, min_size=50)
    assert len(rounds) == 1 and rounds[0]["k"] == 4 and rounds[0]["k_after"] == 3
    assert rounds[0]["sizes_below_minimum"] == [6]
    _, arrays = merged_seg.export()
    assert len(arrays["centres"]) == 3
    # nothing to merge: unchanged, no rounds
    same, none = merge_small(merged_seg, blocks, min_size=50)
    assert same is merged_seg and none == []
    assert merge_small(seg, blocks, min_size=0) == (seg, [])
