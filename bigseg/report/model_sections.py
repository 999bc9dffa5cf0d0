"""The report's model sections, each built from ``metrics.json`` (and the model manifest
for the model card): drivers, drift, fairness, segment migration and the model card.
Every function returns HTML; segments below the privacy threshold are never passed in
(see :func:`bigseg.report.render`)."""

from __future__ import annotations

from bigseg.report import charts
from bigseg.report.charts import figure
from bigseg.report.markup import _e, fmt, label, note, section, table

MAX_DRIFT_FEATURES = 15


# -- drivers -----------------------------------------------------------------------------
def drivers(drv: dict, shown: list[dict]) -> str:
    if not drv:
        return ""
    parts = [
        note(
            "Feature importance: mean absolute contribution of each feature to the "
            "predictions (XGBoost contributions), averaged over the shown segments "
            "weighted by size (a feature outside a segment's top ten counts as zero there). Drivers per segment: the segment's own top features; "
            "every scored customer also has their own top three in <code>scores/</code>."
        )
    ]
    size = {str(s["id"]): s["size"] for s in shown}
    for t, by_seg in drv.items():
        tot: dict[str, float] = {}
        for sid, n in size.items():
            for d in by_seg.get(sid, []):
                tot[d["feature"]] = tot.get(d["feature"], 0.0) + n * d["mean_abs_shap"]
        w = sum(n for sid, n in size.items() if by_seg.get(sid)) or 1
        top = sorted(tot.items(), key=lambda kv: -kv[1])[:10]
        if top:
            parts.append(
                figure(
                    f"chart-importance-{t}",
                    charts.bar_chart(
                        [f for f, _ in top],
                        [v / w for _, v in top],
                        f"{t}: feature importance",
                        colours=["#4e79a7"] * len(top),
                    ),
                )
            )
        rows = [
            [_e(label(s)), _e(", ".join(d["feature"] for d in by_seg.get(str(s["id"]), [])[:5]))]
            for s in shown
            if by_seg.get(str(s["id"]))
        ]
        if rows:
            parts.append(
                f"<h3>{_e(t)}: drivers per segment</h3>"
                + table(["segment", "top five drivers"], rows, left=2)
            )
    return section("drivers", "Feature importances and drivers", *parts)


# -- drift -------------------------------------------------------------------------------
_LEVEL = {"stable": "#59a14f", "moderate": "#edc948", "major": "#e15759"}


def drift(d: dict | None, retrain: dict | None, shown: list[dict]) -> str:
    retrain = retrain or {}
    rec = retrain.get("recommended")
    verdict = (
        "retraining recommended"
        if rec
        else "no retraining needed"
        if rec is False
        else "no verdict"
    )
    reasons = retrain.get("reasons") or []
    parts = [
        f"<p class='verdict {'bad' if rec else 'good'}'><b>{_e(verdict)}</b>"
        + (": " + "; ".join(_e(r) for r in reasons) if reasons else "")
        + "</p>"
    ]
    if not d:
        return section(
            "drift",
            "Drift",
            *parts,
            note("No drift measured: the model version has no drift reference."),
        )
    feats = ((d.get("features") or {}).get("features")) or {}
    th = (d.get("features") or {}).get("thresholds") or {}
    parts.append(
        note(
            f"Population stability index (PSI) of the features and scores now "
            f"against the training reference of {_e(d.get('reference_as_of'))} "
            f"(model age {fmt(d.get('model_age_days'))} days); below "
            f"{fmt(th.get('warn', 0.1))} stable, from {fmt(th.get('alert', 0.25))} "
            "a major shift (dashed line)."
        )
    )
    if feats:
        top = sorted(
            ((f, r) for f, r in feats.items() if r.get("psi") is not None),
            key=lambda kv: -kv[1]["psi"],
        )[:MAX_DRIFT_FEATURES]
        parts.append(
            figure(
                "chart-drift-features",
                charts.bar_chart(
                    [f for f, _ in top],
                    [r["psi"] for _, r in top],
                    f"feature PSI (top {len(top)} of {len(feats)})",
                    lambda v: f"{v:.3f}",
                    [_LEVEL.get(r.get("level"), "#bab0ac") for _, r in top],
                    th.get("alert", 0.25),
                ),
            )
        )
    scores = ((d.get("scores") or {}).get("features")) or {}
    if scores:
        parts.append(
            table(
                ["score", "PSI", "level"],
                [[_e(k), v.get("psi"), _e(v.get("level"))] for k, v in scores.items()],
            )
        )
    segs = (d.get("segments") or {}).get("segments") or {}
    shown_ids = {str(s["id"]): label(s) for s in shown}
    pairs = [(shown_ids[k], v) for k, v in segs.items() if k in shown_ids]
    if pairs:
        parts.append(
            figure(
                "chart-drift-segments",
                charts.paired_bars(
                    [p[0] for p in pairs],
                    [p[1].get("reference_share") for p in pairs],
                    [p[1].get("current_share") for p in pairs],
                    ("at training", "now"),
                    f"segment shares (PSI {fmt((d.get('segments') or {}).get('psi'), 3)})",
                ),
            )
        )
    return section("drift", "Drift", *parts)


# -- fairness, migration -----------------------------------------------------------------
def fairness(fair: dict) -> str:
    parts = [
        note(
            "On the backtest: per group of each protected attribute, how often "
            "customers are flagged high churn risk or high value, and the "
            "demographic-parity ratio (lowest / highest flag rate; below "
            f"{fmt(fair.get('threshold'))} is flagged). Groups smaller than "
            f"{fmt(fair.get('min_group_size'))} are not shown."
        )
    ]
    flags = fair.get("flags") or []
    parts.append(
        "<p><b>Findings:</b></p><ul>" + "".join(f"<li>{_e(f)}</li>" for f in flags) + "</ul>"
        if flags
        else "<p>No finding below the threshold.</p>"
    )
    for attr, a in fair["attributes"].items():
        groups = [(g, r) for g, r in (a.get("groups") or {}).items() if r.get("reported")]
        parts.append(f"<h3>{_e(attr)}</h3>")
        if groups:
            parts.append(
                figure(
                    f"chart-fairness-{attr}",
                    charts.paired_bars(
                        [g for g, _ in groups],
                        [r.get("churn_flag_rate") for _, r in groups],
                        [r.get("high_value_flag_rate") for _, r in groups],
                        ("high-churn flag rate", "high-value flag rate"),
                        f"flag rates by {attr}",
                    ),
                )
            )
        parts.append(
            table(
                [
                    "group",
                    "customers",
                    "high-churn flag rate",
                    "churn AUC",
                    "churn TPR",
                    "high-value flag rate",
                    "high-value TPR",
                ],
                [
                    [
                        _e(g),
                        r.get("n"),
                        r.get("churn_flag_rate"),
                        r.get("churn_auc"),
                        r.get("churn_flag_tpr"),
                        r.get("high_value_flag_rate"),
                        r.get("high_value_flag_tpr"),
                    ]
                    for g, r in groups
                ],
            )
        )
        dp = a.get("demographic_parity") or {}
        eo = a.get("equal_opportunity") or {}
        parts.append(
            note(
                "; ".join(
                    f"{_e(k)}: parity ratio {fmt((dp.get(k) or {}).get('ratio'), 3)}, "
                    f"equal-opportunity difference {fmt((eo.get(k) or {}).get('difference'), 3)}"
                    for k in sorted(set(dp) | set(eo))
                )
            )
        )
    return section("fairness", "Fairness audit", *parts)


def migration(mig: dict | None, shown: list[dict], min_size: int) -> str:
    if not mig:
        return section(
            "migration",
            "Segment migration",
            note(
                "No previous segments to compare with: this is the first segmentation of this "
                "output (or its previous segments were erased)."
            ),
        )
    names = {str(s["id"]): label(s) for s in shown}
    cells: dict[tuple[str, str], int] = {}
    for key, n in mig.items():
        old, _, new = str(key).rpartition("->")
        cells[(old, new)] = cells.get((old, new), 0) + int(n)
    cols = [k for k in names if any(new == k for _, new in cells)]
    olds = sorted(
        {o for o, n in cells if n in names},
        key=lambda o: (o == "new customer", int(o) if o.isdigit() else 0, o),
    )
    stay = sum(n for (o, c), n in cells.items() if o == c and c in names)
    total = sum(n for (o, c), n in cells.items() if c in names and o != "new customer")
    rows, counts = [], []
    for o in olds:
        rows.append(o if o == "new customer" else f"was {names.get(o, o)}")
        counts.append(
            [
                cells.get((o, c))
                if cells.get((o, c), 0) >= min_size
                else (0 if (o, c) not in cells else None)
                for c in cols
            ]
        )
    return section(
        "migration",
        "Segment migration",
        note(
            f"Customers per (previous segment → segment now) since the last run; "
            f"{stay:,} of {total:,} returning customers ({stay / max(total, 1):.0%}) kept their "
            f"segment. Cells under {min_size} customers are suppressed (&lt;min)."
        ),
        figure(
            "chart-migration",
            charts.matrix(
                rows, [names[c] for c in cols], counts, "previous segment", "segment now"
            ),
        ),
    )


# -- model card --------------------------------------------------------------------------
def model_card(metrics: dict, model: dict | None) -> str:
    model = model or {}
    tw = metrics.get("training_window") or model.get("training_window") or {}
    seg_m = metrics.get("segmentation") or {}
    targets = [
        t for t in ("churn", "value", "response") if (metrics.get(t) or {}).get("n") is not None
    ]
    rows = [
        ["model version", _e(model.get("version", "–"))],
        ["created", _e(model.get("created", "–"))],
        ["trained as of", _e(model.get("as_of", metrics.get("as_of")))],
        [
            "training window",
            _e(
                f"features at {tw.get('features_at', '–')}, labels in "
                f"{tw.get('labels', '–')}; backtest features at "
                f"{tw.get('backtest_features_at', '–')}"
            ),
        ],
        ["horizon", _e(f"{metrics.get('horizon_days', '–')} days")],
        ["segmentation", _e(f"{seg_m.get('method', '–')}, k = {seg_m.get('k', '–')}")],
        ["targets", _e(", ".join(targets) or "–")],
    ]
    churn, value, resp = (metrics.get(t) or {} for t in ("churn", "value", "response"))
    if churn.get("auc") is not None:
        rows.append(
            [
                "churn (backtest)",
                _e(
                    f"ROC-AUC {churn['auc']:.3f}, PR-AUC {churn.get('pr_auc', float('nan')):.3f}, "
                    f"Brier {churn.get('brier', float('nan')):.3f}, lift in the top 10% "
                    f"{churn.get('lift_top10', float('nan')):.2f}"
                ),
            ]
        )
    if value.get("rmse") is not None:
        rows.append(
            [
                "value (backtest)",
                _e(
                    f"RMSE {value['rmse']:,.2f}, MAE {value.get('mae', float('nan')):,.2f}, "
                    f"Spearman {value.get('spearman', float('nan')):.3f}"
                ),
            ]
        )
    if resp.get("auc") is not None:
        rows.append(["response (backtest)", _e(f"ROC-AUC {resp['auc']:.3f}")])
    if model.get("device"):
        rows.append(["trained on", _e(f"{model['device']}, seed {model.get('seed', '–')}")])
    libs = model.get("libraries") or {}
    if libs:
        rows.append(["libraries", _e(", ".join(f"{k} {v}" for k, v in libs.items()))])
    intended = (
        "Ranking and grouping customers for marketing and retention work: who is likely to "
        "stop buying in the next horizon, who is likely to spend most, which segment a "
        "customer belongs to and which offers suit the segment. Batch scoring on the "
        "customers of the same business the models were trained on."
    )
    limits = [
        "Metrics come from a forward-in-time backtest one horizon earlier; performance on "
        "later periods can differ, watch the drift section.",
        "Churn is defined as no purchase in the horizon; it does not know about customers "
        "who left for reasons outside the data.",
        "Probabilities are calibrated on the backtest population; segments with few "
        "customers use the global model and their numbers are less certain.",
        "Not for decisions with legal or similarly significant effects on individuals "
        "(credit, employment, pricing by protected attribute).",
        "Protected attributes are not model inputs unless the config opts in; the fairness "
        "audit only covers the attributes listed in fairness.protected.",
    ]
    return section(
        "model-card",
        "Model card",
        table(None, rows, left=2),
        f"<h3>Intended use</h3><p>{_e(intended)}</p><h3>Limitations</h3><ul>"
        + "".join(f"<li>{_e(x)}</li>" for x in limits)
        + "</ul>",
    )
