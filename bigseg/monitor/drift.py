"""Drift measurement for scheduled scoring, and the retrain policy built on it.

Pure NumPy/pandas, no Dask: the pipeline calls :func:`bucket_counts` once per bucket
(a Dask task each), adds the results on the client with :func:`merge_counts`, and
turns the sums into a report with :func:`drift_report` and :func:`segment_shift`.
Everything these functions return is made of ``dict``, ``list``, ``str``, ``int``,
``float``, ``bool`` and ``None`` (no NumPy types), so it can be written with
:mod:`json` as it is.

What is measured
----------------
**Population stability index (PSI).** For a variable binned into the same bins at
reference time (shares ``p``) and now (shares ``q``),
``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)``, with every share floored at ``eps``
(``1e-4``) so that an empty bin contributes a large but finite term
(:func:`psi`). PSI is symmetric in ``p`` and ``q`` and 0 for identical shares. Levels
(:func:`psi_level`, thresholds :data:`DEFAULT_THRESHOLDS`):

* ``"stable"``: PSI < 0.1;
* ``"moderate"``: 0.1 <= PSI < 0.25;
* ``"major"``: PSI >= 0.25.

For scale: a normal variable whose mean moves by half a standard deviation has a
decile PSI of about 0.24; by a quarter of one, about 0.06.

**Bins** (:func:`reference_bins`), fixed at training time from a sample of the
training population, one set per variable:

* numeric variable with more than ``n_bins`` distinct finite values: quantile edges
  (deciles for ``n_bins=10``) of the sample, duplicates dropped (a point mass such as
  "0 purchases" takes a bin of its own, possibly wider than a decile), ``-inf`` and
  ``+inf`` at the ends. Bins are closed on the right: ``(e[i-1], e[i]]``;
* numeric variable with at most ``n_bins`` distinct finite values (flags, small
  counts, a constant): one bin per value, the edges halfway between consecutive values,
  plus one bin below the smallest value and one above the largest (so a value never
  seen in training, or a constant feature that stops being constant, shows up as
  drift rather than being absorbed). Around a constant ``c`` the inner bin is
  ``(c - 0.5, c + 0.5]`` for an integer ``c`` and ``c +/- 1e-6 * max(1, |c|)``
  otherwise;
* non-numeric variable (strings): its ``max_categories`` most frequent values, then
  ``"other"`` for any other value (also values first seen at scoring time);
* always, last, a ``"missing"`` bin: NaN, None and (for strings) ``""``. It is kept
  even when the sample had no missing value, so missing values that start to appear
  are drift too. Infinite values are not missing: they fall in the end bins.

The reference shares come from the sample's counts; for exact shares, count the full
training population with the fixed edges (:func:`bucket_counts` per bucket,
:func:`merge_counts`) and store them with :func:`with_counts`. A sample of 10,000 or
more rows is enough: with ``B`` bins and ``n`` rows on each side, two samples of one
unchanged population have an expected PSI of about ``(B - 1) * 2 / n`` (0.002 for
deciles and 10,000 rows), far below the "moderate" threshold.

**Features, scores, segments.** The same machinery serves three purposes:

* model input features: ``reference_bins`` on a sample of the training feature matrix;
* model outputs: churn probability and value prediction (e.g. ``{"p_churn": ...,
  "value_pred": ...}``) of the trained model on its training population (or the
  backtest population), binned into their own deciles exactly like features. A score
  reference is tied to one model: recompute it whenever the model is retrained;
* segment mix: :func:`segment_shift` compares the segment shares of the segmentation
  model at training time with the segment counts at scoring time (PSI over segments,
  plus the largest absolute change of a share and its segment).

Retrain policy
--------------
:func:`should_retrain` recommends retraining when **any** of these holds (policy keys
and defaults in :data:`DEFAULT_POLICY`; set a key to ``None`` to switch its check off):

1. ``max_feature_psi`` (0.25): some model input feature has PSI >= 0.25 ("major"
   feature drift): the model sees inputs unlike those it was trained on;
2. ``max_score_psi`` (0.25): the distribution of a model output (churn probability,
   value prediction) has PSI >= 0.25: the model's decisions (flags, tiers, audiences)
   changed materially, whether the customers or the model's fit is the cause;
3. ``max_segment_psi`` (0.25): the PSI of the segment shares is >= 0.25: the customer
   base now splits differently across segments, so per-segment models and offers were
   fitted on a different mix;
4. ``max_model_age_days`` (30): the model is at least 30 days old, whatever the drift:
   a slow drift below every threshold still accumulates, and a regular refit bounds it.

Moderate drift (0.1 <= PSI < 0.25) alone never triggers a retrain; it is listed in
the report (``"moderate"``) for a person to look at. The answer comes with one
human-readable reason per triggered rule (features named, worst first). A check
whose part of the report is absent (e.g. no score reference yet) is skipped.

Storing and passing
-------------------
At training time, store (JSON, next to the models)::

    feature_ref = reference_bins(sample_of_features)       # then optionally
    feature_ref = with_counts(feature_ref, full_counts)    # exact training shares
    score_ref = reference_bins({"p_churn": p, "value_pred": v})
    segment_shares = {segment_id: share, ...}
    trained_at = <date>

At scoring time::

    counts = merge_counts over buckets of bucket_counts(bucket_frame, feature_ref)
    scounts = merge_counts over buckets of bucket_counts(bucket_scores, score_ref)
    segcounts = merge_counts over buckets of {segment_id: n_customers, ...}
    report = {"features": drift_report(feature_ref, counts),
              "scores": drift_report(score_ref, scounts),
              "segments": segment_shift(segment_shares, segcounts)}
    retrain, reasons = should_retrain(report, model_age_days, policy)

The two end edges of a numeric variable are ``-inf`` and ``+inf``. Python's
:mod:`json` writes them as ``-Infinity``/``Infinity`` and reads them back; a consumer
that needs strict JSON may write them as ``null``: :func:`bin_counts` uses only the
inner edges. The reports hold no infinity or NaN.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_POLICY",
    "DEFAULT_THRESHOLDS",
    "MISSING",
    "OTHER",
    "bin_counts",
    "bucket_counts",
    "drift_report",
    "merge_counts",
    "psi",
    "psi_level",
    "reference_bins",
    "segment_shift",
    "should_retrain",
    "with_counts",
]

#: version of the reference format written by :func:`reference_bins`
FORMAT_VERSION = 1

#: floor of a bin's share in :func:`psi`
DEFAULT_EPS = 1e-4

#: PSI thresholds: "stable" below ``warn``, "moderate" below ``alert``, "major" from it
DEFAULT_THRESHOLDS: dict[str, float] = {"warn": 0.1, "alert": 0.25}

#: retrain policy of :func:`should_retrain` (see the module docstring)
DEFAULT_POLICY: dict[str, float | None] = {
    "max_feature_psi": 0.25,
    "max_score_psi": 0.25,
    "max_segment_psi": 0.25,
    "max_model_age_days": 30.0,
}

#: label of the bin of missing values (always the last bin)
MISSING = "missing"

#: label of the bin of unlisted values of a non-numeric variable
OTHER = "other"

#: most categories kept for a non-numeric variable
MAX_CATEGORIES = 20

#: at most this many features are named in one retrain reason
_MAX_NAMED = 5


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


def _is_numeric(values: Any) -> bool:
    """Whether ``values`` are binned by edges (numbers, booleans) or by category."""
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    if dtype is None or getattr(dtype, "kind", "O") == "O":
        kind = pd.api.types.infer_dtype(pd.Series(values, dtype=object), skipna=True)
        return kind in ("floating", "integer", "mixed-integer-float", "boolean", "empty", "decimal")
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        if getattr(dtype, "kind", "") == "c":
            raise TypeError("complex values cannot be binned")
        return True
    if pd.api.types.is_string_dtype(dtype):
        return False
    raise TypeError(f"values of dtype {dtype} cannot be binned (numbers, booleans or strings only)")


def _as_float(values: Any) -> np.ndarray:
    """``values`` as a float64 array, missing values (None, NA) as NaN."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False).ravel()
    if not hasattr(values, "dtype"):
        values = np.asarray(values, dtype=object).ravel()
    return pd.Series(values).to_numpy(dtype=np.float64, na_value=np.nan).ravel()


def _as_labels(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as strings (object array) and the mask of missing ones (NA or "")."""
    s = pd.Series(np.asarray(values, dtype=object).ravel(), dtype=object)
    missing = (s.isna() | (s == "")).to_numpy()
    return s.astype(str).to_numpy(dtype=object), missing


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# --------------------------------------------------------------------------------------
# Reference bins
# --------------------------------------------------------------------------------------


def _numeric_edges(x: np.ndarray, n_bins: int) -> tuple[list[float], str, list[str]]:
    """Edges (with -inf/+inf ends), the method used and the bin labels (without missing)."""
    finite = x[np.isfinite(x)]
    uniq = np.unique(finite)
    if uniq.size == 0:
        return [-math.inf, math.inf], "unique", ["(-inf, inf)"]
    if uniq.size > n_bins:
        inner = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
        edges = [-math.inf, *(float(e) for e in inner), math.inf]
        labels = [f"({_fmt(a)}, {_fmt(b)}]" for a, b in zip(edges[:-2], edges[1:-1], strict=True)]
        labels.append(f"({_fmt(edges[-2])}, inf)")
        return edges, "quantile", labels
    if uniq.size == 1:
        c = float(uniq[0])
        w = 0.5 if c.is_integer() else 1e-6 * max(1.0, abs(c))
        inner = [c - w, c + w]
    else:
        gaps = np.diff(uniq)
        mids = (uniq[:-1] + uniq[1:]) / 2.0
        inner = [
            float(uniq[0] - gaps[0] / 2.0),
            *(float(m) for m in mids),
            float(uniq[-1] + gaps[-1] / 2.0),
        ]
    edges = [-math.inf, *inner, math.inf]
    labels = [
        f"< {_fmt(float(uniq[0]))}",
        *(f"= {_fmt(float(v))}" for v in uniq),
        f"> {_fmt(float(uniq[-1]))}",
    ]
    return edges, "unique", labels


def _categories(values: Any, max_categories: int) -> list[str]:
    labels, missing = _as_labels(values)
    vc = pd.Series(labels[~missing]).value_counts()
    if vc.empty:
        return []
    order = sorted(zip(vc.index, vc.to_numpy(), strict=True), key=lambda t: (-t[1], t[0]))
    return [str(v) for v, _ in order[:max_categories]]


def _spec_with_counts(spec: dict, counts: Sequence[int]) -> dict:
    n = int(sum(counts))
    spec["counts"] = [int(c) for c in counts]
    spec["n"] = n
    spec["shares"] = [float(c) / n if n else 0.0 for c in counts]
    return spec


def reference_bins(
    sample: Mapping[str, Any], n_bins: int = 10, *, max_categories: int = MAX_CATEGORIES
) -> dict:
    """Reference bins and shares of each variable, from a sample of the training data.

    Parameters
    ----------
    sample : mapping of str to array-like
        One array per variable (a column of a sample of the training feature matrix, or
        a model output on the training population); a ``pandas.DataFrame`` works too.
        NaN/None are missing values.
    n_bins : int, default 10
        Number of quantile bins (10: deciles) of a numeric variable; a numeric variable
        with at most ``n_bins`` distinct values gets one bin per value instead.
    max_categories : int, default 20
        Most frequent values kept as bins of a non-numeric variable; the others share
        the ``"other"`` bin.

    Returns
    -------
    dict
        ``{"version": 1, "n_bins": n_bins, "features": {name: spec}}``. A numeric spec is
        ``{"kind": "numeric", "method": "quantile" | "unique", "edges": [-inf, ...,
        inf], "labels": [...], "counts": [...], "shares": [...], "n": int,
        "counts_source": "sample"}``; a non-numeric spec has ``"kind": "categorical"``
        and ``"categories"`` instead of ``"method"``/``"edges"``. ``labels``, ``counts``
        and ``shares`` have one entry per bin, the last being ``"missing"``.

    Examples
    --------
    >>> ref = reference_bins({"orders": np.array([1, 1, 2, np.nan])})
    >>> ref["features"]["orders"]["labels"]
    ['< 1', '= 1', '= 2', '> 2', 'missing']
    >>> ref["features"]["orders"]["counts"]
    [0, 2, 1, 0, 1]
    """
    if not isinstance(n_bins, numbers.Integral) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    if not isinstance(max_categories, numbers.Integral) or max_categories < 1:
        raise ValueError(f"max_categories must be an integer >= 1, got {max_categories!r}")
    features: dict[str, dict] = {}
    for name in sample:
        values = sample[name]
        if _is_numeric(values):
            edges, method, labels = _numeric_edges(_as_float(values), int(n_bins))
            spec: dict[str, Any] = {
                "kind": "numeric",
                "method": method,
                "edges": edges,
                "labels": [*labels, MISSING],
            }
        else:
            cats = _categories(values, int(max_categories))
            spec = {"kind": "categorical", "categories": cats, "labels": [*cats, OTHER, MISSING]}
        spec = _spec_with_counts(spec, bin_counts(values, spec))
        spec["counts_source"] = "sample"
        features[str(name)] = spec
    return {"version": FORMAT_VERSION, "n_bins": int(n_bins), "features": features}


def with_counts(reference: dict, counts: Mapping[str, Sequence[int]]) -> dict:
    """A copy of ``reference`` whose reference shares come from full-population counts.

    Parameters
    ----------
    reference : dict
        From :func:`reference_bins`.
    counts : mapping of str to list of int
        Counts per bin with the reference's edges, e.g. :func:`bucket_counts` of every
        bucket of the training population summed with :func:`merge_counts`. Variables
        not in ``counts`` keep their sample counts.

    Returns
    -------
    dict
        The new reference; replaced variables have ``"counts_source": "full"``.
    """
    feats = reference["features"]
    unknown = sorted(set(counts) - set(feats))
    if unknown:
        raise ValueError(f"counts for variables not in the reference: {unknown}")
    out = {**reference, "features": {}}
    for name, spec in feats.items():
        new = {k: (list(v) if isinstance(v, list) else v) for k, v in spec.items()}
        if name in counts:
            c = _check_counts(counts[name], len(spec["labels"]), name)
            new = _spec_with_counts(new, c)
            new["counts_source"] = "full"
        out["features"][name] = new
    return out


# --------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------


def bin_counts(values: Any, edges: Sequence[float] | Mapping[str, Any]) -> list[int]:
    """Counts of ``values`` per bin, the last bin being the missing values.

    Counts of disjoint parts of the data add up to the counts of the whole, so the
    pipeline counts each bucket with the fixed reference edges and sums on the client.

    Parameters
    ----------
    values : array-like
        Values of one variable (NaN/None missing).
    edges : sequence of float, or a variable's spec
        Numeric bin edges ``[-inf, e1, ..., ek, inf]`` (bins ``(e[i-1], e[i]]``; only
        the inner edges are read, so the ends may also be ``None``), or a variable's
        entry of ``reference_bins(...)["features"]``, which also covers non-numeric
        variables.

    Returns
    -------
    list of int
        ``len(edges)`` counts for numeric edges (``len(edges) - 1`` bins plus missing);
        ``len(spec["labels"])`` counts for a spec.

    Examples
    --------
    >>> bin_counts([0.5, 1.0, 1.5, 3.0, None], [-np.inf, 1.0, 2.0, np.inf])
    [2, 1, 1, 1]
    """
    if isinstance(edges, Mapping):
        if edges.get("kind") == "categorical":
            return _categorical_counts(values, edges["categories"])
        edges = edges["edges"]
    if len(edges) < 2:
        raise ValueError(f"edges need at least the two ends, got {list(edges)}")
    inner = np.asarray([float(e) for e in edges[1:-1]], dtype=np.float64)
    if inner.size and not (np.all(np.isfinite(inner)) and np.all(np.diff(inner) > 0)):
        raise ValueError("inner edges must be finite and strictly increasing")
    x = _as_float(values)
    miss = np.isnan(x)
    idx = np.searchsorted(inner, x[~miss], side="left")
    counts = np.bincount(idx, minlength=inner.size + 1)
    return [int(c) for c in counts] + [int(miss.sum())]


def _categorical_counts(values: Any, categories: Sequence[str]) -> list[int]:
    labels, missing = _as_labels(values)
    idx = pd.Index(list(categories), dtype=object).get_indexer(labels[~missing])
    idx = np.where(idx < 0, len(categories), idx)
    counts = np.bincount(idx, minlength=len(categories) + 1)
    return [int(c) for c in counts] + [int(missing.sum())]


def bucket_counts(data: Mapping[str, Any], reference: dict) -> dict[str, list[int]]:
    """Counts per bin of every variable of ``reference``, in one bucket of data.

    Parameters
    ----------
    data : mapping of str to array-like, or pandas.DataFrame
        The bucket's columns; every variable of the reference must be present.
    reference : dict
        From :func:`reference_bins`.

    Returns
    -------
    dict of str to list of int
        ``{name: bin_counts(data[name], spec)}``; sum the buckets with
        :func:`merge_counts`.
    """
    feats = reference["features"]
    absent = [name for name in feats if name not in data]
    if absent:
        raise KeyError(f"columns of the reference missing from the data: {absent}")
    return {name: bin_counts(data[name], spec) for name, spec in feats.items()}


def merge_counts(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> dict:
    """Sum of two count dicts (the client-side reduction of per-bucket counts).

    Parameters
    ----------
    a, b : mapping
        Values are either lists of counts per bin (:func:`bucket_counts`), added
        element-wise, or single counts (segment id -> customers), added.

    Returns
    -------
    dict
        Keys of both; a key present in one only keeps its value.
    """
    out: dict = {
        k: (list(v) if isinstance(v, (list, tuple, np.ndarray)) else v) for k, v in a.items()
    }
    for k, v in b.items():
        if k not in out:
            out[k] = list(v) if isinstance(v, (list, tuple, np.ndarray)) else v
            continue
        mine = out[k]
        if isinstance(mine, list) != isinstance(v, (list, tuple, np.ndarray)):
            raise ValueError(f"cannot add counts of {k!r}: a list and a single count")
        if isinstance(mine, list):
            if len(mine) != len(v):
                raise ValueError(f"cannot add counts of {k!r}: {len(mine)} and {len(v)} bins")
            out[k] = [int(x) + int(y) for x, y in zip(mine, v, strict=True)]
        else:
            out[k] = int(mine) + int(v)
    return out


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


def _check_counts(counts: Sequence[int], n_bins: int, name: str) -> list[int]:
    c = [int(x) for x in counts]
    if len(c) != n_bins:
        raise ValueError(
            f"{name!r}: {len(c)} counts for {n_bins} reference bins (were they "
            "counted with this reference's edges?)"
        )
    if any(x < 0 for x in c):
        raise ValueError(f"{name!r}: negative counts")
    return c


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


# --------------------------------------------------------------------------------------
# Retrain policy
# --------------------------------------------------------------------------------------


def _policy(policy: Mapping[str, float | None] | None) -> dict[str, float | None]:
    pol = {**DEFAULT_POLICY, **(policy or {})}
    unknown = sorted(set(pol) - set(DEFAULT_POLICY))
    if unknown:
        raise ValueError(f"unknown policy keys {unknown} (known: {sorted(DEFAULT_POLICY)})")
    out: dict[str, float | None] = {}
    for k, v in pol.items():
        if v is not None:
            v = float(v)
            if not v >= 0:
                raise ValueError(f"policy {k} must be >= 0 or None, got {v!r}")
        out[k] = v
    return out


def _report_parts(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if "max_psi" in report:
        return {"features": report}
    unknown = sorted(set(report) - {"features", "scores", "segments"})
    if unknown:
        raise ValueError(
            f"unknown report parts {unknown}: expected a drift_report, or a "
            "dict with keys 'features', 'scores', 'segments'"
        )
    return {k: v for k, v in report.items() if v is not None}


def _psi_reason(what: str, part: Mapping[str, Any], limit: float) -> str | None:
    over = sorted(
        ((name, f["psi"]) for name, f in part["features"].items() if f["psi"] >= limit),
        key=lambda t: -t[1],
    )
    if not over:
        return None
    named = ", ".join(f"{name} ({value:.3f})" for name, value in over[:_MAX_NAMED])
    more = f" and {len(over) - _MAX_NAMED} more" if len(over) > _MAX_NAMED else ""
    return (
        f"{what} drift: PSI >= {limit:g} on {len(over)} of {len(part['features'])}: {named}{more}"
    )


def should_retrain(
    report: Mapping[str, Any],
    model_age_days: float,
    policy: Mapping[str, float | None] | None = None,
) -> tuple[bool, list[str]]:
    """Whether to retrain, and why (the policy is in the module docstring).

    Parameters
    ----------
    report : dict
        ``{"features": drift_report(...), "scores": drift_report(...), "segments":
        segment_shift(...)}``, any part may be left out (or ``None``) and its check is
        then skipped; a bare :func:`drift_report` is taken as the feature part.
    model_age_days : float
        Days since the model was trained.
    policy : mapping, optional
        Overrides of :data:`DEFAULT_POLICY` (``max_feature_psi``, ``max_score_psi``,
        ``max_segment_psi``, ``max_model_age_days``); ``None`` switches a check off.

    Returns
    -------
    (bool, list of str)
        True when at least one rule triggers, with one human-readable reason per
        triggered rule.

    Examples
    --------
    >>> should_retrain({}, model_age_days=3)
    (False, [])
    >>> should_retrain({}, model_age_days=45)
    (True, ['model age 45.0 days >= 30 days'])
    """
    pol = _policy(policy)
    age = float(model_age_days)
    if not (math.isfinite(age) and age >= 0):
        raise ValueError(f"model_age_days must be finite and >= 0, got {model_age_days!r}")
    parts = _report_parts(report)
    reasons: list[str] = []
    for key, what, limit_key in (
        ("features", "feature", "max_feature_psi"),
        ("scores", "score", "max_score_psi"),
    ):
        limit = pol[limit_key]
        if limit is not None and key in parts:
            reason = _psi_reason(what, parts[key], limit)
            if reason:
                reasons.append(reason)
    seg, limit = parts.get("segments"), pol["max_segment_psi"]
    if seg is not None and limit is not None and seg["psi"] >= limit:
        top = seg["max_change_segment"]
        s = seg["segments"][top]
        reasons.append(
            f"segment mix shift: PSI {seg['psi']:.3f} >= {limit:g} (largest "
            f"change: segment {top}, {s['reference_share']:.1%} -> "
            f"{s['current_share']:.1%})"
        )
    max_age = pol["max_model_age_days"]
    if max_age is not None and age >= max_age:
        reasons.append(f"model age {age:.1f} days >= {max_age:g} days")
    return bool(reasons), reasons
