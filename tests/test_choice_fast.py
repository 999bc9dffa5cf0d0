"""The client-side choice's fast paths give what the straightforward computations give:
the incremental AUC of the coordinate ascent, the DeLong components, warm-started
Newton fits, the served shares."""

from __future__ import annotations

import numpy as np
import pytest

from bigseg.predict import blend, evaluate
from bigseg.predict.ranking import (
    SwitchedAUC,
    _delong_components,
    auc_difference,
    auc_interval,
    auc_interval_and_difference,
    mean_ranks,
    roc_auc,
)


def _scores(rng, n: int, levels: int) -> np.ndarray:
    """Scores with heavy ties (``levels`` values), or continuous (0)."""
    s = rng.random(n)
    return np.round(s * (levels - 1)) / (levels - 1) if levels else s


@pytest.mark.parametrize("levels", [0, 5, 40])
def test_switched_auc_is_the_auc_of_the_assembled_score(levels):
    rng = np.random.default_rng(levels)
    n = 3000
    y = rng.random(n) < 0.3
    segs = rng.integers(0, 6, n)  # segment 5 is in no part; segment 4 has no rows
    segs[segs == 4] = 3
    cand = {name: _scores(rng, n, levels) for name in ("model", "bgnbd", "blend")}
    parts = {k: np.flatnonzero(segs == k) for k in range(5)}
    assign = {k: "model" for k in parts}
    auc = SwitchedAUC(y, cand, parts, assign)
    for _ in range(12):  # a random walk of switches, every trial checked
        k = int(rng.integers(0, 5))
        got = auc.trials(k)
        for name, v in got.items():
            s = auc.score.copy()
            s[parts[k]] = cand[name][parts[k]]
            assert v == roc_auc(y, s)  # exactly: pairs counted in halves
        name = str(rng.choice(list(cand)))
        auc.switch(k, name)
        assign[k] = name
        ref = cand["model"].copy()
        for j, a in assign.items():
            ref[parts[j]] = cand[a][parts[j]]
        assert np.array_equal(auc.score, ref)


def _old_ascend(target, y, preds, masks, search):
    """The ascent as it was: every trial re-scores the whole search sample."""
    assign, cur = {sid: "model" for sid in masks}, preds["model"].copy()
    trials: dict = {}
    for _ in range(3):
        changed = False
        for sid in sorted(masks, key=lambda s: -int(masks[s].sum())):
            rows = masks[sid]
            if not rows.any():
                continue
            trial, saved = {}, cur[rows]
            for src in blend.SOURCES:
                cur[rows] = preds[src][rows]
                trial[src] = blend._score(target, y[search], cur[search])
            cur[rows] = saved
            trials[sid] = trial
            if any(v is None for v in trial.values()):
                continue
            best = max(blend.SOURCES, key=lambda s: (trial[s], -blend.SOURCES.index(s)))
            if trial[best] > trial[assign[sid]] + blend.MARGIN:
                assign[sid], changed = best, True
                cur[rows] = preds[best][rows]
        if not changed:
            break
    return assign, trials, cur


@pytest.mark.parametrize("target", ["churn", "value"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ascent_matches_the_full_rescoring(target, seed):
    rng = np.random.default_rng(seed)
    n = 4000
    z = rng.normal(size=n)
    segs = rng.integers(0, 5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * z))).astype(np.float64)
    if target == "value":
        y = np.maximum(z + rng.normal(size=n), 0)
    # each source good in some segments, noise in others; rounded: ties across sources
    preds = {
        s: np.round(np.where(segs % 3 == i, z, rng.normal(size=n)) * 4) / 4 + 5
        for i, s in enumerate(blend.SOURCES)
    }
    masks = {k: segs == k for k in range(6)}  # segment 5: no rows
    search = rng.random(n) < 0.7
    for k in (0, 1):
        masks[k] = masks[k] & (rng.random(n) < 0.8)  # rows in no mask keep the model
    got = blend._ascend(target, y, preds, masks, search)
    ref = _old_ascend(target, y, preds, masks, search)
    assert got[0] == ref[0] and got[1] == ref[1]
    assert np.array_equal(got[2], ref[2])


def test_delong_components_are_the_mean_rank_differences():
    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.4
    a, b = _scores(rng, 2000, 7), _scores(rng, 2000, 0).astype(np.float32)
    v10, v01 = _delong_components(y, [a, b])
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    for i, s in enumerate((a, b)):
        r = mean_ranks(s)
        assert np.array_equal(v10[i], (r[pos] - mean_ranks(s[pos])) / neg.size)
        assert np.array_equal(v01[i], 1.0 - (r[neg] - mean_ranks(s[neg])) / pos.size)
    one, lead = auc_interval_and_difference(y, a, b)
    assert one == auc_interval(y, a) and lead == auc_difference(y, a, b)


def _old_newton(X, y, ridge=1e-6):
    w = np.zeros(X.shape[1])
    lam = ridge * len(y)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ w, -30, 30)))
        H = (X * (p * (1 - p))[:, None]).T @ X + lam * np.eye(X.shape[1])
        step = np.linalg.solve(H, X.T @ (p - y) + lam * w)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


@pytest.mark.parametrize("n", [500, 70_000])  # the larger starts from a subsample's fit
def test_warm_started_newton_ends_at_the_cold_fit(n):
    rng = np.random.default_rng(n)
    p = rng.random(n)
    e = rng.gamma(1.0, 2.0, n)
    y = (rng.random(n) < p).astype(np.float64)
    for source in ("bgnbd", "blend"):
        X = blend._design("churn", source, p, e)
        ref = _old_newton(X, y)
        for start in (None, np.zeros(X.shape[1]), ref + 0.3):
            got = blend._fit_logistic(X, y, start=start)
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("target", ["churn", "value"])
def test_out_of_fold_predictions_are_each_folds_own_fit(target):
    rng = np.random.default_rng(5)
    n = 3000
    p, e = rng.random(n), rng.gamma(1.0, 2.0, n)
    y = (rng.random(n) < p).astype(np.float64) if target == "churn" else rng.gamma(1, 3, n)
    rows = np.flatnonzero(rng.random(n) < 0.8)
    half = rng.random(n) < 0.5
    X = blend._design(target, "blend", p, e)
    out = np.full(n, np.nan)
    coef = blend._oof(target, (X, np.ascontiguousarray(X.T)), y, rows, half, out)
    np.testing.assert_allclose(coef, blend.fit(target, "blend", p[rows], e[rows], y[rows]), 1e-9)
    for fold in (half, ~half):
        train, test = rows[~fold[rows]], rows[fold[rows]]
        c = blend.fit(target, "blend", p[train], e[train], y[train])
        ref = blend.apply(target, "blend", c, p[test], e[test])
        np.testing.assert_allclose(out[test], ref, rtol=1e-6)
    assert np.isnan(np.delete(out, rows)).all()


def test_served_shares_count_every_row_once():
    segs = np.array([0, 0, 1, 2, 2, 2, 3, 7])
    choice = {0: {"served": "bgnbd"}, 1: {"served": "model"}, 2: {"served": "blend"}, 3: {}}
    got = evaluate.served_shares(choice, segs)
    assert got == {"model": 3 / 8, "bgnbd": 2 / 8, "blend": 3 / 8}
    assert list(got) == ["model", "bgnbd", "blend"]
    assert evaluate.served_shares({0: {"served": "bgnbd"}}, np.zeros(4, int)) == {"bgnbd": 1.0}
