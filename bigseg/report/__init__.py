"""A self-contained HTML report (inline CSS and SVG, no scripts, no CDN): opens offline.

Segments smaller than ``privacy.min_segment_size`` are suppressed: their size and
profile are not shown, only that a small segment exists.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
td,th{border:1px solid #e3e3e3;padding:.3rem .6rem;text-align:right}
th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
.muted{color:#777}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #e3e3e3;border-radius:8px;padding:.8rem 1.2rem;min-width:150px}
.card b{display:block;font-size:1.5rem}
"""
MAX_PROFILE_FEATURES = 12
_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#bab0ac"]


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(v, digits=2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return _e(v)


def bar_chart(labels: list[str], values: list[float], title: str, fmt=lambda v: f"{v:,.2f}") -> str:
    """A horizontal SVG bar chart."""
    w, row, left = 640, 26, 220
    h = row * len(labels) + 30
    vmax = max([v for v in values if v is not None and np.isfinite(v)] or [1]) or 1
    parts = [f'<svg role="img" aria-label="{_e(title)}" width="{w}" height="{h}" '
             f'xmlns="http://www.w3.org/2000/svg" font-size="12">',
             f'<text x="0" y="14" font-weight="bold">{_e(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        bw = 0 if v is None or not np.isfinite(v) else max(1, (w - left - 80) * v / vmax)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_e(lab)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 8}" '
                     f'fill="{_PALETTE[i % len(_PALETTE)]}"/>')
        parts.append(f'<text x="{left + bw + 6:.1f}" y="{y + 15}">'
                     f'{_e(fmt(v) if v is not None else "–")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap(rows: list[str], cols: list[str], z: np.ndarray, raw: np.ndarray) -> str:
    """Table heatmap of standardised values ``z`` (blue low, red high) showing ``raw``."""
    out = ["<table><tr><th>segment</th>", *[f"<th>{_e(c)}</th>" for c in cols], "</tr>"]
    for i, r in enumerate(rows):
        out.append(f"<tr><td>{_e(r)}</td>")
        for j in range(len(cols)):
            t = float(np.clip(z[i, j] / 2, -1, 1)) if np.isfinite(z[i, j]) else 0.0
            color = (f"rgba(225,87,89,{abs(t):.2f})" if t > 0 else f"rgba(78,121,167,{abs(t):.2f})")
            out.append(f'<td style="background:{color}">{_fmt(float(raw[i, j]))}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def render(metrics: dict, min_segment_size: int = 50) -> str:
    segs = metrics.get("segments", [])
    shown = [s for s in segs if s["size"] >= min_segment_size]
    hidden = len(segs) - len(shown)
    body = [f"<h1>bigseg report</h1><p class='muted'>as of {_e(metrics.get('as_of'))}, "
            f"horizon {_e(metrics.get('horizon_days'))} days</p>"]
    cards = [("customers scored", metrics.get("n_customers")),
             ("excluded (no consent)", metrics.get("excluded_no_consent", 0)),
             ("segments", len(segs))]
    churn = metrics.get("churn", {})
    if churn.get("auc") is not None:
        cards.append(("churn AUC (backtest)", round(churn["auc"], 3)))
    body.append("<div class='cards'>" + "".join(
        f"<div class='card'><b>{_fmt(v)}</b>{_e(k)}</div>" for k, v in cards) + "</div>")

    body.append("<h2>Segments</h2>")
    if hidden:
        body.append(f"<p class='muted'>{hidden} segment(s) smaller than {min_segment_size} "
                    f"customers are suppressed.</p>")
    names = [f"{s['id']}: {s['name']}" for s in shown]
    body.append(bar_chart(names, [s["size"] for s in shown], "customers per segment",
                          lambda v: f"{v:,.0f}"))
    body.append("<table><tr><th>segment</th><th>customers</th><th>share</th>"
                "<th>mean churn probability</th><th>mean predicted spend</th></tr>")
    for s in shown:
        body.append(f"<tr><td>{_e(s['id'])}: {_e(s['name'])}</td><td>{_fmt(s['size'])}</td>"
                    f"<td>{s['share']:.1%}</td><td>{_fmt(s.get('churn_probability'), 3)}</td>"
                    f"<td>{_fmt(s.get('value_prediction'))}</td></tr>")
    body.append("</table>")

    if shown and shown[0].get("profile"):
        feats = list(shown[0]["profile"])
        raw = np.array([[s["profile"][f] if s["profile"][f] is not None else np.nan
                         for f in feats] for s in shown], dtype=float)
        w = np.array([s["size"] for s in shown], dtype=float)
        mu = np.nansum(raw * w[:, None], axis=0) / w.sum()
        sd = np.sqrt(np.nansum((raw - mu) ** 2 * w[:, None], axis=0) / w.sum())
        z = (raw - mu) / np.where(sd > 0, sd, 1)
        # the features that tell segments apart most, in their original order
        spread = np.nan_to_num(np.nanmax(np.abs(z), axis=0), nan=0.0)
        keep = sorted(np.argsort(-spread, kind="stable")[:MAX_PROFILE_FEATURES])
        body.append("<h2>Profiles</h2><p class='muted'>Mean of each feature per segment, "
                    "in original units; colour shows how far above (red) or below (blue) the "
                    f"other segments it sits. The {len(keep)} features that differ most "
                    "between segments are shown; metrics.json has them all.</p>")
        body.append(heatmap(names, [feats[j] for j in keep], z[:, keep], raw[:, keep]))
        desc = metrics.get("features", {})
        if desc:
            body.append("<table><tr><th>feature</th><th>meaning</th></tr>" + "".join(
                f"<tr><td>{_e(f)}</td><td style='text-align:left'>{_e(d)}</td></tr>"
                for f, d in desc.items()) + "</table>")

    seg_m = metrics.get("segmentation") or {}
    if seg_m.get("dendrogram_svg"):
        body.append("<h2>Dendrogram</h2><p class='muted'>Ward linkage of the micro-segments "
                    "(hierarchical segmentation); the cut gives the segments above.</p>")
        body.append(seg_m["dendrogram_svg"])
    if shown and shown[0].get("churn_probability") is not None:
        body.append("<h2>Churn and value by segment</h2>")
        body.append(bar_chart(names, [s["churn_probability"] for s in shown],
                              "mean churn probability", lambda v: f"{v:.1%}"))
        body.append(bar_chart(names, [s["value_prediction"] for s in shown],
                              "mean predicted spend in the horizon", lambda v: f"{v:,.2f}"))

    body.append("<h2>Models</h2>")
    body.append("<p class='muted'>Backtest: models fitted one horizon earlier, evaluated on "
                "the following window (forward in time), beside two baselines on the same "
                "customers.</p>")
    body.extend(_model_tables(churn, metrics.get("value") or {}, metrics.get("response")))
    if churn.get("calibration"):
        body.append("<h3>Reliability of the churn probabilities</h3>")
        body.append(calibration_chart(churn["calibration"]))
    per = {t: (metrics.get(t) or {}).get("per_segment") for t in ("churn", "value")}
    if any(per.values()):
        body.append("<h3>Which model serves each segment</h3><p class='muted'>Per segment "
                    "the backtest keeps the better of the segment's own model and the global "
                    "model (churn: ROC-AUC, value: RMSE).</p>")
        body.append(_choice_table(per, {s["id"]: s["name"] for s in shown}))
    drivers = metrics.get("drivers") or {}
    if drivers:
        body.append("<h2>Drivers per segment</h2><p class='muted'>Mean absolute contribution "
                    "of each feature to the predictions of the segment's customers (XGBoost "
                    "contributions); every scored customer also has their own top three in "
                    "<code>scores/</code>.</p>")
        for t, by_seg in drivers.items():
            for s in shown:
                top = by_seg.get(str(s["id"]), [])[:5]
                if top:
                    body.append(bar_chart([d["feature"] for d in top],
                                          [d["mean_abs_shap"] for d in top],
                                          f"{t}: {s['id']}: {s['name']}"))
    fair = (metrics.get("fairness") or {})
    if fair.get("attributes"):
        body.append(_fairness_section(fair))
    offers = metrics.get("offers") or {}
    if offers.get("segments"):
        body.append("<h2>Next-best offers</h2><p class='muted'>Categories each segment buys "
                    "markedly more than the population (lift of the mean category share); "
                    "customers are offered those they have not bought yet.</p>")
        body.append(_offers_table(offers, min_segment_size))
    timings = metrics.get("timings", {})
    if timings:
        body.append("<h2>Timings</h2><table><tr><th>stage</th><th>seconds</th></tr>" + "".join(
            f"<tr><td>{_e(k)}</td><td>{v:.2f}</td></tr>" for k, v in timings.items()) + "</table>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>bigseg report</title><style>" + _CSS + "</style></head><body>"
            + "".join(body) + "</body></html>")


def calibration_chart(curve: list[dict]) -> str:
    """Reliability diagram: observed churn rate against mean predicted probability per
    bin (circle area ~ customers), with the diagonal of perfect calibration."""
    w = h = 320
    pad = 40
    n_max = max([b["n"] for b in curve] or [1])

    def xy(px: float, py: float) -> tuple[float, float]:
        return pad + px * (w - 2 * pad), h - pad - py * (h - 2 * pad)

    parts = [f'<svg role="img" aria-label="reliability curve" width="{w}" height="{h}" '
             f'xmlns="http://www.w3.org/2000/svg" font-size="11">',
             f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
             f'fill="none" stroke="#ccc"/>']
    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#aaa" '
                 f'stroke-dasharray="4 3"/>')
    pts = [xy(b["mean_predicted"], b["observed_rate"]) for b in curve]
    parts.append('<polyline fill="none" stroke="#4e79a7" stroke-width="2" points="'
                 + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
    for (x, y), b in zip(pts, curve, strict=True):
        r = 2 + 6 * (b["n"] / n_max) ** 0.5
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="#4e79a7" '
                     f'fill-opacity="0.6"><title>{b["n"]} customers</title></circle>')
    for t in (0, 0.5, 1):
        x, _ = xy(t, 0)
        _, y = xy(0, t)
        parts.append(f'<text x="{x:.0f}" y="{h - pad + 14}" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{pad - 6}" y="{y + 4:.0f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle">mean predicted '
                 f'probability</text>')
    parts.append(f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
                 f'text-anchor="middle">observed churn rate</text></svg>')
    return "".join(parts)


def _model_tables(churn: dict, value: dict, response: dict | None = None) -> list[str]:
    out = []
    if churn.get("auc") is not None:
        g = (churn.get("global_model_only") or {}).get("auc")
        rows = [("bigseg (model chosen per segment)", churn.get("auc")),
                ("bigseg global model only", g),
                ("baseline: days since the last purchase", churn.get("baseline_recency_auc")),
                ("baseline: BG/NBD expected purchases", churn.get("baseline_bgnbd_auc"))]
        out.append("<table><tr><th>churn</th><th>ROC-AUC</th></tr>" + "".join(
            f"<tr><td>{_e(a)}</td><td>{_fmt(b, 4)}</td></tr>" for a, b in rows) + "</table>")
        extra = [(k, churn.get(k)) for k in ("pr_auc", "brier", "lift_top10",
                                             "capture_top10", "positive_rate", "n")]
        out.append("<table><tr><th>churn metric</th><th>value</th></tr>" + "".join(
            f"<tr><td>{_e(a)}</td><td>{_fmt(b, 4)}</td></tr>" for a, b in extra
            if b is not None) + "</table>")
    response = response or {}
    if response.get("auc") is not None:
        rows = [("bigseg (model chosen per segment)", response.get("auc")),
                ("bigseg global model only", (response.get("global_model_only") or {}).get("auc")),
                ("baseline: past campaign response rate",
                 response.get("baseline_past_response_rate_auc"))]
        out.append("<table><tr><th>campaign response</th><th>ROC-AUC</th></tr>" + "".join(
            f"<tr><td>{_e(a)}</td><td>{_fmt(b, 4)}</td></tr>" for a, b in rows) + "</table>")
    if value.get("n") is not None:
        base = value.get("baseline_bgnbd") or {}
        keys = ("mae", "rmse", "spearman", "capture_top10")
        out.append("<table><tr><th>value</th>" + "".join(f"<th>{k}</th>" for k in keys)
                   + "</tr>" + "".join(
                       f"<tr><td>{_e(name)}</td>" + "".join(
                           f"<td>{_fmt(d.get(k), 4)}</td>" for k in keys) + "</tr>"
                       for name, d in (("bigseg", value),
                                       ("bigseg global model only",
                                        value.get("global_model_only") or {}),
                                       ("baseline: BG/NBD + Gamma-Gamma expected spend", base)))
                   + "</table>")
    return out


def _choice_table(per: dict, names: dict) -> str:
    rows = ["<table><tr><th>segment</th><th>churn model</th><th>AUC own / global</th>"
            "<th>value model</th><th>RMSE own / global</th></tr>"]
    for sid, name in names.items():
        c = (per.get("churn") or {}).get(str(sid), {})
        v = (per.get("value") or {}).get(str(sid), {})
        rows.append(f"<tr><td>{_e(sid)}: {_e(name)}</td><td>{_e(c.get('model', '–'))}</td>"
                    f"<td>{_fmt(c.get('auc_segment'), 3)} / {_fmt(c.get('auc_global'), 3)}</td>"
                    f"<td>{_e(v.get('model', '–'))}</td>"
                    f"<td>{_fmt(v.get('rmse_segment'))} / {_fmt(v.get('rmse_global'))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _fairness_section(fair: dict) -> str:
    out = ["<h2>Fairness audit</h2><p class='muted'>On the backtest: per group of each "
           "protected attribute, how often customers are flagged high churn risk or high "
           f"value, and the demographic-parity ratio (lowest / highest flag rate; below "
           f"{_fmt(fair.get('threshold'))} is flagged). Groups smaller than "
           f"{_fmt(fair.get('min_group_size'))} are not shown.</p>"]
    flags = fair.get("flags") or []
    out.append("<p><b>Findings:</b></p><ul>" + "".join(f"<li>{_e(f)}</li>" for f in flags)
               + "</ul>" if flags else "<p>No finding below the threshold.</p>")
    for attr, a in fair["attributes"].items():
        out.append(f"<h3>{_e(attr)}</h3><table><tr><th>group</th><th>customers</th>"
                   "<th>high-churn flag rate</th><th>churn AUC</th><th>churn TPR</th>"
                   "<th>high-value flag rate</th><th>high-value TPR</th></tr>")
        for g, r in (a.get("groups") or {}).items():
            if not r.get("reported"):
                continue
            out.append(f"<tr><td>{_e(g)}</td><td>{_fmt(r.get('n'))}</td>"
                       f"<td>{_fmt(r.get('churn_flag_rate'), 3)}</td>"
                       f"<td>{_fmt(r.get('churn_auc'), 3)}</td>"
                       f"<td>{_fmt(r.get('churn_flag_tpr'), 3)}</td>"
                       f"<td>{_fmt(r.get('high_value_flag_rate'), 3)}</td>"
                       f"<td>{_fmt(r.get('high_value_flag_tpr'), 3)}</td></tr>")
        out.append("</table>")
        dp = a.get("demographic_parity") or {}
        eo = a.get("equal_opportunity") or {}
        out.append("<p class='muted'>" + "; ".join(
            f"{_e(k)}: parity ratio {_fmt((dp.get(k) or {}).get('ratio'), 3)}, "
            f"equal-opportunity difference {_fmt((eo.get(k) or {}).get('difference'), 3)}"
            for k in sorted(set(dp) | set(eo))) + "</p>")
    return "".join(out)


def _offers_table(offers: dict, min_segment_size: int) -> str:
    rows = ["<table><tr><th>segment</th><th>categories it favours (lift)</th></tr>"]
    for s in offers["segments"]:
        if (s.get("customers") or 0) < min_segment_size:
            continue
        lift = {c: v for c, v in (s.get("lift") or {}).items() if v is not None and v >= 1.2}
        top = sorted(lift.items(), key=lambda kv: -kv[1])[:3]
        rows.append(f"<tr><td>{_e(s.get('id'))}: {_e(s.get('name'))}</td>"
                    f"<td style='text-align:left'>"
                    + (", ".join(f"{_e(c)} ({v:.2f})" for c, v in top) or "none above 1.2")
                    + "</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def write_report(output: str | Path, metrics: dict, min_segment_size: int = 50) -> Path:
    """Render ``metrics`` to ``output/report.html`` (atomically) and return its path."""
    path = Path(output) / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(render(metrics, min_segment_size), encoding="utf-8")
    tmp.replace(path)
    return path
