"""Protected attributes: customers' group labels (age bands, ``"unknown"`` for missing
values) for the fairness audit (:mod:`bigseg.predict.fairness`), and keeping protected
attributes out of the models (:func:`model_features`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

#: label of the group of customers whose attribute is missing
UNKNOWN = "unknown"

#: age bands as (lower bound inclusive, upper bound exclusive, label)
AGE_BANDS: tuple[tuple[float, float, str], ...] = (
    (0, 25, "<25"),
    (25, 35, "25-34"),
    (35, 45, "35-44"),
    (45, 55, "45-54"),
    (55, 65, "55-64"),
    (65, math.inf, "65+"),
)

#: attributes banded with :func:`band_age` when their values are numeric
AGE_ATTRIBUTES = ("age",)


# --------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------


def band_age(age: Any) -> np.ndarray:
    """Age bands ``"<25"``, ``"25-34"``, ..., ``"55-64"``, ``"65+"``.

    Parameters
    ----------
    age : array-like
        Ages in years, any numeric dtype (nullable ones included) or objects. None,
        NaN, pandas NA, non-numeric and negative values are missing.

    Returns
    -------
    numpy.ndarray
        Object array of band labels (str), ``"unknown"`` where the age is missing.
    """
    a = pd.to_numeric(pd.Series(np.asarray(age, dtype=object)), errors="coerce")
    a = a.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full(a.shape, UNKNOWN, dtype=object)
    for lo, hi, label in AGE_BANDS:
        out[(a >= lo) & (a < hi)] = label
    return out


def group_labels(name: str, values: Any) -> np.ndarray:
    """Group label of each customer for the protected attribute ``name``.

    Parameters
    ----------
    name : str
        Attribute name. An attribute named ``age`` whose present values are all
        numeric is banded with :func:`band_age`; anything else is used as is.
    values : array-like
        One value per customer.

    Returns
    -------
    numpy.ndarray
        Object array of str labels; missing values (None, NaN, pandas NA, empty or
        blank strings) become ``"unknown"``.
    """
    s = pd.Series(np.asarray(values, dtype=object))
    present = s.notna().to_numpy()
    if name in AGE_ATTRIBUTES:
        numeric = pd.to_numeric(s, errors="coerce").notna().to_numpy()
        if (numeric == present).all():
            return band_age(s)
    labels = s.astype(str).str.strip().to_numpy(dtype=object)
    labels[~present | (labels == "")] = UNKNOWN
    return labels


def _order(name: str, labels: Iterable[str]) -> list[str]:
    """Age bands in age order, other labels sorted; ``unknown`` last."""
    labels = set(labels)
    bands = [b[2] for b in AGE_BANDS]
    if name in AGE_ATTRIBUTES and labels <= {*bands, UNKNOWN}:
        head = [b for b in bands if b in labels]
    else:
        head = sorted(labels - {UNKNOWN})
    return head + ([UNKNOWN] if UNKNOWN in labels else [])


# --------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------


def model_features(
    features: Iterable[str], protected: Iterable[str], allow: bool = False
) -> list[str]:
    """The features a model may use: all but the protected ones, unless allowed.

    Parameters
    ----------
    features : iterable of str
        Candidate feature names, in model order.
    protected : iterable of str
        Protected attributes (``fairness.protected``).
    allow : bool, default False
        Keep protected features anyway (an explicit opt-in).

    Returns
    -------
    list of str
        ``features`` in their order, without any feature that equals a protected
        attribute or starts with ``<attribute>_`` (e.g. ``gender_F`` for ``gender``),
        compared case-insensitively; all of them when ``allow`` is True.
    """
    features = list(features)
    if allow:
        return features
    attrs = [a.casefold() for a in protected]
    return [
        f
        for f in features
        if not any(f.casefold() == a or f.casefold().startswith(a + "_") for a in attrs)
    ]
