"""Models per segment, a global model beside them, and the choice between the two.

Every prediction target (churn, value, response) gets a **global** XGBoost model trained
on all customers (up to ``prediction.max_train_rows`` of them, a stable sample by
customer id), with the customer's segment as one-hot features (``in_segment_<id>``), and,
for every segment with enough rows (and, for a binary target, enough of each class), a
**segment model**: the global model boosted further (up to
``prediction.segment_rounds`` more trees) on that segment's customers only. Every model is
one Dask task (:func:`bigseg.predict.xgb.train_task`), so the models of every target and
cutoff train side by side on the cluster's threads; the backtest then scores both on the
same held-out window and keeps, per segment, whichever serves that segment better
(binary: ROC-AUC; value: RMSE); ``metrics.json`` records the choice and both scores.

Segments at a training cutoff are the published segmenter applied to the features at
that cutoff: the segmenter is a population-level map (centres), so no customer's future
labels reach the features.

Per customer, the three strongest drivers of each prediction come from XGBoost's own
contributions (``pred_contribs``; approximate by default, exact TreeSHAP on request) of
the model that scored the customer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from bigseg.features.bucket import BucketFeatures
from bigseg.features.sample import sample_numbers
from bigseg.predict.ranking import roc_auc
from bigseg.predict.xgb import _booster
from bigseg.segment.fitted import FittedSegmenter

SEGMENT_PREFIX = "in_segment_"
#: binary targets (classification, judged by ROC-AUC); the rest are regressions
BINARY = ("churn", "response")
#: a segment gets its own model from this many training rows ...
MIN_SEGMENT_ROWS = 1_000
#: ... and, for a binary target, this many of each class
MIN_SEGMENT_CLASS = 50
#: prediction target -> its column in ``scores/`` (and in the drift reference of scores)
TARGET_COLUMNS = {
    "churn": "churn_probability",
    "value": "value_prediction",
    "response": "response_probability",
}


def segment_features(ids: list[int]) -> list[str]:
    return [f"{SEGMENT_PREFIX}{i}" for i in ids]


def segment_ids(df: pd.DataFrame, seg: FittedSegmenter) -> np.ndarray:
    """Segment id of every row of a feature frame under the segmenter ``seg``."""
    return seg.segment_ids(df)


def model_matrix(df: pd.DataFrame, features: list[str], segs: np.ndarray) -> np.ndarray:
    """Float32 matrix of ``features`` in order; ``in_segment_<id>`` columns are the
    one-hot segment, every other column comes from ``df`` (NaN when absent)."""
    X = df.reindex(columns=features).to_numpy(np.float32)
    if not X.flags.writeable:  # a view of a frame under copy-on-write: fill a copy
        X = X.copy()
    for j, f in enumerate(features):
        if f.startswith(SEGMENT_PREFIX):
            X[:, j] = segs == int(f[len(SEGMENT_PREFIX) :])
    return X


def model_rows(
    res: BucketFeatures,
    name: str,
    targets: list[str],
    valid_fraction: float,
    seed: int,
    features: list[str],
    seg: FittedSegmenter,
    keep: float = 1.0,
) -> dict:
    """Everything the models of cutoff ``name`` learn from in one bucket, built once for
    every target and segment: the float32 matrix ``X`` (``features``, segment one-hot
    included), ``segs``, ``y`` per target (NaN where unlabelled: response is defined only
    for customers sent a campaign), ``valid`` (the validation split) and ``u`` (a
    sampling number in [0, 1), independent of the split, by which :func:`select` keeps a
    training sample). Split and ``u`` are stable functions of the customer id and the
    seed, so a sample holds the same customers whatever the bucket placement or worker
    count, and a larger sample holds every customer of a smaller one. ``keep`` < 1:
    only the customers whose sampling number is below it (an older stacked window,
    whose rows are thinned to the share the training sample needs)."""
    import pyarrow as pa

    from bigseg.store.buckets import hash_ids

    df = res.frame(name)
    if len(df) == 0:  # e.g. an empty bucket (string ids: untyped)
        v, u = np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float64)
    else:
        h = hash_ids(pa.array(df["customer_id"].to_numpy()))
        w = ((h ^ np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)) % np.uint64(10_000)) / 10_000
        v = w < valid_fraction
        u = sample_numbers(h, seed)
    if keep < 1.0:  # only the customers any model's sample can hold: a bounded matrix
        rows = u < keep
        df, v, u = df[rows], v[rows], u[rows]
    segs = segment_ids(df, seg)
    X = model_matrix(df, features, segs)
    y = {}
    for t in targets:
        if t not in df:  # e.g. no campaign sent in this bucket's label window
            y[t] = np.full(len(df), np.nan, np.float32)
            continue
        y[t] = df[t].to_numpy(np.float32)
        if t == "value":  # net spend can dip below zero after returns; Tweedie needs y >= 0
            y[t] = np.maximum(y[t], 0)
    return {"X": X, "segs": segs, "y": y, "valid": v, "u": u}


def row_counts(rows: dict, ids: list[int]) -> dict:
    """Per target, for all rows (key ``None``) and per segment id: (training rows,
    positives, rows with value > 0) of the labelled training rows of one bucket."""
    out = {}
    train = ~rows["valid"]
    for t, y in rows["y"].items():
        ok = train & np.isfinite(y)
        segs, yt = rows["segs"][ok], y[ok]
        by = {None: (int(ok.sum()), int((yt > 0.5).sum()), int((yt > 0).sum()))}
        for s in ids:
            m = segs == s
            by[int(s)] = (int(m.sum()), int((yt[m] > 0.5).sum()), int((yt[m] > 0).sum()))
        out[t] = by
    return out


def select(rows: dict, target: str, only: int | None = None, fraction: float = 1.0) -> tuple:
    """(X_train, y_train, X_valid, y_valid) of one bucket for one model: the rows
    labelled for ``target``, of segment ``only`` (None: all), whose sampling number is
    below ``fraction`` (1: all)."""
    y = rows["y"][target]
    keep = np.isfinite(y)
    if only is not None:
        keep &= rows["segs"] == only
    if fraction < 1.0:
        keep &= rows["u"] < fraction
    v = rows["valid"]
    t, w = np.flatnonzero(keep & ~v), np.flatnonzero(keep & v)
    return rows["X"][t], y[t], rows["X"][w], y[w]


def select_many(rows: dict, target: str, specs: dict) -> dict:
    """:func:`select` for several models at once, ``{key: (only, fraction)}`` ->
    ``{key: parts}``: one task per matrix and target instead of one per model keeps
    the scheduler's work independent of the number of segments."""
    return {k: select(rows, target, only, frac) for k, (only, frac) in specs.items()}


def xy_parts(
    res: BucketFeatures,
    name: str,
    target: str,
    valid_fraction: float,
    seed: int,
    features: list[str],
    seg: FittedSegmenter,
    only: int | None = None,
) -> tuple:
    """(X_train, y_train, X_valid, y_valid) of one bucket at cutoff ``name`` for one
    target (with ``only``, the rows of that segment): :func:`select` of
    :func:`model_rows`."""
    return select(
        model_rows(res, name, [target], valid_fraction, seed, features, seg), target, only
    )


def predict(X: np.ndarray, segs: np.ndarray, models: dict, choice: dict) -> np.ndarray:
    """Predictions of one target: each row by its segment's model where the backtest
    chose it (``choice[seg] == "segment"``), else by the global model."""
    return predict_explain(X, segs, models, choice, drivers="off")[0]


def contributions(
    X: np.ndarray, segs: np.ndarray, models: dict, choice: dict, exact: bool = False
) -> np.ndarray:
    """Feature contributions (rows x features, bias column dropped) from the model that
    scores each row (see :func:`predict_explain`)."""
    return predict_explain(X, segs, models, choice, "exact" if exact else "approx")[1]


def predict_explain(
    X: np.ndarray, segs: np.ndarray, models: dict, choice: dict, drivers: str = "approx"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions of one target and the feature contributions behind them, each row by
    the model that scores it (its segment's where the backtest chose it, else the
    global one), in one pass over the trees.

    ``drivers``: ``"approx"`` gives XGBoost's approximate (Saabas) contributions, walked
    by :mod:`bigseg.predict.explain` together with the prediction; ``"exact"`` gives
    XGBoost's exact TreeSHAP (about 80x slower: measured 6 us vs 500 us a row on a
    74-tree model with 58 features); ``"off"`` gives none (None)."""
    from bigseg.predict.explain import predict_explain as walk

    pred = np.zeros(len(X), np.float32)
    contrib = np.zeros(X.shape, np.float32) if drivers != "off" else None
    if len(X) == 0:
        return pred, contrib
    use_global = np.ones(len(X), dtype=bool)
    parts = []
    for s, how in choice.items():
        rows = np.flatnonzero(segs == int(s))
        if how == "segment" and len(rows):
            parts.append((models[int(s)], rows))
            use_global[rows] = False
    rows = np.flatnonzero(use_global)
    if len(rows):
        parts.append((models["global"], None if len(rows) == len(X) else rows))
    for model, rows in parts:
        x = X if rows is None else X[rows]
        p, c = walk(model, x, contribs=drivers == "approx")
        if drivers == "exact":
            c = _contribs(model, x, exact=True)
        if rows is None:
            pred[:] = p
            if contrib is not None:
                contrib[:] = c
        else:
            pred[rows] = p
            if contrib is not None:
                contrib[rows] = c
    return pred, contrib


def _contribs(model: bytes, X: np.ndarray, exact: bool) -> np.ndarray:
    c = _booster(model).predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=not exact)
    return np.asarray(c[:, :-1], dtype=np.float32)


def backtest_rows(
    res: BucketFeatures, rows: dict, name: str, models: dict[str, dict], fraction: float = 1.0
) -> dict:
    """Labels, baselines and every model's predictions on the rows of cutoff ``name``
    (whose :func:`model_rows` are ``rows``, built for training at that cutoff and reused
    here): ``pred_<target>_global`` and ``pred_<target>_segment`` (NaN where the segment
    has no model of its own). ``fraction`` < 1: on that share of the customers only (the
    stable sample of ``rows["u"]``)."""
    df, X, segs = res.frame(name), rows["X"], rows["segs"]
    if fraction < 1.0:
        keep = rows["u"] < fraction
        df, X, segs = df[keep], X[keep], segs[keep]
    u = rows["u"][keep] if fraction < 1.0 else rows["u"]
    out = {"segment": segs, "customer_id": df["customer_id"].to_numpy(), "u": u}
    for col in (
        "churn",
        "value",
        "response",
        "recency_days",
        "clv_expected_purchases",
        "clv_expected_value",
        "frequency",
        "campaign_response_rate",
    ):
        out[col] = df[col].to_numpy(np.float64) if col in df else np.full(len(df), np.nan)
    for t, ms in models.items():
        g = _booster(ms["global"])
        link = _LINKS.get(_objective(g)) if len(X) else None
        if link is None:
            margin = None
            out[f"pred_{t}_global"] = (
                g.inplace_predict(X).astype(np.float32) if len(X) else np.zeros(0, np.float32)
            )
        else:  # the global trees once: a segment model adds its own trees to this margin
            margin = g.inplace_predict(X, predict_type="margin")
            out[f"pred_{t}_global"] = link(margin).astype(np.float32)
        own = np.full(len(X), np.nan, np.float32)
        for s, m in ms.items():
            if s == "global":
                continue
            idx = np.flatnonzero(segs == int(s))
            if len(idx):
                own[idx] = _refined_predict(g, margin, _booster(m), X, idx)
        out[f"pred_{t}_segment"] = own
    return out


#: output transform of the margin, per objective (the targets' objectives)
_LINKS = {
    "binary:logistic": lambda m: 1.0 / (1.0 + np.exp(-m.astype(np.float64))),
    "reg:tweedie": lambda m: np.exp(m.astype(np.float64)),
    "reg:squarederror": lambda m: m,
}


def _objective(b: xgb.Booster) -> str:
    import json

    return json.loads(b.save_config())["learner"]["objective"]["name"]


def _refined_predict(
    g: xgb.Booster, margin: np.ndarray | None, r: xgb.Booster, X: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """Predictions of the refined model ``r`` (the global ``g``'s trees, then its own) for
    rows ``idx``: with the global margin known, only ``r``'s own trees are evaluated, on
    top of it; otherwise (or when ``r`` does not extend ``g``) the whole model."""
    start, end = g.num_boosted_rounds(), r.num_boosted_rounds()
    if margin is None or end <= start:
        return r.inplace_predict(X[idx])
    return r.inplace_predict(X[idx], iteration_range=(start, end), base_margin=margin[idx])


def choose(
    target: str,
    y: np.ndarray,
    segs: np.ndarray,
    p_global: np.ndarray,
    p_segment: np.ndarray,
    ids: list[int],
) -> dict:
    """Per segment: which model serves it better on the backtest, with both scores.

    Binary targets (churn, response) compare ROC-AUC (higher wins), value RMSE (lower
    wins); ties and segments without a model of their own (or without both classes in
    the backtest) go global. Rows without a label (NaN) are left out."""
    out = {}
    for s in ids:
        rows = (segs == s) & np.isfinite(y)
        rec = {"n_backtest": int(rows.sum()), "model": "global"}
        own = p_segment[rows]
        if rows.sum() == 0 or not np.isfinite(own).all():
            out[int(s)] = rec
            continue
        yy, pg = y[rows], p_global[rows]
        if target in BINARY:
            yb = yy.astype(bool)
            if yb.all() or not yb.any():
                out[int(s)] = rec
                continue
            g, o = roc_auc(yb, pg), roc_auc(yb, own)
            rec.update(auc_global=g, auc_segment=o, model="segment" if o > g else "global")
        else:
            g = float(np.sqrt(np.mean((yy - pg) ** 2)))
            o = float(np.sqrt(np.mean((yy - own) ** 2)))
            rec.update(rmse_global=g, rmse_segment=o, model="segment" if o < g else "global")
        out[int(s)] = rec
    return out


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Reliability curve: per equal-width bin of predicted probability, the mean
    prediction, the observed rate and the count (empty bins left out)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    b = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for i in range(bins):
        m = b == i
        if m.any():
            out.append(
                {
                    "bin": [i / bins, (i + 1) / bins],
                    "mean_predicted": float(p[m].mean()),
                    "observed_rate": float(y[m].mean()),
                    "n": int(m.sum()),
                }
            )
    return out
