"""PSI and drift reports (see :mod:`bigseg.monitor.drift`, whose docstring describes
what is measured): :func:`psi`, :func:`psi_level`, :func:`drift_report` over the
reference bins and :func:`segment_shift` over the segment mix. Pure NumPy, no Dask.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bigseg.monitor.bins import _check_counts

#: floor of a bin's share in :func:`psi`
DEFAULT_EPS = 1e-4

#: PSI thresholds: "stable" below ``warn``, "moderate" below ``alert``, "major" from it
DEFAULT_THRESHOLDS: dict[str, float] = {"warn": 0.1, "alert": 0.25}


# --------------------------------------------------------------------------------------
# PSI and reports
# --------------------------------------------------------------------------------------


def _shares(counts: Sequence[float], what: str) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-d sequence of counts")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"{what} must be finite and non-negative")
    total = c.sum()
    if total <= 0:
        raise ValueError(f"{what} sum to 0: no population to compare")
    return c / total


def _terms(p: np.ndarray, q: np.ndarray, eps: float) -> np.ndarray:
    pf, qf = np.maximum(p, eps), np.maximum(q, eps)
    return (qf - pf) * np.log(qf / pf)


def psi(
    ref_counts: Sequence[float], cur_counts: Sequence[float], eps: float = DEFAULT_EPS
) -> float:
    """Population stability index between two binned distributions.

    ``sum_i (q_i - p_i) * ln(q_i / p_i)`` over the bins, with ``p`` and ``q`` the
    reference and current shares (counts divided by their totals), each floored at
    ``eps``.

    Parameters
    ----------
    ref_counts, cur_counts : sequence of float
        Counts (or shares) per bin, same bins in the same order.
    eps : float, default 1e-4
        Floor of a share, so that an empty bin gives a finite term.

    Returns
    -------
    float
        >= 0; 0 for identical shares.

    Examples
    --------
    >>> psi([50, 50], [50, 50])
    0.0
    >>> round(psi([50, 50], [60, 40]), 4)
    0.0405
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    p = _shares(ref_counts, "ref_counts")
    q = _shares(cur_counts, "cur_counts")
    if p.size != q.size:
        raise ValueError(f"ref_counts has {p.size} bins, cur_counts {q.size}")
    return float(max(0.0, _terms(p, q, eps).sum()))


def _thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    unknown = sorted(set(th) - set(DEFAULT_THRESHOLDS))
    if unknown:
        raise ValueError(f"unknown threshold keys {unknown} (known: warn, alert)")
    warn, alert = float(th["warn"]), float(th["alert"])
    if not 0 <= warn <= alert:
        raise ValueError(f"thresholds must satisfy 0 <= warn <= alert, got {th}")
    return {"warn": warn, "alert": alert}


def psi_level(value: float, thresholds: Mapping[str, float] | None = None) -> str:
    """``"stable"`` (< warn), ``"moderate"`` (warn <= PSI < alert) or ``"major"``.

    Parameters
    ----------
    value : float
        A PSI.
    thresholds : mapping, optional
        ``{"warn": 0.1, "alert": 0.25}`` by default; either key may be given alone.

    Returns
    -------
    str
    """
    th = _thresholds(thresholds)
    if value >= th["alert"]:
        return "major"
    if value >= th["warn"]:
        return "moderate"
    return "stable"


def drift_report(
    reference: dict,
    current_counts: Mapping[str, Sequence[int]],
    thresholds: Mapping[str, float] | None = None,
    eps: float = DEFAULT_EPS,
) -> dict:
    """PSI of every variable between the reference and the current scoring run.

    Parameters
    ----------
    reference : dict
        From :func:`reference_bins` (or :func:`with_counts`): features, or model scores.
    current_counts : mapping of str to list of int
        Current counts per bin, e.g. :func:`bucket_counts` summed over the buckets.
    thresholds : mapping, optional
        ``{"warn": 0.1, "alert": 0.25}`` by default.
    eps : float, default 1e-4
        Share floor of :func:`psi`.

    Returns
    -------
    dict
        * ``"features"``: ``{name: {"psi", "level", "n_reference", "n_current",
          "missing_share_reference", "missing_share_current", "top_bin": {"label",
          "reference_share", "current_share"}}}``, ``top_bin`` being the bin that
          contributes most to the PSI;
        * ``"alert"``: names with level ``"major"`` (PSI >= alert), worst first;
        * ``"moderate"``: names with level ``"moderate"``, worst first;
        * ``"max_psi"``, ``"max_feature"``: the largest PSI and its variable (``None``
          when nothing was measured);
        * ``"not_measured"``: reference variables absent from ``current_counts``;
          ``"empty"``: variables whose current counts are all 0;
        * ``"thresholds"``.
    """
    th = _thresholds(thresholds)
    feats = reference["features"]
    unknown = sorted(set(current_counts) - set(feats))
    if unknown:
        raise ValueError(f"current counts for variables not in the reference: {unknown}")
    per: dict[str, dict] = {}
    not_measured: list[str] = []
    empty: list[str] = []
    for name, spec in feats.items():
        if name not in current_counts:
            not_measured.append(name)
            continue
        cur = _check_counts(current_counts[name], len(spec["labels"]), name)
        n_cur = sum(cur)
        if n_cur == 0:
            empty.append(name)
            continue
        p = _shares(spec["counts"], f"reference counts of {name!r}")
        q = np.asarray(cur, dtype=np.float64) / n_cur
        terms = _terms(p, q, eps)
        value = float(max(0.0, terms.sum()))
        top = int(np.argmax(terms))
        per[name] = {
            "psi": value,
            "level": psi_level(value, th),
            "n_reference": int(spec["n"]),
            "n_current": int(n_cur),
            "missing_share_reference": float(p[-1]),
            "missing_share_current": float(q[-1]),
            "top_bin": {
                "label": str(spec["labels"][top]),
                "reference_share": float(p[top]),
                "current_share": float(q[top]),
            },
        }
    ranked = sorted(per, key=lambda k: -per[k]["psi"])
    return {
        "features": per,
        "alert": [k for k in ranked if per[k]["level"] == "major"],
        "moderate": [k for k in ranked if per[k]["level"] == "moderate"],
        "max_psi": per[ranked[0]]["psi"] if ranked else None,
        "max_feature": ranked[0] if ranked else None,
        "not_measured": not_measured,
        "empty": empty,
        "thresholds": th,
    }


def _segment_key(k: Any) -> str:
    """Segment ids as strings, so 3, np.int64(3), 3.0 and "3" (after JSON) all match."""
    if isinstance(k, (bool, np.bool_)):
        return str(k)
    if isinstance(k, numbers.Integral):
        return str(int(k))
    if isinstance(k, numbers.Real) and float(k).is_integer():
        return str(int(k))
    return str(k)


def _by_key(d: Mapping[Any, Any], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = _segment_key(k)
        if key in out:
            raise ValueError(f"{what}: segment ids {key!r} appear twice (e.g. 3 and '3')")
        out[key] = float(v)
    return out


def segment_shift(
    ref_shares: Mapping[Any, float],
    cur_counts: Mapping[Any, int],
    thresholds: Mapping[str, float] | None = None,
    eps: float = DEFAULT_EPS,
) -> dict:
    """Change of the segment mix: PSI over segments and the largest share change.

    Parameters
    ----------
    ref_shares : mapping of segment id to float
        Shares (or counts; they are normalised) of each segment at training time.
    cur_counts : mapping of segment id to int
        Customers per segment in the current scoring run (summed over buckets with
        :func:`merge_counts`).
    thresholds : mapping, optional
        ``{"warn": 0.1, "alert": 0.25}`` by default.
    eps : float, default 1e-4
        Share floor of :func:`psi`.

    Returns
    -------
    dict
        ``{"psi", "level", "max_abs_change", "max_change_segment", "segments": {id:
        {"reference_share", "current_share", "change"}}, "new_segments",
        "vanished_segments", "n_current", "thresholds"}``. Segment ids are strings
        (``3`` and ``"3"`` are the same segment, as after a JSON round trip);
        ``change`` is current minus reference share. A segment absent from one side
        has share 0 there; ``new_segments`` are absent from the reference,
        ``vanished_segments`` have no current customer.

    Examples
    --------
    >>> r = segment_shift({0: 0.5, 1: 0.3, 2: 0.2}, {0: 70, 1: 20, 2: 10})
    >>> r["max_change_segment"], round(r["max_abs_change"], 2), round(r["psi"], 3)
    ('0', 0.2, 0.177)
    """
    th = _thresholds(thresholds)
    ref = _by_key(ref_shares, "ref_shares")
    cur = _by_key(cur_counts, "cur_counts")
    ids = list(ref) + [k for k in cur if k not in ref]
    p = _shares([ref.get(k, 0.0) for k in ids], "ref_shares")
    c = [cur.get(k, 0.0) for k in ids]
    q = _shares(c, "cur_counts")
    value = float(max(0.0, _terms(p, q, eps).sum()))
    change = q - p
    top = int(np.argmax(np.abs(change)))
    return {
        "psi": value,
        "level": psi_level(value, th),
        "max_abs_change": float(abs(change[top])),
        "max_change_segment": ids[top],
        "segments": {
            k: {
                "reference_share": float(p[i]),
                "current_share": float(q[i]),
                "change": float(change[i]),
            }
            for i, k in enumerate(ids)
        },
        "new_segments": [k for k in ids if k not in ref],
        "vanished_segments": [k for k, n in zip(ids, c, strict=True) if n == 0],
        "n_current": int(round(sum(c))),
        "thresholds": th,
    }
