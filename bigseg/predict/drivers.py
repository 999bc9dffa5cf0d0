"""Per-customer drivers: the strongest contributions of each row, as readable text.

Top ``n`` selection is one compiled pass over each row, which keeps the ``n`` best seen
so far: no copy of the matrix (``|v|`` is taken on the fly) and no sort, where
``argpartition`` plus tie repair over a negated and an absolute copy was a tenth of a
score task.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa


@numba.njit(cache=True, nogil=True)
def _top(v, n, absolute):  # pragma: no cover
    """Positions of the ``n`` best of each row of ``v`` (``|v|`` with ``absolute``),
    best first, ties by position, NaN after every number: the order of a stable sort.
    Each row's kept positions and values are an insertion-sorted list of ``n`` slots; a
    value enters ahead of every slot it beats strictly, so an equal value seen later
    (higher position) stays behind."""
    rows, m = v.shape
    out = np.empty((rows, n), np.intp)
    key = np.empty(n, v.dtype)
    for i in range(rows):
        k = 0
        for j in range(m):
            x = abs(v[i, j]) if absolute else v[i, j]
            p = k
            while p > 0 and (x > key[p - 1] or (np.isnan(key[p - 1]) and not np.isnan(x))):
                p -= 1
            if p == n:
                continue
            for q in range(min(k, n - 1), p, -1):
                key[q] = key[q - 1]
                out[i, q] = out[i, q - 1]
            key[p] = x
            out[i, p] = j
            k = min(k + 1, n)
    return out


def top_order(v: np.ndarray, n: int, absolute: bool = False) -> np.ndarray:
    """Column positions of the ``n`` largest values of each row (of ``|v|`` with
    ``absolute``), largest first, ties by position: exactly
    ``np.argsort(-v, axis=1, kind="stable")[:, :n]``."""
    rows, m = v.shape
    n = min(n, m)
    if rows == 0 or n == 0:
        return np.zeros((rows, n), np.intp)
    return _top(np.ascontiguousarray(v), n, absolute)


def driver_codes(contrib: np.ndarray, features: list[str], n: int = 3) -> list[tuple]:
    """Per rank ``r < n``: ``(texts, codes)``, the distinct texts of the rows' ``r``-th
    driver (:func:`top_drivers`) and each row's position in them. Each distinct (feature,
    value in hundredths) pair is formatted once; a bucket has a few thousand of them for
    a hundred thousand rows (formatting every row was a third of scoring)."""
    rows, m = contrib.shape
    order = top_order(contrib, min(n, m), absolute=True)
    names = np.asarray(features, dtype=object)
    out = []
    for r in range(order.shape[1]):
        j = order[:, r]
        cents = np.rint(contrib[np.arange(rows), j].astype(np.float64) * 100).astype(np.int64)
        code = j.astype(np.int64) * (1 << 40) + (cents + (1 << 39))
        uniq, inv = np.unique(code, return_inverse=True)
        uj, uc = uniq >> 40, (uniq & ((1 << 40) - 1)) - (1 << 39)
        text = np.array(
            [
                f"{names[a]} {'-' if c < 0 else '+'}{abs(c) // 100}.{abs(c) % 100:02d}"
                for a, c in zip(uj.tolist(), uc.tolist(), strict=True)
            ],
            dtype=object,
        )
        out.append((text, inv.ravel()))
    return out


def top_drivers(contrib: np.ndarray, features: list[str], n: int = 3) -> list[np.ndarray]:
    """Per row, the ``n`` features with the largest absolute contribution, as readable
    strings ``"<feature> +0.42"`` (raises the prediction) or ``"<feature> -0.42"``
    (ties: the earlier feature first)."""
    if len(contrib) == 0:
        return [np.zeros(0, dtype=object) for _ in range(n)]
    return [text[codes] for text, codes in driver_codes(contrib, features, n)]


def text_column(texts: np.ndarray, codes: np.ndarray):
    """``texts[codes]`` as a pandas column of pandas' default string type, gathered by
    Arrow from the few distinct texts: no Python object per row to convert (pandas 3
    turned each object column into Arrow strings one row at a time)."""
    return pa.array(texts, pa.string()).take(pa.array(codes)).to_pandas().array


def importance_sums(contrib: np.ndarray, segs: np.ndarray, ids: list[int]) -> dict:
    """Per segment id: the sum of |contribution| per feature and the row count (reduced
    over buckets into mean |SHAP| importances per segment)."""
    out = {}
    for s in ids:
        rows = segs == s
        out[int(s)] = (np.abs(contrib[rows]).sum(axis=0, dtype=np.float64), int(rows.sum()))
    return out
