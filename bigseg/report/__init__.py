"""A self-contained HTML report: inline CSS and SVG drawn in Python, one small inline
script that checks on load that every chart drew (no library, no CDN): opens offline.

Segments smaller than ``privacy.min_segment_size`` are suppressed everywhere: their size,
profile, points and migration cells are not shown, only that a small segment exists.
"""

from __future__ import annotations

import html
from pathlib import Path

from bigseg.io.commit import write_text_atomic
from bigseg.io.layout import MODEL_MANIFEST
from bigseg.io.output import Output, model_dataset
from bigseg.report import charts, sections
from bigseg.report.charts import bar_chart, calibration_chart, figure, heatmap
from bigseg.report.sections import fmt, note, section

__all__ = ["bar_chart", "calibration_chart", "heatmap", "render", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
nav{font-size:.85rem;line-height:1.8}nav a{margin-right:.8rem;color:#4e79a7;text-decoration:none}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
td,th{border:1px solid #e3e3e3;padding:.3rem .6rem;text-align:right}
th{background:#f6f6f6}td:first-child,td.l,th:first-child{text-align:left}
.muted{color:#666}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #e3e3e3;border-radius:8px;padding:.8rem 1.2rem;min-width:150px}
.card b{display:block;font-size:1.5rem}
figure.chart{margin:1rem 0;overflow-x:auto}figure.chart svg{display:block;max-width:none}
.charts{display:flex;gap:1.5rem;flex-wrap:wrap;align-items:flex-start}
.verdict{padding:.5rem .8rem;border-radius:6px}.verdict.good{background:#eef6ec}
.verdict.bad{background:#fbeaea}details{margin:.5rem 0}
"""

_NAV = [
    ("overview", "overview"),
    ("segments", "segments"),
    ("profiles", "profiles"),
    ("projection", "2-D view"),
    ("dendrogram", "dendrogram"),
    ("churn-value", "churn and value"),
    ("models", "models"),
    ("drivers", "drivers"),
    ("drift", "drift"),
    ("fairness", "fairness"),
    ("migration", "migration"),
    ("offers", "offers"),
    ("model-card", "model card"),
    ("timings", "timings"),
]


def _e(x) -> str:
    return html.escape(str(x))


def render(metrics: dict, min_segment_size: int = 50, model: dict | None = None) -> str:
    """The report as one HTML string, from ``metrics.json`` and (optionally) the model
    manifest (``model``: version, creation time, training window, libraries).

    Examples
    --------
    >>> page = render({"n_customers": 120, "segments": [
    ...     {"id": 0, "name": "Loyal", "size": 100, "share": 0.8, "profile": {"a": 1.0}},
    ...     {"id": 1, "name": "Tiny", "size": 20, "share": 0.2, "profile": {"a": 2.0}}]})
    >>> "Loyal" in page, "Tiny" in page
    (True, False)
    """
    segs = metrics.get("segments") or []
    shown = [s for s in segs if s.get("size", 0) >= min_segment_size]
    hidden = len(segs) - len(shown)
    body = [
        f"<h1>bigseg report</h1><p class='muted'>as of {_e(metrics.get('as_of'))}, "
        f"horizon {_e(metrics.get('horizon_days'))} days</p>"
    ]
    parts = [sections.overview(metrics, len(segs), hidden, min_segment_size)]
    if shown:
        parts.append(sections.segments(shown))
        if shown[0].get("profile"):
            parts.append(sections.profiles(shown, metrics.get("features") or {}))
        if metrics.get("projection"):
            parts.append(sections.projection(metrics["projection"], shown))
        parts.append(sections.dendrogram(metrics, shown))
        parts.append(sections.churn_value(shown))
    parts.append(_models(metrics, shown))
    parts.append(sections.drivers(metrics.get("drivers") or {}, shown))
    if "drift" in metrics or "retrain" in metrics:
        parts.append(sections.drift(metrics.get("drift"), metrics.get("retrain"), shown))
    fair = metrics.get("fairness") or {}
    if fair.get("attributes"):
        parts.append(sections.fairness(fair))
    if "segment_migration" in metrics:
        parts.append(sections.migration(metrics["segment_migration"], shown, min_segment_size))
    offers = metrics.get("offers") or {}
    if offers.get("segments"):
        parts.append(
            section(
                "offers",
                "Next-best offers",
                note(
                    "Categories each segment buys markedly more than the population (lift of the "
                    "mean category share); customers are offered those they have not bought yet."
                ),
                _offers_table(offers, min_segment_size),
            )
        )
    parts.append(sections.model_card(metrics, model))
    timings = metrics.get("timings") or {}
    if timings:
        parts.append(
            section(
                "timings",
                "Timings",
                sections.table(
                    ["stage", "seconds"], [[_e(k), f"{v:.2f}"] for k, v in timings.items()]
                ),
            )
        )
    present = {sid for sid, _ in _NAV if any(f'<section id="{sid}">' in p for p in parts)}
    body.append(
        "<nav>"
        + "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in _NAV if sid in present)
        + "</nav>"
    )
    body.extend(p for p in parts if p)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<title>bigseg report</title><style>"
        + _CSS
        + "</style></head><body>"
        + "".join(body)
        + "<script>"
        + charts.CHECK_SCRIPT
        + "</script></body></html>"
    )


def _models(metrics: dict, shown: list[dict]) -> str:
    churn = metrics.get("churn") or {}
    value = metrics.get("value") or {}
    response = metrics.get("response") or {}
    parts = [
        note(
            "Backtest: models fitted one horizon earlier, evaluated on the following "
            "window (forward in time), beside baselines on the same customers."
        )
    ]
    parts.extend(_model_tables(churn, value, response))
    for t, m in (("churn", churn), ("response", response)):
        gains = m.get("gains") or (
            charts.gains_from_calibration(m["calibration"]) if m.get("calibration") else []
        )
        figs = []
        if gains:
            figs.append(
                figure(
                    f"chart-lift-{t}",
                    charts.lift_chart(gains, t),
                    f"{t}: lift of the top-scored customers",
                )
            )
            figs.append(
                figure(f"chart-gains-{t}", charts.gains_chart(gains, t), f"{t}: cumulative gains")
            )
        if m.get("calibration"):
            figs.append(
                figure(
                    f"chart-calibration-{t}",
                    calibration_chart(m["calibration"], t),
                    f"{t}: reliability of the probabilities",
                )
            )
        if figs:
            parts.append(
                f"<h3>{_e(t)}: lift and calibration</h3><div class='charts'>"
                + "".join(figs)
                + "</div>"
            )
    per = {t: (metrics.get(t) or {}).get("per_segment") for t in ("churn", "value")}
    if any(per.values()) and shown:
        parts.append(
            "<h3>Which model serves each segment</h3>"
            + note(
                "Per segment the backtest keeps the better of the segment's own model and the "
                "global model (churn: ROC-AUC, value: RMSE), then serves that model, BG/NBD "
                "or a blend of the two, whichever scored best out of fold; the lead is "
                "the winner's margin over the runner-up."
            )
            + _choice_table(per, {s["id"]: s["name"] for s in shown})
        )
    if len(parts) == 1:
        return ""
    return section("models", "Models", *parts)


def _model_tables(churn: dict, value: dict, response: dict | None = None) -> list[str]:
    out = []
    if churn.get("auc") is not None:
        g = (churn.get("global_model_only") or {}).get("auc")
        rows = [
            ("bigseg (as served per segment)", churn.get("auc")),
            ("bigseg global model only", g),
            ("baseline: days since the last purchase", churn.get("baseline_recency_auc")),
            ("baseline: BG/NBD expected purchases", churn.get("baseline_bgnbd_auc")),
        ]
        out.append(
            "<table><tr><th>churn</th><th>ROC-AUC</th></tr>"
            + "".join(f"<tr><td>{_e(a)}</td><td>{fmt(b, 4)}</td></tr>" for a, b in rows)
            + "</table>"
        )
        out.append(_lead(churn))
        extra = [
            (k, churn.get(k))
            for k in ("pr_auc", "brier", "lift_top10", "capture_top10", "positive_rate", "n")
        ]
        out.append(
            "<table><tr><th>churn metric</th><th>value</th></tr>"
            + "".join(
                f"<tr><td>{_e(a)}</td><td>{fmt(b, 4)}</td></tr>" for a, b in extra if b is not None
            )
            + "</table>"
        )
    response = response or {}
    if response.get("auc") is not None:
        rows = [
            ("bigseg (model chosen per segment)", response.get("auc")),
            ("bigseg global model only", (response.get("global_model_only") or {}).get("auc")),
            (
                "baseline: past campaign response rate",
                response.get("baseline_past_response_rate_auc"),
            ),
        ]
        out.append(
            "<table><tr><th>campaign response</th><th>ROC-AUC</th></tr>"
            + "".join(f"<tr><td>{_e(a)}</td><td>{fmt(b, 4)}</td></tr>" for a, b in rows)
            + "</table>"
        )
    if value.get("n") is not None:
        base = value.get("baseline_bgnbd") or {}
        keys = ("mae", "rmse", "spearman", "capture_top10")
        out.append(
            "<table><tr><th>value</th>"
            + "".join(f"<th>{k}</th>" for k in keys)
            + "</tr>"
            + "".join(
                f"<tr><td>{_e(name)}</td>"
                + "".join(f"<td>{fmt(d.get(k), 4)}</td>" for k in keys)
                + "</tr>"
                for name, d in (
                    ("bigseg", value),
                    ("bigseg global model only", value.get("global_model_only") or {}),
                    ("baseline: BG/NBD + Gamma-Gamma expected spend", base),
                )
            )
            + "</table>"
        )
    return out


def _lead(churn: dict) -> str:
    """The served AUC's interval and its lead over BG/NBD, in words."""
    ci, lead = churn.get("auc_interval"), churn.get("lead_over_bgnbd")
    if not ci:
        return ""
    text = f"ROC-AUC {fmt(ci['auc'], 4)}, 95 % interval {fmt(ci['low'], 4)} to {fmt(ci['high'], 4)}"
    if lead:
        d, lo, hi = lead["difference"], lead["low"], lead["high"]
        verdict = "a real lead" if lo > 0 else "a real deficit" if hi < 0 else "within the noise"
        text += (
            f"; against BG/NBD on the same customers {d:+.4f} "
            f"(95 % interval {lo:+.4f} to {hi:+.4f}: {verdict})"
        )
    served = ", ".join(f"{k} {v:.0%}" for k, v in (churn.get("served") or {}).items())
    return note(text + (f". Customers served by: {served}." if served else "."))


def _choice_table(per: dict, names: dict) -> str:
    rows = [
        "<table><tr><th>segment</th><th>churn model</th><th>AUC own / global</th>"
        "<th>value model</th><th>RMSE own / global</th><th>churn served by (lead)</th>"
        "<th>value served by (lead)</th></tr>"
    ]
    for sid, name in names.items():
        c = (per.get("churn") or {}).get(str(sid), {})
        v = (per.get("value") or {}).get(str(sid), {})
        rows.append(
            f"<tr><td>{_e(sid)}: {_e(name)}</td><td>{_e(c.get('model', '–'))}</td>"
            f"<td>{fmt(c.get('auc_segment'), 3)} / {fmt(c.get('auc_global'), 3)}</td>"
            f"<td>{_e(v.get('model', '–'))}</td>"
            f"<td>{fmt(v.get('rmse_segment'))} / {fmt(v.get('rmse_global'))}</td>"
            f"<td>{_e(c.get('served', '–'))} ({fmt(c.get('margin'), 4)})</td>"
            f"<td>{_e(v.get('served', '–'))} ({fmt(v.get('margin'), 2)})</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _offers_table(offers: dict, min_segment_size: int) -> str:
    rows = ["<table><tr><th>segment</th><th>categories it favours (lift)</th></tr>"]
    for s in offers["segments"]:
        if (s.get("customers") or 0) < min_segment_size:
            continue
        lift = {c: v for c, v in (s.get("lift") or {}).items() if v is not None and v >= 1.2}
        top = sorted(lift.items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            f"<tr><td>{_e(s.get('id'))}: {_e(s.get('name'))}</td>"
            f"<td style='text-align:left'>"
            + (", ".join(f"{_e(c)} ({v:.2f})" for c, v in top) or "none above 1.2")
            + "</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def write_report(output: Output, metrics: dict, min_segment_size: int = 50) -> Path:
    """Render ``metrics`` to this run's ``report.html`` (dataset ``report``) and return
    its path; the model card reads the manifest of the latest model when there is one."""
    path = output.layout.report
    write_text_atomic(path, render(metrics, min_segment_size, _latest_model(output)))
    output.put_file("report", path)
    return path


def _latest_model(output: Output) -> dict | None:
    version = output.latest_model()
    if version is None:
        return None
    try:
        m = output.read_json(model_dataset(version), MODEL_MANIFEST)
    except (OSError, ValueError):
        return None
    keys = ("version", "created", "as_of", "training_window", "seed", "device", "libraries")
    return {k: m[k] for k in keys if k in m}
