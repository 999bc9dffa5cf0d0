"""Names a marketer understands, from where each segment's centre sits in RFM terms.

Each centre is mapped back to original units; its recency, frequency, monetary value and
tenure are placed as percentiles of the customer population (0 = lowest, 1 = highest;
for recency, 1 = most recent). Rules, first match wins:

==================  ===============================================
Champions           recent, frequent and high spending
New customers       recent, short tenure
Loyal customers     recent and frequent
Big spenders        high spend from few purchases
At risk             used to buy often, not recently
Hibernating         neither recent nor frequent
Promising           recent but infrequent
Needs attention     everything else
==================  ===============================================

Duplicate names get a qualifier (``high spend`` / ``low spend`` / ...).
"""

from __future__ import annotations

import numpy as np


def _pct(sample: np.ndarray, v: float) -> float:
    return float(np.searchsorted(np.sort(sample), v) / max(len(sample), 1))


def rfm_position(centres: dict[str, np.ndarray], population: dict[str, np.ndarray]) -> list[dict]:
    """Percentile of each centre's recency (inverted), frequency, monetary and tenure."""
    k = len(next(iter(centres.values())))
    out = []
    for i in range(k):
        out.append({
            "r": 1.0 - _pct(population["recency_days"], centres["recency_days"][i]),
            "f": _pct(population["frequency"], centres["frequency"][i]),
            "m": _pct(population["monetary_total"], centres["monetary_total"][i]),
            "t": _pct(population["tenure_days"], centres["tenure_days"][i]),
        })
    return out


def _base_name(p: dict) -> str:
    r, f, m, t = p["r"], p["f"], p["m"], p["t"]
    if r >= 0.6 and f >= 0.7 and m >= 0.7:
        return "Champions"
    if r >= 0.5 and t <= 0.25:
        return "New customers"
    if r >= 0.5 and f >= 0.5:
        return "Loyal customers"
    if m >= 0.7 and f < 0.7:
        return "Big spenders"
    if r < 0.45 and f >= 0.5:
        return "At risk"
    if r < 0.4:
        return "Hibernating"
    if r >= 0.5:
        return "Promising"
    return "Needs attention"


def name_segments(positions: list[dict]) -> list[str]:
    """Unique, readable names for segments at the given RFM positions.

    Examples
    --------
    >>> name_segments([{"r": .9, "f": .9, "m": .9, "t": .8}, {"r": .1, "f": .1, "m": .2, "t": .9}])
    ['Champions', 'Hibernating']
    """
    names = [_base_name(p) for p in positions]
    for base in set(names):
        idx = [i for i, n in enumerate(names) if n == base]
        if len(idx) < 2:
            continue
        # qualify by the dimension on which the duplicates differ most
        dim = max("mfrt", key=lambda d: np.ptp([positions[i][d] for i in idx]))
        words = {"m": "spend", "f": "frequency", "r": "recency", "t": "tenure"}[dim]
        order = sorted(idx, key=lambda i: -positions[i][dim])
        labels = ["high", "low"] if len(order) == 2 else [f"#{j + 1}" for j in range(len(order))]
        for j, i in enumerate(order):
            names[i] = f"{base} ({labels[j]} {words})" if len(order) == 2 else f"{base} {labels[j]}"
    return names
