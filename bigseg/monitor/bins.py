"""Reference bins and counting for drift measurement (see :mod:`bigseg.monitor.drift`,
whose docstring describes the bins): :func:`reference_bins` fixes the bins of each
variable at training time, :func:`bin_counts` and :func:`bucket_counts` count values
into them, :func:`merge_counts` adds counts up and :func:`with_counts` stores exact
training shares. Pure NumPy/pandas, no Dask.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: version of the reference format written by :func:`reference_bins`
FORMAT_VERSION = 1

#: label of the bin of missing values (always the last bin)
MISSING = "missing"

#: label of the bin of unlisted values of a non-numeric variable
OTHER = "other"

#: most categories kept for a non-numeric variable
MAX_CATEGORIES = 20


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


def sample_reference(columns: Sequence[str], *parts: pd.DataFrame) -> tuple[dict, int]:
    """:func:`reference_bins` of ``columns`` of the sample ``parts`` stacked in order,
    and the sample's rows: a task on the worker holding the parts (they are not sent
    to the client, and the bins are ready before the models that need the rest)."""
    sample = pd.concat(parts, ignore_index=True)
    return reference_bins({c: sample[c].to_numpy() for c in columns}), len(sample)


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
