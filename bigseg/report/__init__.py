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
    rows = []
    if churn:
        for k in ("auc", "pr_auc", "brier", "lift_top10", "capture_top10", "positive_rate",
                  "baseline_recency_auc", "n"):
            if churn.get(k) is not None:
                rows.append(("churn", k, churn[k]))
    for k, v in (metrics.get("value") or {}).items():
        if k != "training" and v is not None:
            rows.append(("value", k, v))
    body.append("<p class='muted'>Backtest: models fitted one horizon earlier, evaluated on "
                "the following window (forward in time).</p>")
    body.append("<table><tr><th>model</th><th>metric</th><th>value</th></tr>" + "".join(
        f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td>{_fmt(c, 4)}</td></tr>" for a, b, c in rows)
        + "</table>")
    timings = metrics.get("timings", {})
    if timings:
        body.append("<h2>Timings</h2><table><tr><th>stage</th><th>seconds</th></tr>" + "".join(
            f"<tr><td>{_e(k)}</td><td>{v:.2f}</td></tr>" for k, v in timings.items()) + "</table>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>bigseg report</title><style>" + _CSS + "</style></head><body>"
            + "".join(body) + "</body></html>")


def write_report(output: str | Path, metrics: dict, min_segment_size: int = 50) -> Path:
    """Render ``metrics`` to ``output/report.html`` (atomically) and return its path."""
    path = Path(output) / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(render(metrics, min_segment_size), encoding="utf-8")
    tmp.replace(path)
    return path
