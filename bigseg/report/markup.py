"""Small HTML helpers shared by the report's sections: escaping, number formatting,
section, note, table and segment label."""

from __future__ import annotations

import html

import numpy as np


def _e(x) -> str:
    return html.escape(str(x))


def fmt(v, digits=2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return _e(v)


def section(sid: str, title: str, *parts: str) -> str:
    return f'<section id="{_e(sid)}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def note(text: str) -> str:
    return f"<p class='muted'>{text}</p>"


def table(
    head: list[str] | None, rows: list[list], left: int = 1, text: tuple[int, ...] = ()
) -> str:
    """A table; the first ``left`` columns and those in ``text`` are left-aligned."""
    out = [
        "<table>"
        + (
            "<tr>"
            + "".join(
                f"<th{' class=l' if j < left or j in text else ''}>{_e(h)}</th>"
                for j, h in enumerate(head)
            )
            + "</tr>"
            if head
            else ""
        )
    ]
    for r in rows:
        out.append(
            "<tr>"
            + "".join(
                f"<td{' class=l' if j < left or j in text else ''}>"
                f"{c if isinstance(c, str) else fmt(c)}</td>"
                for j, c in enumerate(r)
            )
            + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def label(s: dict) -> str:
    return f"{s['id']}: {s['name']}"
