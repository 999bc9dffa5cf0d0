"""Backtest evaluation, segment profiles and driver importances: pure functions over
gathered arrays and per-bucket statistics (no cluster, no storage)."""

from __future__ import annotations

import numpy as np

from bigseg.predict import segmented
from bigseg.predict.ranking import auc_interval, auc_interval_and_difference, roc_auc
from bigseg.predict.xgb import evaluate_binary, evaluate_value
from bigseg.report.gains import gains_curve


def baseline_auc(churn: np.ndarray, score: np.ndarray) -> float | None:
    """AUC of a baseline score (higher = more likely to churn), on the same backtest rows
    as the model; None when a class is missing or the score is unavailable."""
    churn = np.asarray(churn).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score)
    if not ok.any() or churn[ok].all() or not churn[ok].any():
        return None
    return roc_auc(churn[ok], score[ok])


def chosen(cat: dict, target: str, choice: dict) -> np.ndarray:
    """Backtest predictions of ``target`` as served: each row by its segment's model
    where the backtest chose it, else by the global model; where BG/NBD or a blend
    serves a segment, their out-of-fold predictions (``served_<target>``)."""
    if f"served_{target}" in cat:
        return cat[f"served_{target}"]
    own = [int(s) for s, rec in choice.items() if rec["model"] == "segment"]
    mask = np.isin(cat["segment"], own)
    return np.where(mask, cat[f"pred_{target}_segment"], cat[f"pred_{target}_global"])


def _by_segment(metric, y: np.ndarray, p: np.ndarray, segs: np.ndarray) -> dict:
    out = {}
    for s in np.unique(segs):
        rows = np.flatnonzero(segs == s)
        out[str(s)] = metric(y[rows], p[rows])
    return out


def evaluate(target: str, cat: dict, choice: dict) -> dict:
    """Backtest metrics of the models as chosen per segment (``choice``), beside the
    global model alone and the baselines (recency only; BG/NBD expected purchases or
    spend), overall and per segment. ``cat`` holds the backtest rows of
    :func:`bigseg.predict.segmented.backtest_rows`, concatenated over the buckets."""
    segs = cat["segment"]
    p = chosen(cat, target, choice)
    y = cat[target]
    if target == "response":  # defined only for customers sent a campaign in the window
        ok = np.isfinite(y)
        y, p, segs = y[ok], p[ok], segs[ok]
        out = evaluate_binary(y, p)
        out["global_model_only"] = evaluate_binary(y, cat["pred_response_global"][ok])
        out["baseline_past_response_rate_auc"] = baseline_auc(y, cat["campaign_response_rate"][ok])
    elif target == "churn":
        out = evaluate_binary(y, p)
        out["global_model_only"] = evaluate_binary(y, cat["pred_churn_global"])
        out["baseline_recency_auc"] = baseline_auc(y, cat["recency_days"])
        out["baseline_bgnbd_auc"] = baseline_auc(y, -cat["clv_expected_purchases"])
        out.update(_intervals(y, p, -cat["clv_expected_purchases"]))
    else:
        out = evaluate_value(y, p)
        out["global_model_only"] = evaluate_value(y, cat["pred_value_global"])
        ev = cat["clv_expected_value"]
        ok = np.isfinite(ev)
        out["baseline_bgnbd"] = evaluate_value(y[ok], ev[ok]) if ok.any() else None
        out["by_segment"] = _by_segment(evaluate_value, y, p, segs)
        out["served"] = served_shares(choice, segs)
        return out
    out["served"] = served_shares(choice, segs)
    out["calibration"] = segmented.calibration_curve(y, p)
    out["gains"] = gains_curve(y, p)
    out["by_segment"] = _by_segment(evaluate_binary, y, p, segs)
    return out


def _intervals(y: np.ndarray, p: np.ndarray, bgnbd: np.ndarray) -> dict:
    """The served AUC's 95 % DeLong interval and its paired lead over BG/NBD's on the
    same customers, so that a difference inside the noise is not sold as a win."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return {}
    if not np.isfinite(bgnbd).all():
        return {"auc_interval": auc_interval(y, p)}
    one, lead = auc_interval_and_difference(y, p, bgnbd)
    return {"auc_interval": one, "lead_over_bgnbd": lead}


def served_shares(choice: dict, segs: np.ndarray) -> dict:
    """Share of the backtest customers each source (model, BG/NBD, blend) served."""
    segs = np.asarray(segs)
    n = max(len(segs), 1)
    # one count per chosen segment: every other row is the model's
    count = {"model": len(segs), "bgnbd": 0, "blend": 0}
    by = {int(s): rec.get("served", "model") for s, rec in choice.items()}
    for s, src in by.items():
        if src != "model":
            m = int((segs == s).sum())
            count[src] += m
            count["model"] -= m
    return {k: float(c / n) for k, c in count.items() if c}


def fairness_inputs(cat: dict, choice: dict, high_churn: float, high_value_share: float) -> dict:
    """The flags, outcomes and scores the fairness audit compares across groups, from
    the backtest rows as served (:func:`bigseg.predict.fairness.audit`'s keywords)."""
    kw: dict = {}
    if "churn" in choice:
        p = chosen(cat, "churn", choice["churn"])
        kw.update(churn_flag=p >= high_churn, y_churn=cat["churn"].astype(bool), p_churn=p)
    if "value" in choice:
        v = chosen(cat, "value", choice["value"])
        share = high_value_share
        kw.update(
            high_value_flag=v >= np.quantile(v, 1 - share),
            y_high_value=cat["value"] >= np.quantile(cat["value"], 1 - share),
            p_value=v,
        )
    return kw


def _mean(total: float, count: int) -> float | None:
    return float(total / count) if count and np.isfinite(total) else None


def segment_profiles(
    parts: list[dict], ids: list[int], names: list[str], features: list[str]
) -> list[dict]:
    """One profile per segment from the per-bucket sums of
    :func:`bigseg.predict.scoring.profile`: size and share, mean of every feature, its
    lift over the population and the three features that stand out most (largest
    |z| of the segment mean against the population), mean churn and value."""
    counts = np.sum([p["counts"] for p in parts], axis=0)
    sums = np.sum([p["sums"] for p in parts], axis=0)
    present = np.sum([p["present"] for p in parts], axis=0)
    sumsq = np.sum([p["sumsq"] for p in parts], axis=0)
    n_pop = np.maximum(present.sum(0), 1)
    pop_mean = sums.sum(0) / n_pop
    pop_sd = np.sqrt(np.maximum(sumsq.sum(0) / n_pop - pop_mean**2, 0))
    churn = np.sum([p["churn_probability"] for p in parts], axis=0)
    value = np.sum([p["value_prediction"] for p in parts], axis=0)
    total = max(int(counts.sum()), 1)
    segs = []
    for i, name in sorted(zip(ids, names, strict=True)):
        c = int(counts[i])
        mean = np.where(present[i] > 0, sums[i] / np.maximum(present[i], 1), np.nan)
        z = np.where(pop_sd > 0, (mean - pop_mean) / np.where(pop_sd > 0, pop_sd, 1), 0)
        top = [j for j in np.argsort(-np.nan_to_num(np.abs(z)), kind="stable")[:3]]
        segs.append(
            {
                "top_features": [
                    {
                        "feature": features[j],
                        "segment_mean": float(mean[j]),
                        "population_mean": float(pop_mean[j]),
                        "z": float(z[j]),
                        "lift": float(mean[j] / pop_mean[j]) if pop_mean[j] > 0 else None,
                    }
                    for j in top
                    if np.isfinite(mean[j])
                ],
                "lift": {
                    f: (
                        float(mean[j] / pop_mean[j])
                        if pop_mean[j] > 0 and np.isfinite(mean[j])
                        else None
                    )
                    for j, f in enumerate(features)
                },
                "id": int(i),
                "name": name,
                "size": c,
                "share": c / total,
                "profile": {
                    f: (float(sums[i, j] / present[i, j]) if present[i, j] else None)
                    for j, f in enumerate(features)
                },
                "churn_probability": _mean(churn[i], c),
                "value_prediction": _mean(value[i], c),
            }
        )
    return segs


def driver_importance(
    parts: list[dict], targets: list[str], ids: list[int], features: list[str], top: int = 10
) -> dict:
    """Per target and segment, the features with the largest mean |SHAP| contribution to
    the predictions (global importances per segment), from the per-bucket sums of the
    score stage."""
    out: dict = {}
    for t in targets:
        for s in ids:
            got = [p[t][int(s)] for p in parts if t in p and int(s) in p[t]]
            n = sum(g[1] for g in got)
            if not n:
                continue
            mean = np.sum([g[0] for g in got], axis=0) / n
            order = np.argsort(-mean, kind="stable")[:top]
            out.setdefault(t, {})[str(s)] = [
                {"feature": features[j], "mean_abs_shap": float(mean[j])} for j in order
            ]
    return out
