"""Serving the model, BG/NBD or a blend per segment, and AUC intervals (issue 19 item 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bigseg.predict import blend
from bigseg.predict.ranking import auc_difference, auc_interval, roc_auc


def _data(n: int, seed: int, model_noise: float, bgnbd_noise: float):
    """Churn labels from a latent propensity; the model's probability and BG/NBD's
    expected purchases each see it through their own noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * z))).astype(np.float64)
    p = 1 / (1 + np.exp(-(z + rng.normal(0, model_noise, n))))
    e = np.exp(-(z + rng.normal(0, bgnbd_noise, n)))  # more expected purchases: less churn
    segs = (rng.random(n) < 0.5).astype(np.int64)
    u = rng.random(n)
    return y, p, e, segs, u


def test_delong_interval_matches_a_paired_bootstrap():
    y, p, e, _, _ = _data(4000, 1, 1.0, 1.2)
    one = auc_interval(y, p)
    assert abs(one["auc"] - roc_auc(y.astype(bool), p)) < 1e-12
    assert one["low"] < one["auc"] < one["high"]
    diff = auc_difference(y, p, -e)
    rng = np.random.default_rng(0)
    boot_one, boot_diff = [], []
    for _ in range(300):
        ix = rng.integers(0, len(y), len(y))
        a = roc_auc(y[ix].astype(bool), p[ix])
        boot_one.append(a)
        boot_diff.append(a - roc_auc(y[ix].astype(bool), -e[ix]))
    # a bootstrap SE from 300 resamples is itself within ~4 % (1/sqrt(2*300)) of the
    # truth at one sigma: 20 % is five sigmas
    assert abs(one["se"] / np.std(boot_one) - 1) < 0.2
    assert abs(diff["se"] / np.std(boot_diff) - 1) < 0.2
    # the same score twice: no difference, no uncertainty
    same = auc_difference(y, p, p)
    assert same["difference"] == 0 and same["se"] == 0


def test_bgnbd_serves_where_the_model_is_noise_and_the_model_where_it_is_not():
    y, p_good, e_good, segs, u = _data(6000, 2, 0.5, 3.0)
    _, p_bad, e_bad, _, _ = _data(6000, 2, 30.0, 0.5)
    # segment 0: the model sees the propensity, BG/NBD hardly; segment 1: the reverse
    p = np.where(segs == 0, p_good, p_bad)
    e = np.where(segs == 0, e_good, e_bad)
    coef, choice, served = blend.choose("churn", y, segs, p, e, u, [0, 1])
    assert choice[0]["served"] in ("model", "blend")
    assert choice[1]["served"] in ("bgnbd", "blend")
    for s in (0, 1):
        rec = choice[s]  # chosen by the AUC over all customers, the segment switched
        best = max(rec[f"overall_auc_{k}"] for k in blend.SOURCES)
        assert rec[f"overall_auc_{rec['served']}"] >= best - blend.MARGIN
    # out-of-fold served predictions beat either source alone over all customers
    yb = y.astype(bool)
    assert roc_auc(yb, served) > max(roc_auc(yb, p), roc_auc(yb, -e))
    # each segment BG/NBD or the blend serves has its map: 2 or 3 coefficients
    assert set(coef) == {str(s) for s in (0, 1) if choice[s]["served"] != "model"}
    assert len(coef["1"]) == (2 if choice[1]["served"] == "bgnbd" else 3)


def test_serve_maps_only_the_chosen_segments_and_keeps_the_model_without_bgnbd():
    p = np.array([0.2, 0.8, 0.5, 0.5], np.float32)
    segs = np.array([0, 1, 1, 1])
    frame = pd.DataFrame({"clv_expected_purchases": [1.0, 0.1, np.nan, 3.0]})
    coef = {"1": [0.5, -1.0]}
    out, alone = blend.serve("churn", p, segs, frame, {0: "model", 1: "bgnbd"}, coef)
    assert out[0] == p[0] and out[2] == p[2]  # segment 0; and a row with no BG/NBD
    expect = 1 / (1 + np.exp(-(0.5 - np.log1p([0.1, 3.0]))))
    np.testing.assert_allclose(out[[1, 3]], expect, rtol=1e-6)
    assert alone.tolist() == [False, True, False, True]


def test_value_blend_is_a_least_squares_fit_and_never_negative():
    rng = np.random.default_rng(3)
    ev = rng.gamma(2.0, 20.0, 3000)
    y = 0.6 * ev + rng.normal(0, 5, 3000)
    p = rng.gamma(2.0, 20.0, 3000)  # a model that knows nothing
    coef = blend.fit("value", "bgnbd", p, ev, y)
    assert abs(coef[1] - 0.6) < 0.02
    assert (blend.apply("value", "blend", [-100.0, 0.1, 0.1], p, ev) >= 0).all()
