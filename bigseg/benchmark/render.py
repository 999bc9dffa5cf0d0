"""Results JSON -> a Markdown table per suite (bigseg vs each peer, seconds and ratios)
and PNG charts (matplotlib, when installed)."""

from __future__ import annotations

import json
from pathlib import Path

from bigseg.benchmark.peers import STAGE_MAP
from bigseg.io.commit import write_text_atomic

COLORS = {"bigseg": "#1f77b4", "pandas": "#ff7f0e", "duckdb": "#2ca02c", "spark": "#d62728"}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:,.2f}"


def _ratio_text(r: dict | None) -> str:
    if not r or r["ratio"] is None:
        return "–"
    if r["ratio"] <= 1:
        return f"{r['ratio']:.2f} ({r['speedup']:.1f}x faster)"
    return f"{r['ratio']:.2f} ({r['ratio']:.1f}x slower)"


def _row_seconds(tool: dict, row: str, bigseg: bool) -> float | None:
    if row == "total":
        return tool.get("total")
    names = STAGE_MAP[row][0 if bigseg else 1]
    vals = [tool["stages"][s] for s in names if s in tool.get("stages", {})]
    return round(sum(vals), 3) if vals else None


def suite_table(name: str, suite: dict) -> str:
    """Markdown table of one suite."""
    if name == "scaling":
        return scaling_table(suite)
    peers = suite["peers"]
    head = ["stage", "bigseg (s)"]
    for p, r in peers.items():
        head += [f"{p} (s)", f"bigseg / {p}"] if r.get("status") == "ok" else [p]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = list(suite["compared"]) + (["total"] if name == "end-to-end" else [])
    for row in rows:
        b = _row_seconds(suite["bigseg"], row, True)
        if b is None:
            continue
        cells = [row, _fmt(b)]
        for p, r in peers.items():
            if r.get("status") != "ok":
                cells.append(r.get("status", "?"))
                continue
            ratio = suite["ratios"].get(p, {}).get(row)
            cells += [_fmt(_row_seconds(r, row, False)), _ratio_text(ratio)]
        lines.append("| " + " | ".join(cells) + " |")
    described = {p: r["description"] for p, r in peers.items() if r.get("description")}
    if described:
        lines.append("\nPeers: " + "; ".join(f"{p} = {d}" for p, d in described.items()) + ".")
    busy = {"bigseg": suite["bigseg"], **peers}
    busy = {t: r.get("other_processes_cpu_s") for t, r in busy.items()}
    if any(v for v in busy.values()):
        lines.append(
            "\nCPU seconds other processes on the machine used during each run: "
            + ", ".join(f"{t} {v:.0f}" for t, v in busy.items() if v is not None)
        )
    if name == "score" and suite["bigseg"].get("scheduled_score_s") is not None:
        lines.append(
            f"\nbigseg scheduled `bigseg score` (fresh run: features at as_of from "
            f"the store, score, write): {suite['bigseg']['scheduled_score_s']:.2f} s"
        )
    if suite.get("goals"):
        lines.append("")
        for p, g in suite["goals"].items():
            met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
            sp = "" if g["speedup"] is None else f" (bigseg speedup {g['speedup']:.2f}x)"
            lines.append(f"- vs {p}: {g['goal']}: **{met}**{sp}")
    return "\n".join(lines)


def scaling_table(suite: dict) -> str:
    ws = [str(w) for w in suite["workers"]]
    stages = [s for s in suite["runs"][ws[0]]["stages"] if s != "cluster_start"]
    head = ["workers", *[f"{s} (s)" for s in stages], "pipeline (s)", "speedup", "efficiency"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in ws:
        r = suite["runs"][w]
        e = suite["efficiency"].get(w, {})
        lines.append(
            "| "
            + " | ".join(
                [
                    w,
                    *[_fmt(r["stages"].get(s)) for s in stages],
                    _fmt(r["pipeline_total"]),
                    _fmt(e.get("speedup", 1.0 if w == ws[0] else None)),
                    _fmt(e.get("efficiency", 1.0 if w == ws[0] else None)),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def markdown(res: dict) -> str:
    hw = res.get("hardware", {})
    gpu = hw.get("gpu_model")
    lines = [
        f"Command: `{res.get('command', '')}`  ",
        f"Machine: {hw.get('cpu')}, {hw.get('cores')} cores, {hw.get('memory_gib')} GiB"
        + (f", GPU {gpu} (driver {hw.get('gpu_driver')})" if gpu else ", no GPU")
        + f"; {res.get('started')}  ",
        f"Data: {res.get('customers'):,} generated customers, as_of {res.get('as_of')}; "
        f"repeats {res.get('repeats')} (medians)  ",
        "Ratio = bigseg seconds / peer seconds (below 1: bigseg faster).",
    ]
    for name, suite in res.get("suites", {}).items():
        lines += ["", f"**{name}**", "", suite_table(name, suite)]
    return "\n".join(lines) + "\n"


def _chart_suite(plt, name: str, suite: dict, path: Path, customers: int) -> None:
    if name == "scaling":
        ws = [str(w) for w in suite["workers"]]
        stages = [s for s in suite["runs"][ws[0]]["stages"] if s != "cluster_start"]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / len(ws)
        for i, w in enumerate(ws):
            vals = [suite["runs"][w]["stages"].get(s, 0) for s in stages]
            ax.bar(
                [j + i * width for j in range(len(stages))],
                vals,
                width,
                label=f"{w} worker(s): {suite['runs'][w]['pipeline_total']:.1f}s",
            )
        ax.set_xticks([j + width * (len(ws) - 1) / 2 for j in range(len(stages))], stages)
        ax.set_ylabel("seconds")
        eff = ", ".join(
            f"{w} workers: efficiency {e['efficiency']:.2f}" for w, e in suite["efficiency"].items()
        )
        ax.set_title(f"bigseg scaling, {customers:,} customers\n{eff}")
        ax.legend()
    else:
        tools = {"bigseg": suite["bigseg"]}
        tools.update({p: r for p, r in suite["peers"].items() if r.get("status") == "ok"})
        rows = list(suite["compared"]) + (["total"] if name == "end-to-end" else [])
        fig, ax = plt.subplots(figsize=(9, 1.5 + 0.22 * len(rows) * len(tools)))
        h = 0.8 / len(tools)
        for i, (t, r) in enumerate(tools.items()):
            vals = [_row_seconds(r, row, t == "bigseg") or 0 for row in rows]
            ys = [j + i * h for j in range(len(rows))]
            ax.barh(ys, vals, h, label=t, color=COLORS.get(t))
            for y, v, row in zip(ys, vals, rows, strict=True):
                ratio = suite["ratios"].get(t, {}).get(row)
                txt = f"{v:.1f}s" + (
                    f"  (bigseg/{t} {ratio['ratio']:.2f})"
                    if ratio and ratio["ratio"] is not None
                    else ""
                )
                ax.text(v, y, " " + txt, va="center", fontsize=7)
        ax.set_yticks([j + h * (len(tools) - 1) / 2 for j in range(len(rows))], rows)
        ax.invert_yaxis()
        ax.set_xlabel("seconds (lower is better)")
        missing = [
            f"{p}: {r.get('status')}" for p, r in suite["peers"].items() if r.get("status") != "ok"
        ]
        ax.set_title(
            f"{name}: bigseg vs peers, {customers:,} customers"
            + (f"\n({'; '.join(missing)})" if missing else "")
        )
        ax.legend(loc="best", fontsize=8)
        ax.margins(x=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: str | Path | dict, charts: str | Path) -> dict:
    """Write ``<charts>/<stem>.md`` (tables) and ``<charts>/<stem>-<suite>.png`` (one chart
    per suite; skipped when matplotlib is not installed) from a results JSON.

    Returns ``{"table": path, "charts": [paths], "markdown": text}``.
    """
    if isinstance(results, dict):
        res, stem = results, f"{'+'.join(results['suites'])}-{results['customers']}"
    else:
        res, stem = json.loads(Path(results).read_text()), Path(results).stem
    charts = Path(charts)
    charts.mkdir(parents=True, exist_ok=True)
    text = markdown(res)
    table = charts / f"{stem}.md"
    write_text_atomic(table, text)
    pngs = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        for name, suite in res["suites"].items():
            p = charts / f"{stem}-{name}.png"
            _chart_suite(plt, name, suite, p, res["customers"])
            pngs.append(p)
    return {"table": table, "charts": pngs, "markdown": text}
