"""Which prediction serves each segment: the model, the BG/NBD baseline, or a blend.

BG/NBD is hard to beat early in customers' lives, when a model trained on younger
customers scores older ones; the model wins where behaviour beyond purchase counts
matters. The backtest (fitted one horizon earlier, judged on the last labelled window)
decides per target and segment, so the product is never worse there than the classic
model it competes with:

- **model**: the XGBoost prediction as chosen per segment (global or the segment's own);
- **bgnbd**: BG/NBD's expected purchases (churn) or expected spend (value), mapped to the
  target's scale by a fit on the backtest rows (logistic for churn, linear for value);
- **blend**: both inputs in one such fit (the model's logit and BG/NBD's log expected
  purchases; for value, the two spends).

The maps have two or three coefficients, fitted on each segment's backtest rows (or on
every segment's, for a small one). Each source is judged out of fold (two halves of the customers by a stable hash, each half predicted
by the fit on the other), so the blend's fit never grades itself, and on the metric
over all customers (see :func:`choose`). Ties go to the model.
Response has no BG/NBD analogue: the model serves it.
"""

from __future__ import annotations

import numpy as np

from bigseg.predict.ranking import SwitchedAUC, roc_auc

SOURCES = ("model", "bgnbd", "blend")
#: the BG/NBD column each target is compared with
BGNBD_COLUMN = {"churn": "clv_expected_purchases", "value": "clv_expected_value"}
#: a source must beat the model by more than this (AUC points, or a share of the RMSE)
#: to serve: below it the difference is noise on a few thousand customers
MARGIN = 1e-4


def _design(target: str, source: str, p: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The inputs of a source's map: an intercept, then the model's logit (churn) or
    prediction (value) for ``blend``, then BG/NBD's log1p expected purchases (churn) or
    expected spend (value)."""
    e = np.maximum(np.asarray(e, np.float64), 0.0)
    xe = np.log1p(e) if target == "churn" else e
    cols = [np.ones(len(e))]
    if source == "blend":
        p = np.asarray(p, np.float64)
        if target == "churn":
            q = np.clip(p, 1e-6, 1 - 1e-6)
            cols.append(np.log(q / (1 - q)))
        else:
            cols.append(p)
    cols.append(xe)
    return np.column_stack(cols)


def _fit_logistic(
    X: np.ndarray, y: np.ndarray, ridge: float = 1e-6, start: np.ndarray | None = None
) -> np.ndarray:
    """Logistic regression by Newton's method (a few columns, so exact and fast); a tiny
    ridge keeps it finite when a column separates the classes. ``start``: where Newton
    begins (the objective is strictly convex, so any start ends at the same
    coefficients; a near one saves iterations). Without one, a large fit begins from
    the fit on every 16th row."""
    if start is None and len(y) >= 64_000:
        start = _fit_logistic(X[::16], y[::16], ridge)
    # columns as rows: each pass over the data is a contiguous product
    Xt = np.ascontiguousarray(X.T)
    w = np.zeros(X.shape[1]) if start is None else np.array(start, np.float64)
    lam = ridge * len(y)
    for _ in range(50):
        z = w @ Xt
        np.minimum(np.maximum(z, -30, out=z), 30, out=z)  # np.clip, without its overhead
        p = 1.0 / (1.0 + np.exp(-z))
        g = Xt @ (p - y) + lam * w
        # the weighted Gram of the few columns, without a weighted copy of X
        H = np.einsum("in,n,jn->ij", Xt, p * (1 - p), Xt) + lam * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-9:  # Newton is quadratic here: w is converged
            break
    return w


def _fit(target: str, X: np.ndarray, y: np.ndarray, start=None) -> np.ndarray:
    if target == "churn":
        return _fit_logistic(X, y, start=start)
    return np.linalg.lstsq(X, y, rcond=None)[0]


def _map(target: str, X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    z = X @ np.asarray(coef, np.float64)
    if target == "churn":
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)
    return np.maximum(z, 0.0).astype(np.float32)


def fit(target: str, source: str, p: np.ndarray, e: np.ndarray, y: np.ndarray) -> list[float]:
    """Coefficients of ``source``'s map fitted on rows (model prediction ``p``, BG/NBD
    ``e``, label ``y``)."""
    w = _fit(target, _design(target, source, p, e), np.asarray(y, np.float64))
    return [float(v) for v in w]


def apply(target: str, source: str, coef, p: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The served prediction of ``source`` (float32); ``model`` is ``p`` itself."""
    if source == "model":
        return np.asarray(p, np.float32)
    return _map(target, _design(target, source, p, e), coef)


def _score(target: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """Higher is better: AUC for churn, minus the RMSE for value."""
    if target == "churn":
        yb = y.astype(bool)
        return None if yb.all() or not yb.any() else roc_auc(yb, p)
    return -float(np.sqrt(np.mean((y - p) ** 2))) if len(y) else None


#: a segment's own maps need this many backtest rows in each fold (and, for churn, of
#: each class); a smaller segment is served by the maps fitted on every segment's rows
MIN_FIT_ROWS, MIN_FIT_CLASS = 200, 20


def _enough(target: str, y: np.ndarray) -> bool:
    if target == "churn":
        return min(int((y > 0.5).sum()), int((y <= 0.5).sum())) >= MIN_FIT_CLASS
    return len(y) >= MIN_FIT_ROWS


#: the choice is searched on at most this many backtest rows (a stable sample): the
#: AUC's standard error there is about 0.001, and each trial is one sort
SEARCH_ROWS = 200_000


def _oof(target: str, design: tuple, y, rows: np.ndarray, half, out: np.ndarray) -> list:
    """The map of ``design`` (the matrix, and its transpose made contiguous) fitted on
    ``rows`` (indices), returned; each fold of ``rows`` predicted into ``out`` by the
    map fitted on the other fold. A fold's fit starts from the whole fit's
    coefficients, a few Newton steps from its own."""
    # the fits take the columns as rows (contiguous passes), the maps X's own rows;
    # np.take gathers several times faster than fancy indexing a 2-D array
    X, Xt = design
    w = _fit(target, np.take(Xt, rows, axis=1).T, np.take(y, rows))
    fold = np.take(half, rows)
    for train, test in ((rows[~fold], rows[fold]), (rows[fold], rows[~fold])):
        c = _fit(target, np.take(Xt, train, axis=1).T, np.take(y, train), w)
        out[test] = _map(target, np.take(X, test, axis=0), [float(v) for v in c])
    return [float(v) for v in w]


def _predictions(target: str, p, e, y, ok, segs, ids, half) -> tuple[dict, dict]:
    """Each source's out-of-fold predictions and maps: a segment with rows enough in
    both folds gets maps of its own (its calibration is its own), the others share
    the maps fitted on every segment (under ``"*"``)."""
    designs = {}
    for s in ("bgnbd", "blend"):
        X = _design(target, s, p, e)
        designs[s] = X, np.ascontiguousarray(X.T)
    preds, maps = {"model": p}, {}
    for s, d in designs.items():
        preds[s] = np.full(len(y), np.nan)
        maps[s] = {"*": _oof(target, d, y, np.flatnonzero(ok), half, preds[s])}
    for sid in ids:
        rows = ok & (segs == sid)
        if _enough(target, y[rows & half]) and _enough(target, y[rows & ~half]):
            for s, d in designs.items():
                maps[s][int(sid)] = _oof(target, d, y, np.flatnonzero(rows), half, preds[s])
    return preds, maps


def _ascend(target: str, y, preds: dict, masks: dict, search) -> tuple[dict, dict, np.ndarray]:
    """Coordinate ascent on the metric over the ``search`` rows: from the model
    everywhere, largest segment first, each segment switched to the source that raises
    the metric by more than :data:`MARGIN`, until a pass changes nothing. Returns the
    assignment, each segment's last trial (metric per source) and the served vector."""
    assign = {sid: "model" for sid in masks}
    idx = np.flatnonzero(search)
    ys = y[idx]
    parts = {sid: np.flatnonzero(m[idx]) for sid, m in masks.items()}
    metric = _SearchMetric(target, ys, {s: preds[s][idx] for s in SOURCES}, parts)
    trials: dict = {}
    for _ in range(3):
        changed = False
        for sid in sorted(masks, key=lambda s: -int(masks[s].sum())):
            if not masks[sid].any():
                continue
            trial = trials[sid] = metric.trials(sid)
            if any(v is None for v in trial.values()):
                continue
            best = max(SOURCES, key=lambda s: (trial[s], -SOURCES.index(s)))
            if trial[best] > trial[assign[sid]] + MARGIN:
                assign[sid], changed = best, True
                metric.switch(sid, best)
        if not changed:
            break
    served = preds["model"].copy()
    for sid, rows in masks.items():
        served[rows] = preds[assign[sid]][rows]
    return assign, trials, served


class _SearchMetric:
    """:func:`_score` over the search rows as one segment's source is switched at a
    time: the AUC by pair counts (:class:`~bigseg.predict.ranking.SwitchedAUC`), the
    RMSE over the assembled vector (one pass; no sort to save)."""

    def __init__(self, target: str, y: np.ndarray, sources: dict, parts: dict):
        self.target, self.y, self.sources, self.parts = target, y, sources, parts
        yb = y.astype(bool)
        self.auc = None  # one class only: every trial is None, as _score gives
        if target == "churn" and yb.any() and not yb.all():
            self.auc = SwitchedAUC(yb, sources, parts, {sid: "model" for sid in parts})
        self.cur = sources["model"].copy()

    def trials(self, sid) -> dict:
        if self.auc is not None:
            return self.auc.trials(sid)
        rows = self.parts[sid]
        trial, saved = {}, self.cur[rows]
        for src in SOURCES:
            self.cur[rows] = self.sources[src][rows]
            trial[src] = _score(self.target, self.y, self.cur)
        self.cur[rows] = saved
        return trial

    def switch(self, sid, src: str) -> None:
        rows = self.parts[sid]
        self.cur[rows] = self.sources[src][rows]
        if self.auc is not None:
            self.auc.switch(sid, src)


def choose(target: str, y, segs, p, e, u, ids: list[int]) -> tuple[dict, dict, np.ndarray]:
    """Per segment, the source that serves it, from the backtest rows (label ``y``,
    segment ``segs``, model prediction ``p`` as chosen per segment, BG/NBD column ``e``,
    the customers' sampling numbers ``u`` for the folds).

    Each segment's source is chosen by what it does to the metric over *all*
    customers (:func:`_ascend`): a churn probability is ranked against every other
    segment's, so a source that wins inside its segment but is calibrated apart from
    its neighbours' is not served (choosing inside each segment put the demo's served
    AUC 0.005 below the global model's).

    Returns ``(the served map's coefficients per segment id (str), {segment: record},
    served out-of-fold prediction)``; a record holds ``served``, each source's metric
    inside the segment (``auc_<source>`` / ``rmse_<source>``), overall with the segment
    switched to it (``overall_auc_<source>`` / ``overall_rmse_<source>``) and ``margin``
    (the served source's overall lead over the best alternative; negative when the
    model keeps a segment another source led by less than :data:`MARGIN`). Without a
    usable BG/NBD column every segment keeps the model."""
    y, p, e = (np.asarray(a, np.float64) for a in (y, p, e))
    segs = np.asarray(segs)
    ok = np.isfinite(e) & np.isfinite(y) & np.isfinite(p)
    name = "auc" if target == "churn" else "rmse"
    usable = target in BGNBD_COLUMN and ok.sum() >= 20 and _score(target, y[ok], p[ok]) is not None
    if not usable:
        why = "no BG/NBD fit at the backtest cutoff" if target in BGNBD_COLUMN else None
        rec = {"served": "model", **({"note": why} if why else {})}
        return {}, {int(s): dict(rec) for s in ids}, p.astype(np.float32)
    uu = np.asarray(u, np.float64)
    # the folds, and the search sample, from bits of ``u`` below the backtest's own
    # sampling (``u < fraction``)
    half = np.floor(uu * 1024) % 2 == 0
    search = ok & ((uu * 2**20) % 1 < SEARCH_ROWS / max(ok.sum(), 1))
    preds, maps = _predictions(target, p, e, y, ok, segs, ids, half)
    masks = {int(s): ok & (segs == s) for s in ids}
    assign, trials, served = _ascend(target, y, preds, masks, search)
    choice = {}
    for sid, rows in masks.items():
        rec: dict = {"served": assign[sid], "n_backtest": int(rows.sum())}
        inside = {s: _score(target, y[rows], preds[s][rows]) for s in SOURCES} if rows.any() else {}
        rec.update({f"{name}_{s}": abs(v) for s, v in inside.items() if v is not None})
        trial = trials.get(sid, {})
        if trial and all(v is not None for v in trial.values()):
            rec.update({f"overall_{name}_{s}": abs(v) for s, v in trial.items()})
            rest = max(v for s, v in trial.items() if s != assign[sid])
            rec["margin"] = float(trial[assign[sid]] - rest)
        choice[sid] = rec
    coef = {
        str(sid): maps[src].get(sid, maps[src]["*"])
        for sid, src in assign.items()
        if src != "model"
    }
    return coef, choice, served.astype(np.float32)


#: the drivers of a prediction BG/NBD serves: its three inputs, nothing else
BGNBD_DRIVERS = ("BG/NBD: frequency", "BG/NBD: recency_days", "BG/NBD: tenure_days")


def serve(target: str, p: np.ndarray, segs: np.ndarray, frame, sources: dict, coef: dict):
    """The served prediction of one target for rows of ``frame`` (``p`` the model's,
    ``segs`` their segments): each segment by the source the backtest chose for it
    (``coef[source]``: the map's coefficients). Returns ``(prediction, rows served by
    BG/NBD alone)``."""
    out = np.asarray(p, np.float32).copy()
    alone = np.zeros(len(out), dtype=bool)
    picked = {int(s): src for s, src in sources.items() if src != "model"}
    if not picked or len(out) == 0:
        return out, alone
    col = BGNBD_COLUMN[target]
    e = frame[col].to_numpy(np.float64) if col in frame else np.full(len(out), np.nan)
    for s, src in picked.items():
        rows = (segs == s) & np.isfinite(e)  # no BG/NBD value: the model serves the row
        if rows.any():
            out[rows] = apply(target, src, coef[str(s)], p[rows], e[rows])
            alone |= rows if src == "bgnbd" else False
    return out, alone
