"""BG/NBD and Gamma-Gamma CLV models: the published CDNOW fits, simulation checks, edges."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bigseg.features.clv import (
    BGNBD,
    GammaGamma,
    clv_features,
    fit_bgnbd,
    fit_gamma_gamma,
    rfm_to_bgnbd_inputs,
)

# Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing Science
# 24(2): CDNOW cohort, 2357 customers, weeks; table/text of section 4
CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
CDNOW_LL = -9582.4


def _datasets() -> Path:
    # lifetimes is installed for its data only: find its folder without importing it
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lifetimes (CDNOW sample data) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets"


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(_datasets() / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_model(cdnow) -> BGNBD:
    return fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def test_cdnow_reproduces_the_published_bgnbd_fit(cdnow, cdnow_model):
    assert len(cdnow) == 2357
    m = cdnow_model
    assert m.converged and m.n == 2357
    for k, v in CDNOW_BGNBD.items():
        assert getattr(m, k) == pytest.approx(v, rel=0.01), k
    assert m.log_likelihood == pytest.approx(CDNOW_LL, abs=0.1)


def test_cdnow_gamma_gamma_matches_the_published_fit():
    # the lifetimes file's columns are ID, x (frequency), t_x, T, zbar (mean repeat spend);
    # lifetimes renames them to frequency/recency/T/monetary_value
    d = pd.read_csv(_datasets() / "cdnow_customers_summary_with_transactions.csv")
    gg = fit_gamma_gamma(d["x"], d["zbar"])
    # Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value", and the lifetimes
    # docs: p = 6.25, q = 3.74, v = 15.44 (lifetimes prints 15.45) on the 946 repeat buyers
    assert gg.n == 946 and gg.converged
    assert gg.p == pytest.approx(6.25, rel=0.01)
    assert gg.q == pytest.approx(3.74, rel=0.01)
    assert gg.v == pytest.approx(15.44, rel=0.01)
    # rows with x == 0 or m <= 0 are ignored, so adding some changes nothing
    gg2 = fit_gamma_gamma(np.r_[d["x"], 0, 3], np.r_[d["zbar"], 10.0, 0.0])
    assert gg2.p == pytest.approx(gg.p, rel=1e-6) and gg2.n == 946
    # conditional mean: shrinks m toward the population mean p v / (q - 1)
    pop = gg.p * gg.v / (gg.q - 1)
    assert gg.expected_average_value(0, 50.0) == pytest.approx(pop)
    e = gg.expected_average_value(np.array([1.0, 10.0, 1000.0]), np.array([50.0] * 3))
    assert pop < e[0] < e[1] < e[2] < 50.0 and e[2] == pytest.approx(50.0, rel=0.01)


def test_expected_purchases_matches_the_paper_example(cdnow_model):
    # paper, section 4: customer with x=2, t_x=30.43, T=38.86 weeks, next 39 weeks: 1.226
    e = cdnow_model.expected_purchases(39, 2, 30.43, 38.86)
    assert e == pytest.approx(1.226, abs=0.002)


def _simulate_future(m: BGNBD, x, t_x, T, t, n, rng) -> float:
    """Brute-force E[purchases in (T, T+t]]: draw (alive, lambda, p) from the exact
    posterior, a mixture of Gamma x Beta components (alive: lambda ~ Gamma(r+x, alpha+T),
    p ~ Beta(a, b+x); dead: weight a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), then run the
    purchase process: exponential gaps, dropout with probability p after each purchase."""
    alive = rng.random(n) < m.prob_alive(x, t_x, T)
    lam = rng.gamma(m.r + x, 1.0 / (m.alpha + T), n)
    p = rng.beta(m.a, m.b + x, n)
    clock, count, active = np.zeros(n), np.zeros(n), alive.copy()
    while active.any():
        clock[active] += rng.exponential(1.0 / lam[active])
        active &= clock <= t
        count += active
        active &= rng.random(n) >= p
    return float(count.mean())


@pytest.mark.parametrize(
    "x,t_x,T,t",
    [
        (0, 0.0, 38.86, 39),
        (2, 30.43, 38.86, 39),
        (7, 20.0, 38.86, 52),
        (15, 35.0, 38.0, 20),
        (300, 159.0, 160.0, 39),
    ],
)
def test_expected_purchases_matches_a_simulation(cdnow_model, x, t_x, T, t):
    rng = np.random.default_rng(x)
    sim = _simulate_future(cdnow_model, x, t_x, T, t, 400_000, rng)
    assert cdnow_model.expected_purchases(t, x, t_x, T) == pytest.approx(sim, rel=0.03)


def test_fit_recovers_the_parameters_of_simulated_data():
    rng = np.random.default_rng(7)
    true, n = BGNBD(r=0.8, alpha=6.0, a=1.5, b=4.0), 20_000
    lam, p = rng.gamma(true.r, 1 / true.alpha, n), rng.beta(true.a, true.b, n)
    T = rng.uniform(20, 80, n)
    clock, x, t_x, active = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n, bool)
    while active.any():
        clock[active] += rng.exponential(1.0 / lam[active])
        active &= clock <= T
        x += active
        t_x = np.where(active, clock, t_x)
        active &= rng.random(n) >= p
    m = fit_bgnbd(x, t_x, T)
    assert m.converged
    for k in ("r", "alpha", "a", "b"):
        assert getattr(m, k) == pytest.approx(getattr(true, k), rel=0.2), k


def test_prob_alive_and_extreme_inputs(cdnow_model):
    m = cdnow_model
    assert np.all(m.prob_alive(np.zeros(3), np.zeros(3), np.array([1.0, 50, 1000])) == 1.0)
    pa = m.prob_alive(3, 10.0, np.array([10.0, 20, 40, 80, 160]))
    assert 0 < pa[-1] and np.all(np.diff(pa) < 0) and pa[0] < 1  # t_x == T: not surely alive
    x = np.array([0, 1, 50, 300, 300, 300], float)
    t_x = np.array([0, 0.01, 80, 1, 159.9, 160], float)
    T = np.full(6, 160.0)
    for out in (
        m.prob_alive(x, t_x, T),
        m.expected_purchases(39, x, t_x, T),
        m.expected_purchases(1000, x, t_x, T),
    ):
        assert np.all(np.isfinite(out)) and np.all(out >= 0)
    # an x=300 buyer active at the cutoff keeps buying near his posterior mean rate
    rate = (m.r + 300) / (m.alpha + 160)
    assert 0.8 * 39 * rate < m.expected_purchases(39, 300, 160, 160) < 39 * rate
    assert m.expected_purchases(0, x, t_x, T) == pytest.approx(np.zeros(6), abs=1e-12)


def test_weights_on_aggregated_triples_match_the_expanded_fit(cdnow, cdnow_model):
    agg = cdnow.groupby(["frequency", "recency", "T"]).size().reset_index(name="n")
    assert len(agg) < len(cdnow)
    m = fit_bgnbd(agg["frequency"], agg["recency"], agg["T"], weights=agg["n"])
    for k in ("r", "alpha", "a", "b", "log_likelihood", "n"):
        assert getattr(m, k) == pytest.approx(getattr(cdnow_model, k), rel=1e-5), k


def test_time_unit_only_rescales_alpha(cdnow, cdnow_model):
    days = fit_bgnbd(cdnow["frequency"], cdnow["recency"] * 7, cdnow["T"] * 7)
    assert days.alpha == pytest.approx(cdnow_model.alpha * 7, rel=1e-4)
    assert days.r == pytest.approx(cdnow_model.r, rel=1e-4)
    shift = cdnow["frequency"].sum() * np.log(7)
    assert days.log_likelihood == pytest.approx(cdnow_model.log_likelihood - shift, abs=1e-3)


def test_penalizer_shrinks_toward_one(cdnow, cdnow_model):
    m = fit_bgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"], penalizer=0.1)
    assert abs(np.log(m.r)) < abs(np.log(cdnow_model.r))
    assert m.log_likelihood < cdnow_model.log_likelihood


@pytest.mark.parametrize(
    "args,msg",
    [
        (([1.0, 2.0], [5.0, 11.0], [10.0, 10.0]), "t_x > T"),
        (([1.0, -1.0], [5.0, 5.0], [10.0, 10.0]), "negative"),
        (([], [], []), "empty"),
        (([1.0], [np.nan], [10.0]), "NaN"),
        (([1.0, 2.0], [5.0], [10.0, 10.0]), "expected 2"),
    ],
)
def test_bad_input_raises(args, msg):
    with pytest.raises(ValueError, match=msg):
        fit_bgnbd(*args)


def test_gamma_gamma_bad_input_raises():
    with pytest.raises(ValueError, match="empty"):
        fit_gamma_gamma([], [])
    with pytest.raises(ValueError, match="no customers"):
        fit_gamma_gamma([0.0, 0.0], [5.0, 5.0])


def test_dict_round_trip_is_json_safe(cdnow_model):
    gg = GammaGamma(6.25, 3.74, 15.44, log_likelihood=-4055.9, n=946.0)
    for model in (cdnow_model, gg):
        d = json.loads(json.dumps(model.to_dict(), allow_nan=False))
        assert type(model).from_dict(d) == model
    d = json.loads(json.dumps(GammaGamma(6.25, 3.74, 15.44).to_dict(), allow_nan=False))
    assert d["log_likelihood"] is None and np.isnan(GammaGamma.from_dict(d).log_likelihood)


def test_clv_features(cdnow_model):
    gg = GammaGamma(6.25, 3.74, 15.44)
    rng = np.random.default_rng(1)
    n = 10_000
    T = rng.uniform(0, 160, n)
    t_x = T * rng.random(n)
    x = rng.integers(0, 300, n).astype(float)
    m = rng.gamma(2, 20, n)
    f = clv_features(x, t_x, T, m, cdnow_model, gg, horizon=52)
    assert set(f) == {
        "clv_prob_alive",
        "clv_expected_purchases",
        "clv_expected_aov",
        "clv_expected_value",
    }
    assert all(v.shape == (n,) and np.all(np.isfinite(v)) for v in f.values())
    assert np.allclose(f["clv_expected_value"], f["clv_expected_purchases"] * f["clv_expected_aov"])
    assert np.all((f["clv_prob_alive"] >= 0) & (f["clv_prob_alive"] <= 1))


def test_rfm_to_bgnbd_inputs():
    x, t_x, T = rfm_to_bgnbd_inputs(
        np.array([1.0, 3.0]), np.array([14.0, 7.0]), np.array([14.0, 70.0])
    )
    np.testing.assert_allclose(x, [0, 2])
    np.testing.assert_allclose(T, [2, 10])
    np.testing.assert_allclose(t_x, [0, 9])


def test_expected_purchases_stay_finite_when_dropout_vanishes():
    from bigseg.features.clv import BGNBD

    m = BGNBD(r=1.08, alpha=4.4, a=41630.0, b=3269017.0)
    x, t_x, T = np.array([0.0, 3, 40]), np.array([0.0, 20, 100]), np.array([50.0, 60, 110])
    e = m.expected_purchases(13.0, x, t_x, T)
    assert np.isfinite(e).all() and (e > 0).all()
    # the no-dropout (NBD) limit: posterior mean rate times the horizon, if alive
    np.testing.assert_allclose(
        e / m.prob_alive(x, t_x, T), (1.08 + x) / (4.4 + T) * 13.0, rtol=0.05
    )


def test_bgnbd_likelihood_evaluates_where_a_parameter_underflows():
    """Nelder-Mead (the fallback when L-BFGS-B fails) is not bounded: at log-parameters
    where exp() underflows to 0 the likelihood must give a non-finite value, as NumPy
    does, and not raise (the compiled pass once raised ZeroDivisionError there)."""
    from bigseg.features.clv import _bgnbd_nll

    x = np.array([0.0, 1.0, 3.0])
    t_x = np.array([0.0, 0.5, 2.0])
    T = np.array([1.0, 2.0, 3.0])
    xs = (x, *np.unique(x, return_inverse=True))
    f, g = _bgnbd_nll(np.array([0.0, -800.0, 0.0, -800.0]), xs, t_x, T, np.ones(3), 0.0)
    assert not np.isfinite(f) or not np.all(np.isfinite(g))
    f, g = _bgnbd_nll(np.zeros(4), xs, t_x, T, np.ones(3), 0.0)
    assert np.isfinite(f) and np.all(np.isfinite(g))
