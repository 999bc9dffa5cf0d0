"""The planted churn disparity of ``generate(..., bias=...)``, for fairness tests.

Its draws come from a separate RNG, ``np.random.default_rng([seed, chunk_index, 1])``,
so ``bias=None`` leaves the chunk's main stream, and the output, as without the option.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bigseg.synth.constants import BIAS_WINDOW_DAYS, GENDERS, REGIONS
from bigseg.synth.state import Frame, Latent


def _check_bias(bias: dict | None, history_days: int) -> dict | None:
    """Validate :func:`generate`'s ``bias`` and fill in ``window_days``."""
    if bias is None:
        return None
    known = {"attribute", "group", "dropout", "window_days"}
    if not isinstance(bias, dict) or not {"attribute", "group", "dropout"} <= set(bias):
        raise ValueError("bias needs the keys 'attribute', 'group' and 'dropout'")
    if set(bias) - known:
        raise ValueError(f"unknown bias keys: {sorted(set(bias) - known)}")
    values = {"gender": GENDERS, "region": REGIONS}.get(bias["attribute"])
    if values is None:
        raise ValueError(f"bias attribute must be 'gender' or 'region', got {bias['attribute']!r}")
    if bias["group"] not in values:
        raise ValueError(f"bias group {bias['group']!r} is not one of {values}")
    dropout = float(bias["dropout"])
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"bias dropout must be in [0, 1], got {dropout}")
    window = int(bias.get("window_days", BIAS_WINDOW_DAYS))
    if not 1 <= window <= history_days:
        raise ValueError(f"bias window_days must be in [1, history_days], got {window}")
    return {
        "attribute": bias["attribute"],
        "group": bias["group"],
        "dropout": dropout,
        "window_days": window,
    }


def plant_bias(
    bias: dict,
    seed: int,
    chunk_index: int,
    f: Frame,
    lat: Latent,
    gender_code: np.ndarray,
    region_code: np.ndarray,
) -> Latent:
    """``lat`` with extra dropouts in the ``bias`` group (validated by :func:`_check_bias`)."""
    n, H, death, birth = f.n, f.H, lat.death, lat.birth
    codes = gender_code if bias["attribute"] == "gender" else region_code
    values = GENDERS if bias["attribute"] == "gender" else REGIONS
    brng = np.random.default_rng([seed, chunk_index, 1])
    hit = (codes == values.index(bias["group"])) & (brng.random(n) < bias["dropout"])
    extra = H - brng.random(n) * bias["window_days"]
    death = np.where(hit, np.minimum(death, np.maximum(extra, birth)), death)
    alive_at_end = death > H
    return replace(lat, death=death, alive_at_end=alive_at_end)
