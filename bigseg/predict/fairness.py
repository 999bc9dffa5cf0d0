"""Fairness audit of the churn and high-value flags across protected groups.

Pure NumPy/pandas on arrays already gathered to one process (one value per customer);
no Dask. The pipeline collects, for the customers it scores or backtests, the protected
attributes (``fairness.protected``, columns of the customers table such as ``age``,
``gender``, ``region``), the model outputs and, where known, the realised outcome, and
calls :func:`audit`.

Measures, per protected attribute and group:

* ``n``, ``share``;
* the rate of each flag (share of the group flagged), and the realised rate of the
  outcome where it is known;
* the churn ROC-AUC within the group (and the high-value AUC when a value score is
  given): does the score rank the group's customers as well as everyone else's;
* the true-positive rate of each flag: the share of the group's actual churners
  (actual high-value customers) that the flag catches.

and per attribute, over the groups with at least ``min_group_size`` customers:

* the demographic-parity ratio of each flag, lowest group rate / highest group rate;
  below ``threshold`` (0.8, the "four-fifths rule") it becomes a finding in ``flags``;
* the equal-opportunity difference of each flag, highest minus lowest group TPR.

Smaller groups are listed with their count and share only, and take no part in ratios
or differences: their rates would be noisy and could single people out. Missing
attribute values (None, NaN, empty strings) form their own group, ``"unknown"``. A
numeric ``age`` is banded first (:func:`band_age`).

A disparity is a fact about the flags, not a verdict: a group can churn more in
reality (see ``bigseg.synth.generate(..., bias=...)``), and then a good churn flag
*should* flag it more often. The findings say where to look; the realised rates and
TPRs next to them say whether the flag merely follows reality.

Result
------
:func:`audit` returns a JSON-serialisable dict (str keys, Python floats/ints/bools, None
where undefined)::

    {"n": int, "threshold": float, "min_group_size": int, "alpha": float|None,
     "attributes": {attribute: {
         "groups": {label: {"n", "share", "reported",
                            # only when reported (n >= min_group_size):
                            "churn_flag_rate", "churn_rate", "churn_auc",
                            "churn_flag_tpr", "high_value_flag_rate",
                            "high_value_rate", "high_value_auc",
                            "high_value_flag_tpr"}},
         "excluded_groups": [label, ...],   # below min_group_size
         "demographic_parity": {flag: {"ratio", "lowest_group", "lowest_rate",
                                       "highest_group", "highest_rate",
                                       "p_value"} or None},
         "equal_opportunity": {flag: {"difference", "lowest_group",
                                      "lowest_tpr", "highest_group",
                                      "highest_tpr"} or None},
         "flags": [str, ...]}},
     "flags": [str, ...]}   # all attributes' findings

``flag`` is ``"churn_flag"`` or ``"high_value_flag"``. ``*_rate`` of a flag is
the share of the group flagged; ``churn_rate`` / ``high_value_rate`` are the
realised rates. ``p_value`` is the two-sided two-proportion z-test of the
lowest against the highest group (findings depend on it only with ``alpha``).
A ratio is None when fewer than two groups are reported or no
reported group is flagged; a difference is None when fewer than two reported
groups have actual positives.

:func:`model_features` keeps protected attributes (and features derived from them) out
of the models unless explicitly allowed. It, the group labels and the age bands are in
:mod:`bigseg.predict.protected` (importable from here too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bigseg.predict.protected import AGE_ATTRIBUTES as AGE_ATTRIBUTES
from bigseg.predict.protected import (
    AGE_BANDS,
    UNKNOWN,
    _order,
    band_age,
    group_labels,
    model_features,
)
from bigseg.predict.ranking import roc_auc

__all__ = ["AGE_BANDS", "UNKNOWN", "FLAGS", "audit", "band_age", "group_labels", "model_features"]

#: the flags audited: name -> (flag argument, outcome argument, score argument, wording)
FLAGS: dict[str, tuple[str, str, str, str]] = {
    "churn_flag": ("churn_flag", "y_churn", "p_churn", "high churn risk"),
    "high_value_flag": ("high_value_flag", "y_high_value", "p_value", "high value"),
}


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def _float(x: float | None) -> float | None:
    """A plain float, or None when undefined (None, NaN, infinite)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC-AUC by the rank-sum formula (ties share their mean rank); None if one class."""
    ok = np.isfinite(score)
    y, score = y[ok], score[ok]
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return None
    return roc_auc(y, score)


def _two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test; None if undefined."""
    pool = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pool * (1 - pool) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))


def _bool(name: str, x: Any, n: int) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},)")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ValueError(f"{name} has missing values")
    if a.dtype == object and pd.isna(a).any():
        raise ValueError(f"{name} has missing values")
    return a.astype(bool)


def _score(name: str, x: Any, n: int) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},)")
    return a


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --------------------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------------------


def audit(
    groups: Mapping[str, Any],
    *,
    churn_flag: Any = None,
    y_churn: Any = None,
    p_churn: Any = None,
    high_value_flag: Any = None,
    y_high_value: Any = None,
    p_value: Any = None,
    threshold: float = 0.8,
    min_group_size: int = 50,
    alpha: float | None = None,
) -> dict:
    """Audit the churn and high-value flags for disparities across protected groups.

    All arrays hold one entry per customer, in the same order. Every argument but
    ``groups`` is optional: a metric whose inputs are missing is None.

    Parameters
    ----------
    groups : mapping of str to array-like
        Protected attribute name -> the attribute's value per customer (e.g. the
        ``age``, ``gender`` and ``region`` columns of the customers table). A numeric
        ``age`` is banded (:func:`band_age`); missing values form the group
        ``"unknown"``.
    churn_flag : array-like of bool, optional
        The model's high-churn-risk flag.
    y_churn : array-like of bool, optional
        Realised churn (True = churned, e.g. no purchase in the horizon). Needed for
        the churn TPR and AUC.
    p_churn : array-like of float, optional
        Churn probability or any score ordered like it (NaN = not scored; such rows
        are left out of the AUC). Needed for the churn AUC.
    high_value_flag : array-like of bool, optional
        The model's high-value flag.
    y_high_value : array-like of bool, optional
        Realised high value (e.g. top share of spend in the horizon).
    p_value : array-like of float, optional
        Predicted value (or its rank), for the high-value AUC against ``y_high_value``.
    threshold : float, default 0.8
        A demographic-parity ratio below this is reported in ``flags`` (four-fifths
        rule).
    min_group_size : int, default 50
        Groups with fewer customers are reported with ``n`` and ``share`` only and
        left out of ratios and differences.
    alpha : float, optional
        If given, a ratio below ``threshold`` becomes a finding only when the
        two-proportion test of its lowest against its highest group also has
        ``p_value < alpha`` (practical *and* statistical significance, against noise
        in small groups). None (the default): the four-fifths rule alone.

    Returns
    -------
    dict
        JSON-serialisable (str keys, Python floats/ints/bools, None where undefined);
        its layout is under "Result" in the module docstring.

    Raises
    ------
    ValueError
        If the arrays differ in length, a flag or outcome has missing values,
        ``threshold`` is not in (0, 1], ``min_group_size`` < 1 or ``alpha`` is not in
        (0, 1).
    """
    _check_settings(threshold, min_group_size, alpha)
    given = {
        "churn_flag": churn_flag,
        "y_churn": y_churn,
        "p_churn": p_churn,
        "high_value_flag": high_value_flag,
        "y_high_value": y_high_value,
        "p_value": p_value,
    }
    labels, arrays, n = _inputs(groups, given)
    attributes = {}
    all_flags: list[str] = []
    for name, lab in labels.items():
        res = _audit_attribute(name, lab, arrays, n, threshold, min_group_size, alpha)
        attributes[name] = res
        all_flags.extend(res["flags"])
    return {
        "n": int(n),
        "threshold": float(threshold),
        "min_group_size": int(min_group_size),
        "alpha": _float(alpha),
        "attributes": attributes,
        "flags": all_flags,
    }


def _check_settings(threshold: float, min_group_size: int, alpha: float | None) -> None:
    """ValueError for a ``threshold``, ``min_group_size`` or ``alpha`` out of range."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_group_size < 1:
        raise ValueError(f"min_group_size must be >= 1, got {min_group_size}")


def _inputs(
    groups: Mapping[str, Any], given: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None], int]:
    """Group labels per attribute, the flags, outcomes and scores as checked arrays
    (None where not given), and the number of customers they all share."""
    labels = {str(name): group_labels(str(name), v) for name, v in groups.items()}
    sizes = {len(v) for v in labels.values()}
    if len(sizes) > 1:
        raise ValueError(f"protected attributes differ in length: {sorted(sizes)}")
    if not sizes:
        lengths = {len(np.asarray(v)) for v in given.values() if v is not None}
        sizes = lengths or {0}
    if len(sizes) > 1:
        raise ValueError("arrays differ in length")
    (n,) = sizes
    arrays = {
        k: (_score(k, v, n) if k.startswith("p_") else _bool(k, v, n)) for k, v in given.items()
    }
    return labels, arrays, n


def _audit_attribute(
    name: str,
    lab: np.ndarray,
    arrays: dict,
    n: int,
    threshold: float,
    min_group_size: int,
    alpha: float | None,
) -> dict:
    groups: dict[str, dict] = {}
    counts: dict[str, dict[str, tuple[int, int]]] = {f: {} for f in FLAGS}  # (flagged, n)
    tprs: dict[str, dict[str, float]] = {f: {} for f in FLAGS}
    excluded = []
    for g in _order(name, np.unique(lab) if n else []):
        m = lab == g
        size = int(m.sum())
        row: dict[str, Any] = {"n": size, "share": size / n, "reported": size >= min_group_size}
        groups[g] = row
        if not row["reported"]:
            excluded.append(g)
            continue
        for flag, (f_arg, y_arg, s_arg, _) in FLAGS.items():
            target = flag.removesuffix("_flag")
            f, y, s = arrays[f_arg], arrays[y_arg], arrays[s_arg]
            fm = f[m] if f is not None else None
            ym = y[m] if y is not None else None
            row[f"{flag}_rate"] = float(fm.mean()) if fm is not None else None
            row[f"{target}_rate"] = float(ym.mean()) if ym is not None else None
            auc = _auc(ym, s[m]) if ym is not None and s is not None else None
            row[f"{target}_auc"] = _float(auc)
            has_tp = fm is not None and ym is not None and bool(ym.any())
            tpr = float(fm[ym].mean()) if has_tp else None
            row[f"{flag}_tpr"] = tpr
            if fm is not None:
                counts[flag][g] = (int(fm.sum()), size)
            if tpr is not None:
                tprs[flag][g] = tpr

    parity, opportunity, flags = {}, {}, []
    for flag, (*_, wording) in FLAGS.items():
        parity[flag] = _parity(counts[flag])
        opportunity[flag] = _opportunity(tprs[flag])
        dp = parity[flag]
        if dp is None or dp["ratio"] >= threshold:
            continue
        p = dp["p_value"]
        if alpha is None or (p is not None and p < alpha):
            flags.append(
                f"{name}: {wording} flag ({flag}) demographic-parity ratio "
                f"{dp['ratio']:.2f} < {threshold:g}: lowest rate in group "
                f"{dp['lowest_group']!r} ({_pct(dp['lowest_rate'])} of "
                f"{counts[flag][dp['lowest_group']][1]} flagged), highest in group "
                f"{dp['highest_group']!r} ({_pct(dp['highest_rate'])} of "
                f"{counts[flag][dp['highest_group']][1]})"
                + (f", two-proportion p = {p:.2g}" if p is not None else "")
            )
    return {
        "groups": groups,
        "excluded_groups": excluded,
        "demographic_parity": parity,
        "equal_opportunity": opportunity,
        "flags": flags,
    }


def _parity(counts: dict[str, tuple[int, int]]) -> dict | None:
    """Lowest / highest flag rate over the reported groups (ties: first in order)."""
    if len(counts) < 2:
        return None
    rates = {g: k / m for g, (k, m) in counts.items()}
    lo = min(rates, key=rates.__getitem__)
    hi = max(rates, key=rates.__getitem__)
    if rates[hi] == 0:
        return None
    return {
        "ratio": rates[lo] / rates[hi],
        "lowest_group": lo,
        "lowest_rate": rates[lo],
        "highest_group": hi,
        "highest_rate": rates[hi],
        "p_value": _float(_two_proportion_p(*counts[lo], *counts[hi])),
    }


def _opportunity(tprs: dict[str, float]) -> dict | None:
    """Highest minus lowest true-positive rate over the reported groups."""
    if len(tprs) < 2:
        return None
    lo = min(tprs, key=tprs.__getitem__)
    hi = max(tprs, key=tprs.__getitem__)
    return {
        "difference": tprs[hi] - tprs[lo],
        "lowest_group": lo,
        "lowest_tpr": tprs[lo],
        "highest_group": hi,
        "highest_tpr": tprs[hi],
    }
