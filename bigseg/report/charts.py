"""Inline SVG charts for the report, drawn in Python (no JavaScript library, nothing to
fetch). Every chart is wrapped by :func:`figure` in ``<figure class="chart">`` with an id,
which the report's load check (:data:`CHECK_SCRIPT`) uses to confirm it drew."""

from __future__ import annotations

import html

import numpy as np

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]  # fmt: skip
#: SVG elements that are marks (what a chart draws), as opposed to text and frames
MARKS = ("rect", "circle", "line", "polyline", "polygon", "path")


def _e(x) -> str:
    return html.escape(str(x))


def colour(i: int) -> str:
    return PALETTE[int(i) % len(PALETTE)]


def figure(chart_id: str, svg: str, caption: str | None = None) -> str:
    """``svg`` in a ``<figure class="chart">`` named ``chart_id`` (checked on load)."""
    cap = f"<figcaption class='muted'>{_e(caption)}</figcaption>" if caption else ""
    return (
        f'<figure class="chart" id="{_e(chart_id)}" data-chart="{_e(chart_id)}">{svg}{cap}</figure>'
    )


def _svg(w: float, h: float, label: str, font: int = 12) -> str:
    return (
        f'<svg role="img" aria-label="{_e(label)}" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" xmlns="http://www.w3.org/2000/svg" '
        f'font-size="{font}" font-family="system-ui,sans-serif">'
    )


def _finite(v) -> bool:
    return v is not None and bool(np.isfinite(v))


def bar_chart(
    labels: list[str],
    values: list[float | None],
    title: str,
    fmt=lambda v: f"{v:,.2f}",
    colours: list[str] | None = None,
    marker: float | None = None,
) -> str:
    """A horizontal bar chart; ``marker`` draws a dashed reference line at that value."""
    w, row, left = 640, 26, 220
    h = row * len(labels) + 30
    vals = [v for v in values if _finite(v)] + ([marker] if _finite(marker) else [])
    vmax = max([abs(v) for v in vals] or [1]) or 1
    span = w - left - 80
    parts = [_svg(w, h, title), f'<text x="0" y="14" font-weight="bold">{_e(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        bw = max(1.0, span * abs(v) / vmax) if _finite(v) else 0.0
        fill = colours[i] if colours else colour(i)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_e(lab)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 8}" '
            f'fill="{fill}"><title>{_e(lab)}: {_e(fmt(v) if _finite(v) else "–")}'
            f"</title></rect>"
        )
        parts.append(
            f'<text x="{left + bw + 6:.1f}" y="{y + 15}">{_e(fmt(v) if _finite(v) else "–")}</text>'
        )
    if _finite(marker):
        x = left + span * abs(marker) / vmax
        parts.append(
            f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{h - 4}" stroke="#555" '
            f'stroke-dasharray="4 3" class="ax"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _diverging(t: float) -> str:
    """Blue (-1) .. white (0) .. red (+1)."""
    t = float(np.clip(t, -1, 1)) if np.isfinite(t) else 0.0
    lo, hi = np.array([78, 121, 167]), np.array([225, 87, 89])
    c = np.array([255, 255, 255]) + abs(t) * ((hi if t > 0 else lo) - 255)
    return "#" + "".join(f"{int(round(x)):02x}" for x in c)


def heatmap(rows: list[str], cols: list[str], z: np.ndarray, raw: np.ndarray, fmt=None) -> str:
    """Heatmap of standardised values ``z`` (blue below, red above the other segments),
    each cell labelled with the value in original units ``raw``."""
    fmt = fmt or _short
    cw, ch, left, top = 64, 28, 170, 120
    w, h = left + cw * len(cols) + 60, top + ch * len(rows) + 10
    parts = [_svg(w, h, "profile heatmap", 10)]
    for j, c in enumerate(cols):
        x = left + j * cw + cw / 2
        parts.append(
            f'<text x="{x:.0f}" y="{top - 6}" transform="rotate(-40 {x:.0f} '
            f'{top - 6})">{_e(c)}</text>'
        )
    for i, r in enumerate(rows):
        y = top + i * ch
        parts.append(
            f'<text x="{left - 6}" y="{y + ch / 2 + 4:.0f}" text-anchor="end">{_e(r)}</text>'
        )
        for j, c in enumerate(cols):
            zz = float(z[i, j])
            t = zz / 2 if np.isfinite(zz) else 0.0
            parts.append(
                f'<rect x="{left + j * cw}" y="{y}" width="{cw - 1}" height="{ch - 1}" '
                f'fill="{_diverging(t)}"><title>{_e(r)} · {_e(c)}: '
                f"{_e(fmt(raw[i, j]))} (z {zz:+.2f})</title></rect>"
            )
            ink = "#fff" if abs(t) > 0.7 else "#222"
            parts.append(
                f'<text x="{left + j * cw + cw / 2:.0f}" y="{y + ch / 2 + 4:.0f}" '
                f'text-anchor="middle" fill="{ink}">{_e(fmt(raw[i, j]))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _short(v) -> str:
    v = float(v)
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.1f}"
    return f"{v:.2f}"


def scatter(
    x: list[float],
    y: list[float],
    groups: list[int],
    names: dict[int, str],
    xlabel: str,
    ylabel: str,
) -> str:
    """Scatter of points coloured by group, with a legend of group names."""
    w, h, pad, legend = 640, 460, 40, 190
    pw, ph = w - legend - 2 * pad, h - 2 * pad
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    x0, x1 = (float(np.nanmin(xa)), float(np.nanmax(xa))) if len(xa) else (0.0, 1.0)
    y0, y1 = (float(np.nanmin(ya)), float(np.nanmax(ya))) if len(ya) else (0.0, 1.0)
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    parts = [
        _svg(w, h, "2-D projection", 11),
        f'<rect x="{pad}" y="{pad}" width="{pw}" height="{ph}" fill="none" stroke="#ccc" class="ax"/>',
    ]
    order = sorted(names)
    for g in order:
        pts = [
            (pad + 6 + (pw - 12) * (a - x0) / sx, pad + 6 + (ph - 12) * (1 - (b - y0) / sy))
            for a, b, s in zip(xa, ya, groups, strict=True)
            if s == g
        ]
        parts.append(
            f'<g fill="{colour(g)}" fill-opacity="0.55">'
            + "".join(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.2"/>' for px, py in pts)
            + "</g>"
        )
    for i, g in enumerate(order):
        ly = pad + 8 + i * 18
        parts.append(
            f'<rect x="{w - legend + 10}" y="{ly}" width="10" height="10" '
            f'fill="{colour(g)}"/><text x="{w - legend + 26}" y="{ly + 9}">'
            f"{_e(g)}: {_e(names[g])}</text>"
        )
    parts.append(
        f'<text x="{pad + pw / 2:.0f}" y="{h - 10}" text-anchor="middle">{_e(xlabel)}</text>'
    )
    parts.append(
        f'<text x="12" y="{pad + ph / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad + ph / 2:.0f})">{_e(ylabel)}</text></svg>'
    )
    return "".join(parts)


def _axes(
    w: float, h: float, pad: float, xlabel: str, ylabel: str, label: str, ymax: float = 1.0
) -> tuple[list[str], callable]:
    def xy(px: float, py: float) -> tuple[float, float]:
        return pad + px * (w - 2 * pad), h - pad - py / ymax * (h - 2 * pad)

    parts = [
        _svg(w, h, label, 11),
        f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
        f'fill="none" stroke="#ccc" class="ax"/>',
    ]
    for t in (0, 0.5, 1):
        x, _ = xy(t, 0)
        _, y = xy(0, t * ymax)
        parts.append(f'<text x="{x:.0f}" y="{h - pad + 14}" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{pad - 6}" y="{y + 4:.0f}" text-anchor="end">{t * ymax:.3g}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle">{_e(xlabel)}</text>')
    parts.append(
        f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
        f'text-anchor="middle">{_e(ylabel)}</text>'
    )
    return parts, xy


def calibration_chart(curve: list[dict], what: str = "churn") -> str:
    """Reliability diagram: observed rate against mean predicted probability per bin
    (circle area ~ customers), with the diagonal of perfect calibration."""
    w = h = 320
    n_max = max([b["n"] for b in curve] or [1])
    parts, xy = _axes(
        w, h, 40, "mean predicted probability", f"observed {what} rate", "reliability curve"
    )
    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    parts.append(
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#aaa" '
        f'stroke-dasharray="4 3" class="ax"/>'
    )
    pts = [xy(b["mean_predicted"], b["observed_rate"]) for b in curve]
    parts.append(
        '<polyline fill="none" stroke="#4e79a7" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        + '"/>'
    )
    for (x, y), b in zip(pts, curve, strict=True):
        r = 2 + 6 * (b["n"] / n_max) ** 0.5
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="#4e79a7" '
            f'fill-opacity="0.6"><title>{b["n"]} customers</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def gains_from_calibration(curve: list[dict]) -> list[dict]:
    """Cumulative gains points from reliability bins: customers taken from the highest
    predicted bin down, the share of them and the share of all positives captured."""
    bins = sorted(curve, key=lambda b: -b["mean_predicted"])
    n = sum(b["n"] for b in bins)
    pos = sum(b["n"] * b["observed_rate"] for b in bins)
    out, cn, cp = [], 0.0, 0.0
    for b in bins:
        cn += b["n"]
        cp += b["n"] * b["observed_rate"]
        out.append({"share": cn / n if n else 0.0, "captured": cp / pos if pos else 0.0})
    return out


def gains_chart(points: list[dict], what: str = "churn") -> str:
    """Cumulative gains (share of positives captured by the top-ranked share of
    customers) with the random diagonal; the lift at a point is captured / share."""
    w = h = 320
    parts, xy = _axes(
        w,
        h,
        40,
        "share of customers, highest score first",
        f"share of {what} captured",
        "cumulative gains",
    )
    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    parts.append(
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#aaa" '
        f'stroke-dasharray="4 3" class="ax"/>'
    )
    pts = [xy(0, 0)] + [xy(p["share"], p["captured"]) for p in points]
    parts.append(
        '<polyline fill="none" stroke="#e15759" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        + '"/>'
    )
    for p, (x, y) in zip(points, pts[1:], strict=True):
        lift = p["captured"] / p["share"] if p["share"] else float("nan")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#e15759"><title>top '
            f"{p['share']:.0%}: {p['captured']:.0%} captured, lift {lift:.2f}"
            f"</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def lift_chart(points: list[dict], what: str = "churn") -> str:
    """Lift (captured share / customer share) per cumulative point of a gains curve,
    as columns; 1 is random."""
    w, h, pad = 360, 300, 40
    lifts = [p["captured"] / p["share"] if p["share"] else 0.0 for p in points]
    ymax = max(lifts + [1.0]) * 1.1
    pw, ph = w - 2 * pad, h - 2 * pad
    bw = pw / max(len(points), 1)
    parts = [
        _svg(w, h, "lift", 11),
        f'<rect x="{pad}" y="{pad}" width="{pw}" height="{ph}" fill="none" stroke="#ccc" class="ax"/>',
    ]
    for i, (p, lift) in enumerate(zip(points, lifts, strict=True)):
        bh = ph * lift / ymax
        x = pad + i * bw
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{pad + ph - bh:.1f}" width="{bw - 4:.1f}" '
            f'height="{bh:.1f}" fill="#f28e2b"><title>top {p["share"]:.0%}: lift '
            f"{lift:.2f}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{h - pad + 14}" text-anchor="middle" '
            f'font-size="9">{p["share"]:.0%}</text>'
        )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{pad + ph - bh - 3:.1f}" text-anchor="middle" '
            f'font-size="9">{lift:.1f}</text>'
        )
    y1 = pad + ph - ph / ymax
    parts.append(
        f'<line x1="{pad}" y1="{y1:.1f}" x2="{pad + pw}" y2="{y1:.1f}" stroke="#555" '
        f'stroke-dasharray="4 3" class="ax"/><text x="{pad - 6}" y="{y1 + 4:.1f}" '
        f'text-anchor="end">1</text>'
    )
    parts.append(
        f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle">top share of customers '
        f"by predicted {_e(what)}</text>"
    )
    parts.append(
        f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
        f'text-anchor="middle">lift</text></svg>'
    )
    return "".join(parts)


def dendrogram(labels: list[str], linkage: np.ndarray, colours: list[str]) -> str:
    """A dendrogram of ``len(labels)`` leaves from a SciPy linkage matrix."""
    from scipy.cluster.hierarchy import dendrogram as layout

    w, h, left, top, bottom = 640, 300, 48, 20, 110
    d = layout(linkage, no_plot=True, labels=list(range(len(labels))))
    leaves = d["leaves"]
    hmax = max(float(np.max(linkage[:, 2])) if len(linkage) else 1.0, 1e-12)
    pw, ph = w - left - 20, h - top - bottom

    def sx(v: float) -> float:  # scipy lays leaves out at 5, 15, 25, ...
        return left + pw * v / (10 * len(leaves))

    def sy(v: float) -> float:
        return top + ph * (1 - v / hmax)

    parts = [_svg(w, h, "dendrogram of segments", 11)]
    for xs, ys in zip(d["icoord"], d["dcoord"], strict=True):
        pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(xs, ys, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#555" stroke-width="1.5"/>')
    for i, leaf in enumerate(leaves):
        x, y = sx(10 * i + 5), sy(0)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colours[leaf]}"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y + 12:.1f}" text-anchor="end" '
            f'transform="rotate(-40 {x:.1f} {y + 12:.1f})">{_e(labels[leaf])}</text>'
        )
    parts.append(
        f'<text x="12" y="{top + ph / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2:.0f})">distance</text></svg>'
    )
    return "".join(parts)


def matrix(
    rows: list[str], cols: list[str], counts: list[list[int | None]], row_title: str, col_title: str
) -> str:
    """A count matrix as a heatmap (``None`` = suppressed cell, hatched grey)."""
    cw, ch, left, top = 84, 28, 200, 110
    w, h = left + cw * len(cols) + 80, top + ch * len(rows) + 10
    vmax = max([c for r in counts for c in r if c] or [1])
    parts = [
        _svg(w, h, "segment migration", 11),
        f'<text x="{left}" y="14" font-weight="bold">{_e(col_title)} →</text>',
        f'<text x="0" y="{top - 8}" font-weight="bold">{_e(row_title)} ↓</text>',
    ]
    for j, c in enumerate(cols):
        x = left + j * cw + cw / 2
        parts.append(
            f'<text x="{x:.0f}" y="{top - 6}" transform="rotate(-30 {x:.0f} '
            f'{top - 6})">{_e(c)}</text>'
        )
    for i, r in enumerate(rows):
        y = top + i * ch
        parts.append(
            f'<text x="{left - 6}" y="{y + ch / 2 + 4:.0f}" text-anchor="end">{_e(r)}</text>'
        )
        for j, v in enumerate(counts[i]):
            fill = (
                "#eee"
                if v is None
                else "#fff"
                if v == 0
                else _diverging(0.1 + 0.9 * (v / vmax) ** 0.5)
            )
            label = "<min" if v is None else f"{v:,}"
            parts.append(
                f'<rect x="{left + j * cw}" y="{y}" width="{cw - 1}" height="{ch - 1}" '
                f'fill="{fill}"><title>{_e(r)} → {_e(cols[j])}: {_e(label)}</title></rect>'
            )
            ink = "#fff" if v is not None and (v / vmax) ** 0.5 > 0.7 else "#222"
            parts.append(
                f'<text x="{left + j * cw + cw / 2:.0f}" y="{y + ch / 2 + 4:.0f}" '
                f'text-anchor="middle" fill="{ink}">{_e(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def paired_bars(
    labels: list[str],
    a: list[float],
    b: list[float],
    names: tuple[str, str],
    title: str,
    fmt=lambda v: f"{v:.1%}",
) -> str:
    """Two bars per label (e.g. reference and current share)."""
    w, row, left = 640, 34, 220
    h = row * len(labels) + 46
    vmax = max([v for v in a + b if _finite(v)] or [1]) or 1
    span = w - left - 80
    parts = [_svg(w, h, title), f'<text x="0" y="14" font-weight="bold">{_e(title)}</text>']
    for k, (nm, c) in enumerate(zip(names, ("#bab0ac", "#4e79a7"), strict=True)):
        parts.append(
            f'<rect x="{left + 150 * k}" y="22" width="10" height="10" fill="{c}"/>'
            f'<text x="{left + 150 * k + 14}" y="31">{_e(nm)}</text>'
        )
    for i, lab in enumerate(labels):
        y = 40 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{_e(lab)}</text>')
        for k, (v, c) in enumerate(zip((a[i], b[i]), ("#bab0ac", "#4e79a7"), strict=True)):
            bw = max(1.0, span * v / vmax) if _finite(v) else 0.0
            yy = y + 3 + k * 13
            parts.append(
                f'<rect x="{left}" y="{yy}" width="{bw:.1f}" height="12" fill="{c}">'
                f"<title>{_e(lab)}: {_e(fmt(v) if _finite(v) else '–')}</title></rect>"
            )
            parts.append(
                f'<text x="{left + bw + 4:.1f}" y="{yy + 10}" font-size="10">'
                f"{_e(fmt(v) if _finite(v) else '–')}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


#: runs once on load: for every chart figure, whether its SVG has a size and drew marks;
#: the verdict goes to ``data-status`` on the figure and ``data-charts`` on ``<body>``
CHECK_SCRIPT = """
(function () {
  var res = {}, ok = 0, bad = 0;
  var figs = document.querySelectorAll("figure.chart");
  for (var i = 0; i < figs.length; i++) {
    var f = figs[i], id = f.getAttribute("data-chart"), s = f.querySelector("svg"), st = "ok";
    if (!s) { st = "no svg"; }
    else {
      var r = s.getBoundingClientRect();
      if (!(r.width > 0 && r.height > 0)) { st = "zero size"; }
      else {
        var marks = s.querySelectorAll("MARKS"), drawn = 0;
        for (var j = 0; j < marks.length; j++) {
          var b = marks[j].getBBox(), t = marks[j].tagName.toLowerCase();
          var thin = t === "line" || t === "polyline";
          if (thin ? (b.width > 0 || b.height > 0) : (b.width > 0 && b.height > 0)) { drawn++; }
        }
        if (drawn === 0) { st = "nothing drawn"; }
      }
    }
    f.setAttribute("data-status", st);
    res[id] = st;
    if (st === "ok") { ok++; } else { bad++; }
  }
  document.body.setAttribute("data-charts", JSON.stringify(res));
  document.body.setAttribute("data-charts-ok", String(ok));
  document.body.setAttribute("data-charts-bad", String(bad));
})();
""".replace("MARKS", ",".join(f"{m}:not(.ax)" for m in MARKS))
