"""Tests of drift measurement and the retrain policy (bigseg.monitor.drift)."""

from __future__ import annotations

import json
import math
from functools import reduce

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from bigseg.monitor.drift import (
    DEFAULT_POLICY,
    bin_counts,
    bucket_counts,
    drift_report,
    merge_counts,
    psi,
    psi_level,
    reference_bins,
    segment_shift,
    should_retrain,
    with_counts,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _decile_psi_of_normal_shift(shift: float) -> float:
    """Exact decile PSI between N(0, 1) and N(shift, 1) (population deciles of N(0, 1))."""
    edges = norm.ppf(np.linspace(0.0, 1.0, 11))
    p = np.diff(norm.cdf(edges))
    q = np.diff(norm.cdf(edges, loc=shift))
    return float(((q - p) * np.log(q / p)).sum())


def _plain_json_types(obj) -> bool:
    """True when ``obj`` is built from dict/list/str/int/float/bool/None only."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain_json_types(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_plain_json_types(v) for v in obj)
    return obj is None or type(obj) in (str, int, float, bool)


# ---------------------------------------------------------------------------------------
# PSI
# ---------------------------------------------------------------------------------------


def test_psi_of_identical_distributions_is_zero():
    x = _rng(1).normal(size=50_000)
    ref = reference_bins({"x": x})
    spec = ref["features"]["x"]
    assert spec["method"] == "quantile"
    assert psi(spec["counts"], bin_counts(x, spec)) == 0.0
    # another sample of the same population: only sampling noise, (B - 1) * 2 / n ~ 4e-4
    other = bin_counts(_rng(2).normal(size=50_000), spec)
    assert psi(spec["counts"], other) < 0.003
    assert drift_report(ref, {"x": other})["features"]["x"]["level"] == "stable"


def test_psi_of_half_sd_shift_matches_the_decile_value():
    expected = _decile_psi_of_normal_shift(0.5)
    assert 0.23 < expected < 0.245
    ref = reference_bins({"x": _rng(3).normal(size=200_000)})
    spec = ref["features"]["x"]
    assert len(spec["edges"]) == 11  # deciles: 9 inner edges and the two infinities
    assert np.allclose(spec["shares"][:-1], 0.1, atol=1e-3)
    cur = bin_counts(_rng(4).normal(loc=0.5, size=200_000), spec)
    value = psi(spec["counts"], cur)
    assert 0.2 < value < 0.3
    assert value == pytest.approx(expected, abs=0.01)
    assert psi_level(value) == "moderate"
    # a full standard deviation is major drift
    cur1 = bin_counts(_rng(5).normal(loc=1.0, size=200_000), spec)
    assert psi(spec["counts"], cur1) == pytest.approx(_decile_psi_of_normal_shift(1.0), abs=0.02)
    assert psi_level(psi(spec["counts"], cur1)) == "major"


def test_psi_hand_value_symmetry_and_floor():
    assert psi([50, 50], [60, 40]) == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(1.25))
    assert psi([1, 2, 3], [3, 2, 1]) == pytest.approx(psi([3, 2, 1], [1, 2, 3]))
    # an empty bin is floored at eps: large but finite
    value = psi([100, 0], [90, 10], eps=1e-4)
    q, p = 0.1, 1e-4
    assert value == pytest.approx((0.9 - 1.0) * math.log(0.9) + (q - p) * math.log(q / p))
    assert math.isfinite(psi([1, 0], [0, 1]))
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        psi([0, 0], [1, 2])
    with pytest.raises(ValueError):
        psi([1, -1], [1, 2])


def test_psi_levels_at_the_thresholds():
    assert psi_level(0.0) == "stable"
    assert psi_level(0.0999) == "stable"
    assert psi_level(0.1) == "moderate"
    assert psi_level(0.2499) == "moderate"
    assert psi_level(0.25) == "major"
    assert psi_level(0.15, {"warn": 0.2}) == "stable"
    with pytest.raises(ValueError):
        psi_level(0.1, {"warn": 0.3, "alert": 0.2})
    with pytest.raises(ValueError):
        psi_level(0.1, {"warning": 0.1})


# ---------------------------------------------------------------------------------------
# Bins
# ---------------------------------------------------------------------------------------


def test_missing_values_have_their_own_bin():
    rng = _rng(6)
    x = rng.normal(size=10_000)
    x[rng.random(x.size) < 0.1] = np.nan
    spec = reference_bins({"x": x})["features"]["x"]
    assert spec["labels"][-1] == "missing"
    assert spec["counts"][-1] == int(np.isnan(x).sum())
    assert sum(spec["counts"]) == x.size
    # the quantile edges come from the non-missing values only
    assert np.allclose(np.asarray(spec["counts"][:-1]) / (~np.isnan(x)).sum(), 0.1, atol=0.01)

    # same values, missing share up from 10% to 30%: the missing bin drives the PSI
    y = rng.normal(size=10_000)
    y[rng.random(y.size) < 0.3] = np.nan
    ref = {"version": 1, "n_bins": 10, "features": {"x": spec}}
    rep = drift_report(ref, {"x": bin_counts(y, spec)})["features"]["x"]
    assert rep["top_bin"]["label"] == "missing"
    assert rep["missing_share_reference"] == pytest.approx(0.1, abs=0.01)
    assert rep["missing_share_current"] == pytest.approx(0.3, abs=0.015)
    assert rep["psi"] > 0.1

    # None counts as missing, and a feature with no missing values at training time
    # still has the bin: missing values appearing later are drift
    spec2 = reference_bins({"z": np.arange(100.0)})["features"]["z"]
    assert spec2["counts"][-1] == 0
    cur = bin_counts([*range(90), *([None] * 10)], spec2)
    assert cur[-1] == 10
    assert psi(spec2["counts"], cur) > 0.25


def test_constant_feature():
    spec = reference_bins({"c": np.full(1000, 7.0)})["features"]["c"]
    assert spec["method"] == "unique"
    assert spec["labels"] == ["< 7", "= 7", "> 7", "missing"]
    assert spec["edges"] == [-math.inf, 6.5, 7.5, math.inf]
    assert spec["counts"] == [0, 1000, 0, 0]
    assert psi(spec["counts"], bin_counts(np.full(500, 7.0), spec)) == 0.0
    # the constant stops being constant for 10% of customers: major drift
    cur = bin_counts(np.r_[np.full(900, 7.0), np.full(100, 8.0)], spec)
    assert cur == [0, 900, 100, 0]
    assert psi_level(psi(spec["counts"], cur)) == "major"
    # a non-integer constant gets a narrow bin (float32 values, as the features are)
    spec_f = reference_bins({"c": np.full(10, 0.37, dtype=np.float32)})["features"]["c"]
    assert bin_counts(np.full(3, 0.37, dtype=np.float32), spec_f) == [0, 3, 0, 0]
    assert bin_counts(np.array([0.36, 0.38]), spec_f) == [1, 0, 1, 0]


def test_low_cardinality_uses_one_bin_per_value():
    x = np.array([0, 0, 0, 1, 1, 2, 5, 5, 5, 5], dtype=np.float32)
    spec = reference_bins({"orders": x})["features"]["orders"]
    assert spec["method"] == "unique"
    assert spec["labels"] == ["< 0", "= 0", "= 1", "= 2", "= 5", "> 5", "missing"]
    assert spec["counts"] == [0, 3, 2, 1, 4, 0, 0]
    # unseen values fall in the nearest value's bin, or in the outer bins
    assert bin_counts([3, 4, 9, -2], spec) == [1, 0, 0, 1, 1, 1, 0]
    # booleans are 0/1
    b = reference_bins({"flag": np.array([True, False, True])})["features"]["flag"]
    assert b["counts"] == [0, 1, 2, 0, 0]


def test_point_mass_gets_its_own_bin():
    rng = _rng(7)
    x = np.where(rng.random(20_000) < 0.6, 0.0, rng.exponential(100.0, 20_000))
    spec = reference_bins({"spend": x})["features"]["spend"]
    assert spec["method"] == "quantile"
    assert spec["edges"][1] == 0.0  # bins are closed on the right: (-inf, 0] holds the zeros
    assert spec["counts"][0] == int((x == 0).sum())
    assert len(spec["edges"]) < 11  # tied deciles collapsed


def test_categorical_feature():
    vals = np.array(
        ["web"] * 50 + ["store"] * 30 + ["app"] * 15 + ["fax"] * 5 + [None] * 5 + [""] * 5,
        dtype=object,
    )
    spec = reference_bins({"channel": vals}, max_categories=3)["features"]["channel"]
    assert spec["kind"] == "categorical"
    assert spec["categories"] == ["web", "store", "app"]
    assert spec["labels"] == ["web", "store", "app", "other", "missing"]
    assert spec["counts"] == [50, 30, 15, 5, 10]
    assert bin_counts(["app", "phone", None, "web"], spec) == [1, 0, 1, 1, 1]


def test_bin_counts_of_two_halves_add_up_to_the_whole():
    rng = _rng(8)
    n = 20_001
    x = rng.gamma(2.0, 3.0, n)
    x[rng.random(n) < 0.05] = np.nan
    x[:3] = [np.inf, -np.inf, 0.0]
    frame = pd.DataFrame(
        {
            "x": x.astype(np.float32),
            "k": rng.integers(0, 4, n),
            "cat": rng.choice(np.array(["a", "b", "c", None], dtype=object), n),
        }
    )
    ref = reference_bins(frame.sample(5000, random_state=0))
    whole = bucket_counts(frame, ref)
    halves = [bucket_counts(frame.iloc[: n // 2], ref), bucket_counts(frame.iloc[n // 2 :], ref)]
    assert merge_counts(*halves) == whole
    for name, spec in ref["features"].items():
        assert sum(whole[name]) == n
        assert whole[name] == bin_counts(frame[name].to_numpy(), spec)
    # more parts, reduced the way the client does
    cuts = np.linspace(0, n, 8).astype(int)
    parts = [bucket_counts(frame.iloc[a:b], ref) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    assert reduce(merge_counts, parts) == whole
    # infinities are values in the end bins, not missing
    only_inf = bin_counts([np.inf, -np.inf], ref["features"]["x"])
    assert only_inf[0] == 1 and only_inf[-2] == 1 and only_inf[-1] == 0


def test_bin_counts_with_plain_edges_and_bad_edges():
    assert bin_counts([0.5, 1.0, 1.5, 3.0, None], [-np.inf, 1.0, 2.0, np.inf]) == [2, 1, 1, 1]
    # only the inner edges are read: null ends (strict JSON) work
    assert bin_counts([0.5, 1.0, 1.5], [None, 1.0, None]) == [2, 1, 0]
    with pytest.raises(ValueError):
        bin_counts([1.0], [-np.inf, 2.0, 1.0, np.inf])
    with pytest.raises(ValueError):
        bin_counts([1.0], [0.0])


def test_bucket_counts_needs_every_column():
    ref = reference_bins({"a": np.arange(20.0), "b": np.arange(20.0)})
    with pytest.raises(KeyError, match="b"):
        bucket_counts({"a": np.arange(5.0)}, ref)


def test_with_counts_replaces_the_sample_shares():
    rng = _rng(9)
    population = rng.normal(size=100_000)
    ref = reference_bins({"x": population[:2000]})
    full = bucket_counts({"x": population}, ref)
    ref_full = with_counts(ref, full)
    spec = ref_full["features"]["x"]
    assert spec["counts"] == full["x"]
    assert spec["n"] == 100_000
    assert spec["counts_source"] == "full"
    assert spec["shares"] == pytest.approx([c / 100_000 for c in full["x"]])
    assert spec["edges"] == ref["features"]["x"]["edges"]
    assert ref["features"]["x"]["counts_source"] == "sample"  # the input is not modified
    with pytest.raises(ValueError):
        with_counts(ref, {"x": [1, 2, 3]})
    with pytest.raises(ValueError):
        with_counts(ref, {"y": full["x"]})


# ---------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------


def _feature_reference_and_counts(shift_b: float = 0.0):
    rng = _rng(10)
    ref = reference_bins(
        {
            "a": rng.normal(size=20_000),
            "b": rng.normal(size=20_000),
            "c": rng.exponential(size=20_000),
        }
    )
    cur = bucket_counts(
        {
            "a": rng.normal(size=20_000),
            "b": rng.normal(shift_b, size=20_000),
            "c": rng.exponential(size=20_000),
        },
        ref,
    )
    return ref, cur


def test_drift_report_levels_alerts_and_max():
    ref, cur = _feature_reference_and_counts(shift_b=1.0)
    rep = drift_report(ref, cur)
    assert set(rep["features"]) == {"a", "b", "c"}
    assert rep["alert"] == ["b"]
    assert rep["moderate"] == []
    assert rep["max_feature"] == "b"
    assert rep["max_psi"] == rep["features"]["b"]["psi"] > 0.25
    assert rep["features"]["a"]["level"] == "stable"
    assert rep["features"]["b"]["n_current"] == 20_000
    assert rep["thresholds"] == {"warn": 0.1, "alert": 0.25}
    # a stricter threshold
    rep2 = drift_report(ref, cur, thresholds={"alert": 10.0})
    assert rep2["alert"] == [] and rep2["moderate"] == ["b"]


def test_drift_report_lists_unmeasured_and_rejects_bad_counts():
    ref, cur = _feature_reference_and_counts()
    rep = drift_report(ref, {"a": cur["a"], "c": [0] * len(cur["c"])})
    assert rep["not_measured"] == ["b"]
    assert rep["empty"] == ["c"]
    assert list(rep["features"]) == ["a"]
    nothing = drift_report(ref, {})
    assert nothing["max_psi"] is None and nothing["max_feature"] is None
    with pytest.raises(ValueError, match="reference bins"):
        drift_report(ref, {"a": cur["a"][:-1]})
    with pytest.raises(ValueError, match="not in the reference"):
        drift_report(ref, {"zz": [1, 2]})


def test_scores_use_the_same_machinery():
    rng = _rng(11)
    p_train = rng.beta(2, 8, 30_000)
    value_train = rng.lognormal(3.0, 1.0, 30_000)
    score_ref = reference_bins({"p_churn": p_train, "value_pred": value_train})
    cur = bucket_counts(
        {
            "p_churn": rng.beta(4, 6, 30_000),  # churn risk up
            "value_pred": rng.lognormal(3.0, 1.0, 30_000),
        },
        score_ref,
    )
    rep = drift_report(score_ref, cur)
    assert rep["alert"] == ["p_churn"]
    assert rep["features"]["value_pred"]["level"] == "stable"


# ---------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------


def test_segment_shift():
    ref = {0: 0.5, 1: 0.3, 2: 0.2}
    same = segment_shift(ref, {0: 5000, 1: 3000, 2: 2000})
    assert same["psi"] == pytest.approx(0.0, abs=1e-12)
    assert same["level"] == "stable"
    assert same["max_abs_change"] == pytest.approx(0.0, abs=1e-12)

    moved = segment_shift(ref, {0: 3000, 1: 3000, 2: 4000})
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    assert moved["psi"] == pytest.approx(float(((q - p) * np.log(q / p)).sum()))
    assert moved["psi"] == pytest.approx(0.241, abs=1e-3)
    assert moved["level"] == "moderate"
    assert moved["max_change_segment"] == "0"
    assert moved["max_abs_change"] == pytest.approx(0.2)
    assert moved["segments"]["2"]["change"] == pytest.approx(0.2)
    assert moved["n_current"] == 10_000


def test_segment_shift_ids_after_json_new_and_vanished_segments():
    ref = json.loads(json.dumps({3: 0.6, 7: 0.4}))  # keys become "3", "7"
    r = segment_shift(ref, {np.int64(3): 600, 9: 400})
    assert r["new_segments"] == ["9"]
    assert r["vanished_segments"] == ["7"]
    assert set(r["segments"]) == {"3", "7", "9"}
    assert r["segments"]["3"]["change"] == pytest.approx(0.0)
    assert r["level"] == "major"
    # shares given as counts are normalised
    assert segment_shift({0: 60, 1: 40}, {0: 6, 1: 4})["psi"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="twice"):
        segment_shift({3: 0.5, "3": 0.5}, {3: 1})


# ---------------------------------------------------------------------------------------
# Retrain policy
# ---------------------------------------------------------------------------------------


def _bundle(
    shift_feature: float = 0.0, shift_score: float = 0.0, segments: dict | None = None
) -> dict:
    rng = _rng(12)
    fref = reference_bins({"recency": rng.normal(size=20_000), "spend": rng.normal(size=20_000)})
    fcur = bucket_counts(
        {"recency": rng.normal(shift_feature, size=20_000), "spend": rng.normal(size=20_000)}, fref
    )
    sref = reference_bins({"p_churn": rng.normal(size=20_000)})
    scur = bucket_counts({"p_churn": rng.normal(shift_score, size=20_000)}, sref)
    seg = segment_shift({0: 0.5, 1: 0.5}, segments or {0: 5000, 1: 5000})
    return {
        "features": drift_report(fref, fcur),
        "scores": drift_report(sref, scur),
        "segments": seg,
    }


def test_no_retrain_when_stable_and_young():
    retrain, reasons = should_retrain(_bundle(), model_age_days=5)
    assert (retrain, reasons) == (False, [])
    # moderate drift alone does not trigger
    rep = _bundle(shift_feature=0.4)
    assert rep["features"]["features"]["recency"]["level"] == "moderate"
    assert should_retrain(rep, model_age_days=5) == (False, [])


def test_retrain_on_feature_drift():
    retrain, reasons = should_retrain(_bundle(shift_feature=1.0), model_age_days=5)
    assert retrain
    assert len(reasons) == 1
    assert reasons[0].startswith("feature drift")
    assert "recency" in reasons[0] and "spend" not in reasons[0]
    # a bare drift_report is the feature part
    bare = _bundle(shift_feature=1.0)["features"]
    assert should_retrain(bare, model_age_days=5)[0]
    # switched off, or a looser limit
    assert should_retrain(bare, 5, {"max_feature_psi": None}) == (False, [])
    assert should_retrain(bare, 5, {"max_feature_psi": 100.0}) == (False, [])


def test_retrain_on_score_and_segment_drift():
    retrain, reasons = should_retrain(_bundle(shift_score=1.0), model_age_days=1)
    assert retrain and len(reasons) == 1 and reasons[0].startswith("score drift")
    assert "p_churn" in reasons[0]
    retrain, reasons = should_retrain(_bundle(segments={0: 8000, 1: 2000}), model_age_days=1)
    assert retrain and len(reasons) == 1 and reasons[0].startswith("segment mix shift")
    assert "segment 0" in reasons[0] and "50.0% -> 80.0%" in reasons[0]


def test_retrain_on_age():
    assert should_retrain(_bundle(), model_age_days=29.9) == (False, [])
    retrain, reasons = should_retrain(_bundle(), model_age_days=30)
    assert retrain and reasons == ["model age 30.0 days >= 30 days"]
    assert should_retrain({}, model_age_days=45, policy={"max_model_age_days": 60})[0] is False
    assert should_retrain({}, 400, {"max_model_age_days": None}) == (False, [])
    # every triggered rule is reported
    all_reasons = should_retrain(_bundle(1.0, 1.0, {0: 9000, 1: 1000}), model_age_days=31)[1]
    assert [r.split(" ")[0] for r in all_reasons] == ["feature", "score", "segment", "model"]


def test_retrain_policy_validation():
    assert set(DEFAULT_POLICY) == {
        "max_feature_psi",
        "max_score_psi",
        "max_segment_psi",
        "max_model_age_days",
    }
    with pytest.raises(ValueError, match="unknown policy"):
        should_retrain({}, 1, {"max_age": 3})
    with pytest.raises(ValueError):
        should_retrain({}, -1)
    with pytest.raises(ValueError):
        should_retrain({}, float("nan"))
    with pytest.raises(ValueError, match="unknown report parts"):
        should_retrain({"feature": {}}, 1)


# ---------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------


def test_json_round_trip():
    rng = _rng(13)
    x = rng.normal(size=5000).astype(np.float32)
    x[:50] = np.nan
    sample = {
        "x": x,
        "orders": rng.integers(0, 5, 5000),
        "channel": rng.choice(np.array(["web", "app"], dtype=object), 5000),
    }
    ref = reference_bins(sample)
    assert _plain_json_types(ref)
    loaded = json.loads(json.dumps(ref))
    assert loaded == ref
    assert loaded["features"]["x"]["edges"][0] == -math.inf
    # counting and reporting with the loaded reference gives the same answers
    cur = {
        "x": rng.normal(0.3, size=3000),
        "orders": rng.integers(0, 6, 3000),
        "channel": rng.choice(np.array(["web", "app", "phone"], dtype=object), 3000),
    }
    counts = bucket_counts(cur, ref)
    assert bucket_counts(cur, loaded) == counts
    counts_loaded = json.loads(json.dumps(counts))
    report = {
        "features": drift_report(loaded, counts_loaded),
        "segments": segment_shift({1: 0.5, 2: 0.5}, {1: 10, 2: 30}),
    }
    assert report["features"] == drift_report(ref, counts)
    assert _plain_json_types(report)
    # reports hold no infinity or NaN: strict JSON
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    decision = should_retrain(report, 3.0)
    assert json.loads(json.dumps(list(decision))) == list(decision)
    assert should_retrain(json.loads(json.dumps(report)), 3.0) == decision
