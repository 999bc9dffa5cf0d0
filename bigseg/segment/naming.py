"""Names a marketer understands, from where each segment's centre sits in RFM terms.

Each centre is mapped back to original units; its recency, frequency (purchases per
year), monetary value (spend per year: rate times mean order value) and tenure are placed
as percentiles of the customer population (0 = lowest, 1 = highest; for recency, 1 = most
recent). Rules, first match wins:

==================  ===============================================
Champions           recent, frequent and high spending
New customers       recent, short tenure
At risk             used to buy often and spend well, not recently
Big spenders        high spend from few purchases
Hibernating         neither recent nor frequent (nor valuable)
Bargain hunters     recent and frequent, low spend
Loyal customers     recent and frequent
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
    """Percentile of each centre's recency (inverted), frequency, monetary and tenure.

    Both dicts hold ``recency_days``, ``purchase_rate``, ``monetary_mean`` and
    ``tenure_days``."""
    k = len(next(iter(centres.values())))
    pop_value = np.asarray(population["purchase_rate"]) * np.asarray(population["monetary_mean"])
    out = []
    for i in range(k):
        value = centres["purchase_rate"][i] * centres["monetary_mean"][i]
        out.append(
            {
                "r": 1.0 - _pct(population["recency_days"], centres["recency_days"][i]),
                "f": _pct(population["purchase_rate"], centres["purchase_rate"][i]),
                "m": _pct(pop_value, value),
                "t": _pct(population["tenure_days"], centres["tenure_days"][i]),
            }
        )
    return out


def _base_name(p: dict) -> str:
    r, f, m, t = p["r"], p["f"], p["m"], p["t"]
    if r >= 0.6 and f >= 0.7 and m >= 0.7:
        return "Champions"
    if r >= 0.5 and t <= 0.25:
        return "New customers"
    if r < 0.45 and f >= 0.4 and m >= 0.4:
        return "At risk"
    if m >= 0.7 and f < 0.4:
        return "Big spenders"
    if r < 0.4:
        return "Hibernating"
    if r >= 0.5 and f >= 0.6 and m < 0.35:
        return "Bargain hunters"
    if r >= 0.5 and f >= 0.45:
        return "Loyal customers"
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
