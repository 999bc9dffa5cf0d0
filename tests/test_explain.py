"""The compiled tree walk agrees with XGBoost: predictions (``inplace_predict``) and
approximate contributions (``pred_contribs``, ``approx_contribs``), with missing values,
for each objective bigseg trains; and the partial sorts equal the stable full sorts they
replace."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from bigseg.predict import drivers, explain, segmented


def _data(n=3000, d=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X[rng.random((n, d)) < 0.1] = np.nan  # missing values take the default branch
    y = np.nan_to_num(X[:, 0]) * 2 - np.nan_to_num(X[:, 1]) + rng.standard_normal(n)
    return X, y


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:tweedie", "reg:squarederror"])
def test_walk_matches_xgboost(objective):
    X, y = _data()
    label = {
        "binary:logistic": (y > 0).astype(np.float32),
        "reg:tweedie": np.exp(y / 2).astype(np.float32),
        "reg:squarederror": y.astype(np.float32),
    }[objective]
    b = xgb.train(
        {"objective": objective, "max_depth": 4, "nthread": 1, "eta": 0.3},
        xgb.DMatrix(X, label=label),
        num_boost_round=40,
    )
    model = bytes(b.save_raw("ubj"))
    pred, contrib = explain.predict_explain(model, X)
    np.testing.assert_allclose(pred, b.inplace_predict(X), rtol=2e-5, atol=2e-6)
    ref = b.predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=True)[:, :-1]
    np.testing.assert_allclose(contrib, ref, rtol=1e-4, atol=1e-5)
    only, none = explain.predict_explain(model, X, contribs=False)
    assert none is None and np.array_equal(only, pred)
    empty, c0 = explain.predict_explain(model, X[:0])
    assert empty.shape == (0,) and c0.shape == (0, X.shape[1])


def test_segment_models_route_rows():
    """Rows of a segment whose own model was chosen are scored (and explained) by it."""
    X, y = _data(seed=1)
    segs = np.where(np.nan_to_num(X[:, 2]) > 0, 1, 0).astype(np.int32)
    lab = (y > 0).astype(np.float32)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}
    glob = xgb.train(params, xgb.DMatrix(X, label=lab), num_boost_round=20)
    own = xgb.train(params, xgb.DMatrix(X[segs == 1], label=lab[segs == 1]), num_boost_round=10)
    models = {"global": bytes(glob.save_raw("ubj")), 1: bytes(own.save_raw("ubj"))}
    pred, contrib = segmented.predict_explain(X, segs, models, {0: "global", 1: "segment"})
    want = glob.inplace_predict(X)
    want[segs == 1] = own.inplace_predict(X[segs == 1])
    np.testing.assert_allclose(pred, want, rtol=2e-5, atol=2e-6)
    exact = segmented.predict_explain(X, segs, models, {1: "segment"}, "exact")[1]
    ref = own.predict(xgb.DMatrix(X[segs == 1]), pred_contribs=True)[:, :-1]
    np.testing.assert_allclose(exact[segs == 1], ref, rtol=1e-4, atol=1e-5)
    assert segmented.predict_explain(X, segs, models, {}, "off")[1] is None


def test_top_order_equals_stable_argsort():
    rng = np.random.default_rng(3)
    v = rng.integers(-3, 4, size=(5000, 9)).astype(np.float32)  # many ties
    v[::7] = 0
    v[1::11, 3] = np.nan  # NaN after every number, as a sort puts it
    v[2::13, 5] = -np.inf
    for n in (1, 3, 9, 12):
        want = np.argsort(-v, axis=1, kind="stable")[:, :n]
        assert np.array_equal(drivers.top_order(v, n), want)
        want = np.argsort(-np.abs(v), axis=1, kind="stable")[:, :n]
        assert np.array_equal(drivers.top_order(v, n, absolute=True), want)


def test_top_drivers_text():
    c = np.array([[0.5, -1.234, 0.0, 0.004], [0.0, 0.0, 0.0, 0.0]], np.float32)
    d = drivers.top_drivers(c, ["a", "b", "c", "d"], 3)
    assert [x[0] for x in d] == ["b -1.23", "a +0.50", "d +0.00"]
    assert [x[1] for x in d] == ["a +0.00", "b +0.00", "c +0.00"]
