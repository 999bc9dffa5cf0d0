"""The events' pass of :mod:`bigseg.features.fused`: per-bucket engagement features of
every cutoff in one compiled pass a cutoff, the frames of
:func:`~bigseg.features.behaviour.engagement_features` (``tests/test_fast_paths.py``
compares them)."""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd
import pyarrow as pa

from bigseg.features import behaviour
from bigseg.features.fused import _I64_MIN, _codes, _plain_numpy, _selections, _sorted_runs
from bigseg.features.rfm import DAY_US, days_since


@numba.njit(cache=True, nogil=True)
def _events_pass(
    starts, ends, ts, etype, is_session, is_app, ch, ch_v, k_ch, pv, cutoff, w90
):  # pragma: no cover - compiled
    """Per customer run, the events at or before ``cutoff`` (``w90``: start of the last
    90 days, excluded)."""
    n = len(starts)
    total = np.zeros(n, np.int64)
    last = np.full(n, _I64_MIN)
    days = np.zeros(n, np.int64)
    sessions = np.zeros(n, np.int64)
    by_ch = np.zeros((n, max(k_ch, 1)), np.int64)
    views = np.zeros(n)
    apps = np.zeros(n, np.int64)
    d_lo = (w90 + 1) // DAY_US  # first day a row of the window can fall on
    seen = np.zeros(cutoff // DAY_US - d_lo + 2, np.bool_)
    touched = np.empty(len(seen), np.int64)
    for i in range(n):
        m = 0
        for r in range(starts[i], ends[i]):
            t = ts[r]
            if t > cutoff:
                continue
            total[i] += 1
            if t > last[i]:
                last[i] = t
            if t <= w90:
                continue
            d = t // DAY_US - d_lo
            if not seen[d]:
                seen[d] = True
                touched[m] = d
                m += 1
            views[i] += pv[r]
            e = etype[r]
            if e >= 0:
                if is_session[e]:
                    sessions[i] += 1
                    c = ch[r]
                    if c >= 0 and ch_v[c] >= 0:
                        by_ch[i, ch_v[c]] += 1
                if is_app[e]:
                    apps[i] += 1
        days[i] = m
        for j in range(m):
            seen[touched[j]] = False
    return total, last, days, sessions, by_ch, views, apps


def engagement_features(
    events: pa.Table,
    cutoffs: dict[str, int],
    channels: Sequence[str] | None,
    sample: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, pd.DataFrame] | None:
    """For each named cutoff, ``behaviour.engagement_features(events, cut, channels)``;
    None when ``events`` does not fit this path (ids not sorted, a null id or time,
    ``event_type`` or ``channel`` not dictionary-encoded, no channel vocabulary).
    ``sample``: as for :func:`transaction_features`."""
    names = events.column_names
    has_ch, has_pv = "channel" in names, "page_views" in names
    runs = _sorted_runs(events)
    if runs is None or "event_type" not in names or has_ch and channels is None:
        return None
    uniq, starts, ends = runs
    ts = _plain_numpy(events, "timestamp", np.int64)
    if ts is None:
        return None
    n_rows = events.num_rows
    et = _codes(events, "event_type")
    ch = (
        _codes(events, "channel")
        if has_ch
        else (np.zeros(n_rows, np.int64), np.zeros(0, dtype=object))
    )
    if et is None or ch is None:
        return None
    (et_codes, et_dict), (ch_codes, ch_dict) = et, ch
    vocab = behaviour._vocab(channels, ch_dict, "channel") if has_ch else []
    ch_v = behaviour._vocab_index(vocab, ch_dict)[:-1] if has_ch else np.zeros(0, np.int64)
    is_session = np.asarray(et_dict == "session", dtype=np.bool_)
    is_app = np.asarray(et_dict == "app_open", dtype=np.bool_)
    if has_pv:
        pv = events.column("page_views").cast(pa.float64()).fill_null(0.0).to_numpy()
    else:
        pv = np.zeros(n_rows)
    sel = _selections(uniq, cutoffs, sample, seed)
    out = {}
    for name, cut in cutoffs.items():
        total, last, days, sessions, by_ch, views, apps = _events_pass(
            starts[sel[name]],
            ends[sel[name]],
            ts,
            np.ascontiguousarray(et_codes, dtype=np.int64),
            is_session,
            is_app,
            np.ascontiguousarray(ch_codes, dtype=np.int64),
            np.asarray(ch_v, np.int64),
            len(vocab),
            np.ascontiguousarray(pv, np.float64),
            cut,
            cut - 90 * DAY_US,
        )
        keep = np.flatnonzero(total > 0)
        cols: dict[str, np.ndarray] = {
            "active_days_90d": days[keep],
            "sessions_90d": sessions[keep],
        }
        for j, suffix in enumerate(behaviour.column_suffixes(vocab)):
            cols[f"sessions_90d_{suffix}"] = by_ch[keep, j]
        if has_pv:
            cols["page_views_90d"] = views[keep]
        cols["app_opens_90d"] = apps[keep]
        cols["days_since_last_activity"] = days_since(cut, last[keep])
        cols["events_total"] = total[keep]
        out[name] = behaviour._frame(uniq[sel[name]][keep], cols)
    return out
