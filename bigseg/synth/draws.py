"""Random draws shared by several tables of the synthetic generator.

Each helper takes the chunk's RNG and consumes a fixed number of draws per call, so the
callers' order of calls is the order of the random stream.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigseg.synth.arrow import _take
from bigseg.synth.constants import HOUR_CDF, MONTH_FACTOR, WEEKDAY_FACTOR


def _seasonality(start_day: np.datetime64, n_days: int) -> np.ndarray:
    """Relative purchase rate per day (mean 1) from weekday and month factors."""
    days = start_day + np.arange(n_days)
    dow = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    s = WEEKDAY_FACTOR[dow] * MONTH_FACTOR[month]
    return s / (WEEKDAY_FACTOR.mean() * MONTH_FACTOR.mean())


def _pick(rng: np.random.Generator, cum: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """One categorical draw per row, with the per-owner cumulative probabilities ``cum``."""
    u = rng.random(owner.size)
    idx = (u[:, None] > cum[owner]).sum(axis=1)
    return np.minimum(idx, cum.shape[1] - 1)


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` (rows may differ)."""
    g = rng.gamma(alpha)
    g = np.maximum(g, 1e-12)
    return g / g.sum(axis=1, keepdims=True)


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds into the day, following :data:`HOUR_WEIGHTS`."""
    hour = np.searchsorted(HOUR_CDF, rng.random(n), side="right")
    return np.minimum(hour, 23) * 3600 + rng.integers(0, 3600, n)


def _flat_pick(
    rng: np.random.Generator, rows: tuple[tuple[str, ...], ...], row: np.ndarray
) -> pa.Array:
    """For each entry of ``row``, a random phrase of ``rows[row]`` (rows of equal length)."""
    width = len(rows[0])
    flat = [s for r in rows for s in r]
    return _take(flat, row * width + rng.integers(0, width, row.size))
