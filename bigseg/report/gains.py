"""Cumulative gains of a binary score for the report's lift chart."""

from __future__ import annotations

import numpy as np


def gains_curve(y, p, points: int = 10) -> list[dict]:
    """Per top share of customers by score (10 %, 20 %, ... 100 %), the share of all
    positives they hold (``captured``) and the lift (captured / share).

    Examples
    --------
    >>> [g["captured"] for g in gains_curve([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], points=2)]
    [1.0, 1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    if len(y) == 0 or y.sum() <= 0:
        return []
    cum = np.cumsum(y[np.argsort(-p, kind="stable")])
    out = []
    for i in range(1, points + 1):
        n = max(1, int(np.ceil(len(y) * i / points)))
        share, captured = n / len(y), float(cum[n - 1] / cum[-1])
        out.append(
            {
                "share": round(share, 4),
                "captured": round(captured, 4),
                "lift": round(captured / share, 4),
            }
        )
    return out
