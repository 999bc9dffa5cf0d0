"""Tests of the fairness audit (bigseg.predict.fairness) and the generator's planted bias."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bigseg.predict.fairness import audit, band_age, group_labels, model_features
from bigseg.synth import generate


def _rates(n_a: int, rate_a: float, n_b: int, rate_b: float) -> tuple[np.ndarray, np.ndarray]:
    """Group labels 'A'/'B' and a flag set on exactly ``rate * n`` of each group."""
    groups = np.array(["A"] * n_a + ["B"] * n_b, dtype=object)
    flag = np.zeros(n_a + n_b, dtype=bool)
    flag[: round(rate_a * n_a)] = True
    flag[n_a : n_a + round(rate_b * n_b)] = True
    return groups, flag


# ---------------------------------------------------------------------------------------
# Demographic parity, equal opportunity, AUC
# ---------------------------------------------------------------------------------------


def test_half_rate_is_flagged_with_both_groups_named():
    groups, flag = _rates(1000, 0.2, 1000, 0.4)
    res = audit({"gender": groups}, churn_flag=flag)
    json.dumps(res)  # JSON-serialisable
    g = res["attributes"]["gender"]
    dp = g["demographic_parity"]["churn_flag"]
    assert dp["ratio"] == pytest.approx(0.5)
    assert (dp["lowest_group"], dp["highest_group"]) == ("A", "B")
    assert g["groups"]["A"]["churn_flag_rate"] == pytest.approx(0.2)
    assert g["groups"]["B"]["churn_flag_rate"] == pytest.approx(0.4)
    assert g["demographic_parity"]["high_value_flag"] is None  # not given
    assert len(g["flags"]) == 1 and res["flags"] == g["flags"]
    msg = g["flags"][0]
    assert "gender" in msg and "churn_flag" in msg and "'A'" in msg and "'B'" in msg
    assert "0.50" in msg


def test_equal_rates_give_no_flags():
    groups, flag = _rates(800, 0.3, 1200, 0.3)
    res = audit({"region": groups}, churn_flag=flag, high_value_flag=~flag)
    dp = res["attributes"]["region"]["demographic_parity"]
    assert dp["churn_flag"]["ratio"] == pytest.approx(1.0)
    assert dp["high_value_flag"]["ratio"] == pytest.approx(1.0)
    assert res["flags"] == []


def test_threshold_is_strict_and_configurable():
    groups, flag = _rates(1000, 0.3, 1000, 0.4)  # ratio 0.75
    assert audit({"g": groups}, churn_flag=flag)["flags"]
    assert not audit({"g": groups}, churn_flag=flag, threshold=0.7)["flags"]
    groups, flag = _rates(1000, 0.4, 1000, 0.5)  # ratio exactly 0.8: passes
    assert not audit({"g": groups}, churn_flag=flag)["flags"]


def test_alpha_suppresses_insignificant_findings():
    groups, flag = _rates(60, 0.2, 60, 0.3)  # ratio 0.67 but p ~ 0.2
    res = audit({"g": groups}, churn_flag=flag)
    assert res["flags"]
    assert res["attributes"]["g"]["demographic_parity"]["churn_flag"]["p_value"] > 0.05
    assert audit({"g": groups}, churn_flag=flag, alpha=0.05)["flags"] == []
    groups, flag = _rates(2000, 0.2, 2000, 0.3)
    assert audit({"g": groups}, churn_flag=flag, alpha=0.05)["flags"]


def test_tpr_equal_opportunity_and_auc_per_group():
    rng = np.random.default_rng(0)
    n = 2000
    groups = np.where(np.arange(n) < n // 2, "A", "B").astype(object)
    y = rng.random(n) < 0.4
    a = groups == "A"
    # flag catches 80% of A's churners and 40% of B's; no false positives
    flag = y & np.where(a, rng.random(n) < 0.8, rng.random(n) < 0.4)
    score = np.where(a, y + rng.normal(0, 0.1, n), rng.random(n))  # perfect in A, random in B
    res = audit({"g": groups}, churn_flag=flag, y_churn=y, p_churn=score)
    g = res["attributes"]["g"]["groups"]
    assert g["A"]["churn_flag_tpr"] == pytest.approx(flag[a & y].mean())
    assert g["B"]["churn_flag_tpr"] == pytest.approx(flag[~a & y].mean())
    assert g["A"]["churn_rate"] == pytest.approx(y[a].mean())
    assert g["A"]["churn_auc"] == pytest.approx(1.0)
    assert 0.4 < g["B"]["churn_auc"] < 0.6
    eo = res["attributes"]["g"]["equal_opportunity"]["churn_flag"]
    assert eo["difference"] == pytest.approx(g["A"]["churn_flag_tpr"] - g["B"]["churn_flag_tpr"])
    assert (eo["lowest_group"], eo["highest_group"]) == ("B", "A")
    assert g["A"]["high_value_auc"] is None and g["A"]["high_value_flag_tpr"] is None


def test_auc_is_none_with_one_class_and_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    n = 400
    groups = np.where(np.arange(n) < 200, "A", "B").astype(object)
    y = np.where(groups == "A", False, rng.random(n) < 0.5)  # no churner in A
    score = np.round(rng.random(n), 1)  # ties
    res = audit({"g": groups}, churn_flag=y, y_churn=y, p_churn=score)
    g = res["attributes"]["g"]["groups"]
    assert g["A"]["churn_auc"] is None and g["A"]["churn_flag_tpr"] is None
    b = groups == "B"
    assert g["B"]["churn_auc"] == pytest.approx(roc_auc_score(y[b], score[b]))
    assert res["attributes"]["g"]["equal_opportunity"]["churn_flag"] is None  # one group
    json.dumps(res)


# ---------------------------------------------------------------------------------------
# Small groups, banding, missing values
# ---------------------------------------------------------------------------------------


def test_small_groups_reported_with_counts_only_and_left_out_of_ratios():
    groups, flag = _rates(500, 0.3, 500, 0.3)
    groups = np.concatenate([groups, np.array(["tiny"] * 10, dtype=object)])
    flag = np.concatenate([flag, np.zeros(10, dtype=bool)])  # 0% flagged: ratio 0 if counted
    res = audit({"g": groups}, churn_flag=flag, y_churn=flag)
    a = res["attributes"]["g"]
    assert a["groups"]["tiny"] == {"n": 10, "share": pytest.approx(10 / 1010), "reported": False}
    assert a["excluded_groups"] == ["tiny"]
    assert a["demographic_parity"]["churn_flag"]["ratio"] == pytest.approx(1.0)
    assert res["flags"] == []
    # with a smaller minimum, the group counts and is flagged
    res = audit({"g": groups}, churn_flag=flag, min_group_size=10)
    assert res["attributes"]["g"]["demographic_parity"]["churn_flag"]["lowest_group"] == "tiny"
    assert res["flags"]


def test_band_age_including_missing():
    ages = pd.array([17, 24, 25, 34, 35, 44, 45, 54, 55, 64, 65, 90, None], dtype="Int16")
    assert band_age(ages).tolist() == [
        "<25", "<25", "25-34", "25-34", "35-44", "35-44", "45-54", "45-54",
        "55-64", "55-64", "65+", "65+", "unknown",
    ]  # fmt: skip
    assert band_age(np.array([np.nan, 30.0, -1.0])).tolist() == ["unknown", "25-34", "unknown"]
    assert band_age([None, "x", 70]).tolist() == ["unknown", "unknown", "65+"]


def test_group_labels_and_age_in_audit():
    assert group_labels("gender", ["F", None, "", np.nan, "M"]).tolist() == [
        "F",
        "unknown",
        "unknown",
        "unknown",
        "M",
    ]
    ages = np.r_[np.full(100, 20.0), np.full(100, 70.0), np.full(60, np.nan)]
    flag = np.r_[np.ones(100, bool), np.zeros(100, bool), np.ones(60, bool)]
    res = audit({"age": ages}, high_value_flag=flag)
    a = res["attributes"]["age"]
    assert list(a["groups"]) == ["<25", "65+", "unknown"]  # age order, unknown last
    assert a["groups"]["unknown"]["n"] == 60
    assert a["demographic_parity"]["high_value_flag"]["ratio"] == 0.0
    assert a["demographic_parity"]["high_value_flag"]["lowest_group"] == "65+"
    # already banded ages are kept as they are
    banded = band_age(ages)
    assert list(audit({"age": banded}, high_value_flag=flag)["attributes"]["age"]["groups"]) == [
        "<25",
        "65+",
        "unknown",
    ]


def test_bad_inputs():
    g = np.array(["A", "B"] * 50, dtype=object)
    with pytest.raises(ValueError):
        audit({"g": g}, churn_flag=np.ones(99, bool))
    with pytest.raises(ValueError):
        audit({"g": g, "h": g[:10]})
    with pytest.raises(ValueError):
        audit({"g": g}, churn_flag=np.r_[np.ones(99), np.nan])
    with pytest.raises(ValueError):
        audit({"g": g}, threshold=0)
    with pytest.raises(ValueError):
        audit({"g": g}, min_group_size=0)


# ---------------------------------------------------------------------------------------
# Feature selection
# ---------------------------------------------------------------------------------------


def test_model_features_drops_protected_unless_allowed():
    feats = [
        "recency_days",
        "gender",
        "gender_F",
        "Gender_M",
        "region_North",
        "age",
        "agent_calls",
        "monetary_90d",
    ]
    assert model_features(feats, ["gender", "age"]) == [
        "recency_days",
        "region_North",
        "agent_calls",
        "monetary_90d",
    ]
    assert model_features(feats, ["gender", "age"], allow=True) == feats
    assert model_features(feats, []) == feats


# ---------------------------------------------------------------------------------------
# Generator: planted bias, found by the audit on the ground truth
# ---------------------------------------------------------------------------------------

N, CHUNK, SEED = 6000, 2000, 1
BIAS = {"attribute": "gender", "group": "F", "dropout": 0.5}


def _truth(out) -> pd.DataFrame:
    gt = pq.read_table(out / "ground_truth").to_pandas()
    cu = pq.read_table(out / "raw" / "customers").to_pandas()
    df = gt.merge(cu[["customer_id", "age", "gender", "region"]], on="customer_id")
    df["churn"] = ~df["buys_in_horizon"]
    return df


@pytest.fixture(scope="module")
def fair_and_biased(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairness")
    plain = generate(N, root / "plain", seed=SEED, chunk_size=CHUNK)
    biased = generate(N, root / "biased", seed=SEED, chunk_size=CHUNK, bias=BIAS)
    return (plain, _truth(root / "plain")), (biased, _truth(root / "biased"))


def test_generator_plants_the_churn_disparity(fair_and_biased):
    (plain, df0), (biased, df1) = fair_and_biased
    assert plain["bias"] is None
    assert biased["bias"] == {**BIAS, "window_days": 180}
    # the same customers with the same attributes: only behaviour changed
    pd.testing.assert_frame_equal(
        df0[["customer_id", "age", "gender", "region", "persona"]],
        df1[["customer_id", "age", "gender", "region", "persona"]],
    )
    c0 = df0.groupby("gender")["churn"].mean()
    c1 = df1.groupby("gender")["churn"].mean()
    assert abs(c0["F"] - c0["M"]) < 0.05  # no disparity without bias
    assert c1["F"] - c1["M"] > 0.2  # the planted one
    assert c1["F"] > c0["F"] + 0.2
    assert (~df1.loc[df1.gender == "F", "alive_at_end"]).mean() > (
        ~df0.loc[df0.gender == "F", "alive_at_end"]
    ).mean() + 0.2


def test_audit_finds_planted_bias_and_only_then(fair_and_biased):
    (_, df0), (_, df1) = fair_and_biased
    found = {}
    for name, df in (("plain", df0), ("biased", df1)):
        y = df["churn"].to_numpy()  # the truth as a perfect flag
        res = audit(
            {"gender": df["gender"], "age": df["age"]},
            churn_flag=y,
            y_churn=y,
            p_churn=y.astype(float),
        )
        json.dumps(res)
        found[name] = res["attributes"]["gender"]
    assert found["plain"]["demographic_parity"]["churn_flag"]["ratio"] >= 0.8
    assert found["plain"]["flags"] == []
    dp = found["biased"]["demographic_parity"]["churn_flag"]
    assert dp["ratio"] < 0.8
    assert dp["highest_group"] == "F"
    assert len(found["biased"]["flags"]) == 1 and "'F'" in found["biased"]["flags"][0]
    # a perfect flag: TPR 1 everywhere, so no equal-opportunity gap despite the DP gap
    assert found["biased"]["equal_opportunity"]["churn_flag"]["difference"] == 0.0


def test_bias_argument_is_validated(tmp_path):
    with pytest.raises(ValueError):
        generate(10, tmp_path / "a", bias={"attribute": "age", "group": "F", "dropout": 0.5})
    with pytest.raises(ValueError):
        generate(10, tmp_path / "b", bias={"attribute": "gender", "group": "Q", "dropout": 0.5})
    with pytest.raises(ValueError):
        generate(10, tmp_path / "c", bias={"attribute": "gender", "group": "F", "dropout": 2})
    with pytest.raises(ValueError):
        generate(10, tmp_path / "d", bias={"attribute": "gender", "group": "F"})
    with pytest.raises(ValueError):
        generate(
            10,
            tmp_path / "e",
            bias={"attribute": "gender", "group": "F", "dropout": 0.5, "extra": 1},
        )
