"""Columnar helpers of the per-bucket feature families (:mod:`bigseg.features.behaviour`,
:mod:`bigseg.features.text`, :mod:`bigseg.features.fused`): times and flags read from
Arrow columns, customer ids and values as integer codes (Arrow dictionary encoding,
first-appearance order), ``np.bincount`` / ``np.maximum.at`` group reductions over those
codes, value vocabularies and the column-name suffixes made from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NEVER = np.iinfo(np.int64).max  # a null time: never at or before any cutoff


def _times(table: pa.Table, name: str) -> np.ndarray:
    """Column ``name`` as int64 microseconds since the epoch; null -> never."""
    col = table.column(name)
    if pa.types.is_timestamp(col.type) and col.type.unit != "us":
        col = pc.cast(col, pa.timestamp("us", col.type.tz), safe=False)
    col = pc.fill_null(col.cast(pa.int64()), _NEVER)
    return col.to_numpy()


def _plain(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array, dictionary-decoded."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    return col


def encode_strings(table: pa.Table | None, names: Iterable[str]) -> pa.Table | None:
    """``table`` with its string columns among ``names`` dictionary-encoded once, so that
    the features of every cutoff factorise and compare them through small integer codes
    (:func:`_factorize`, :func:`_equals`) instead of hashing strings again."""
    if table is None:
        return None
    for name in names:
        if name not in table.column_names:
            continue
        i = table.column_names.index(name)
        col, typ = table.column(i), table.schema.field(name).type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            table = table.set_column(i, name, pc.dictionary_encode(_plain(col)))
        elif pa.types.is_dictionary(typ) and col.num_chunks > 1:  # read as dictionary:
            # one dictionary for the whole column, so later codes need no unifying
            table = table.set_column(i, name, col.unify_dictionaries().combine_chunks())
    return table


def _dict_codes(col) -> tuple[np.ndarray, np.ndarray]:
    """Indices (-1 for null) and dictionary of a dictionary-encoded column (chunks
    unified to one dictionary)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.unify_dictionaries()
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    idx = pc.fill_null(col.indices, -1).to_numpy().astype(np.int64, copy=False)
    return idx, col.dictionary.to_numpy(zero_copy_only=False)


def _factorize(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for null) and the distinct values. The values are in order of
    first appearance, except for a dictionary-encoded column, whose present values keep
    the dictionary's order (callers need only codes and values to agree)."""
    if pa.types.is_dictionary(col.type):
        idx, values = _dict_codes(col)
        present = np.bincount(idx[idx >= 0], minlength=len(values)) > 0
        new = np.full(len(values) + 1, -1, dtype=np.int64)  # last slot: null stays -1
        new[:-1][present] = np.arange(int(present.sum()))
        return new[idx], values[present]
    if pa.types.is_integer(col.type) and col.null_count == 0 and len(col) > 1:
        # the store keeps each bucket file sorted by customer id: then the codes are the
        # run numbers, found in one pass instead of a hash table
        v = col.to_numpy() if isinstance(col, pa.Array) else _plain(col).to_numpy()
        step = v[1:] != v[:-1]
        if (v[1:] >= v[:-1]).all():
            codes = np.empty(len(v), dtype=np.int64)
            codes[0] = 0
            np.cumsum(step, out=codes[1:])
            return codes, v[np.concatenate([[0], np.flatnonzero(step) + 1])]
    enc = pc.dictionary_encode(_plain(col))
    codes = pc.fill_null(enc.indices, -1).to_numpy().astype(np.int64, copy=False)
    return codes, enc.dictionary.to_numpy(zero_copy_only=False)


def _select(
    table: pa.Table, cutoff_us: int, time_col: str
) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows at or before the cutoff (non-null id and time): the rows, their customer
    codes, the distinct customer ids, the times and the row mask over ``table``."""
    ts = _times(table, time_col)
    keep = ts <= cutoff_us
    ids = table.column("customer_id")
    if ids.null_count:
        keep &= pc.is_valid(ids).to_numpy(zero_copy_only=False)
    if not keep.all():
        table = table.filter(pa.array(keep))
        ts = ts[keep]
    codes, uniq = _factorize(table.column("customer_id"))
    return table, codes, uniq, ts, keep


def _bool(table: pa.Table, name: str) -> np.ndarray:
    """Boolean column as a NumPy bool array; null -> False."""
    return pc.fill_null(table.column(name), False).to_numpy(zero_copy_only=False).astype(bool)


def _equals(table: pa.Table, name: str, value: str) -> np.ndarray:
    """``column == value`` as a NumPy bool array; null -> False."""
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        idx, values = _dict_codes(col)
        hit = np.append(values == value, False)  # index -1 (null) -> False
        return hit[idx]
    return _bool_of(pc.equal(_plain(col), value))


def _bool_of(arr) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(bool)


def _count(codes: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    c = codes if mask is None else codes[mask]
    return np.bincount(c, minlength=n).astype(np.float64)


def _group_max(codes: np.ndarray, values: np.ndarray, n: int, fill) -> np.ndarray:
    out = np.full(n, fill, dtype=values.dtype)
    np.maximum.at(out, codes, values)
    return out


def _distinct_pairs(a: np.ndarray, b: np.ndarray, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs of non-negative codes, ``b < n_b``; plus the inverse map."""
    key = a.astype(np.int64) * max(n_b, 1) + b
    space = (int(a.max()) + 1) * max(n_b, 1) if len(a) else 0
    if space <= max(4 * len(key), 1 << 20):  # dense keys: count instead of sorting
        seen = np.bincount(key, minlength=space) > 0
        rank = np.cumsum(seen) - 1
        return np.flatnonzero(seen), rank[key]
    uk, inv = np.unique(key, return_inverse=True)
    return uk, inv


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _frame(uniq: np.ndarray, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": uniq, **{k: np.asarray(v, dtype=np.float32) for k, v in cols.items()}}
    )


def column_suffixes(names: Sequence[str]) -> list[str]:
    """Column-name suffixes for vocabulary values: lower case, runs of characters other
    than ``a-z0-9`` replaced by ``_``; empty -> ``"_"``; a repeat gets ``_2``, ``_3``...

    >>> column_suffixes(["Web", "Home & Garden", "home-garden", ""])
    ['web', 'home_garden', 'home_garden_2', '_']
    """
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        s = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "_"
        base, k = s, 2
        while s in seen:
            s, k = f"{base}_{k}", k + 1
        seen.add(s)
        out.append(s)
    return out


def _vocab(given: Iterable[str] | None, values: np.ndarray, what: str) -> list[str]:
    if given is None:
        return sorted(str(v) for v in values if v is not None)
    vocab = [str(v) for v in given]
    if len(set(vocab)) != len(vocab):
        raise ValueError(f"{what} vocabulary has repeated values: {vocab}")
    return vocab


def _vocab_index(vocab: list[str], values: np.ndarray) -> np.ndarray:
    """Position in ``vocab`` of each value (-1 when absent), plus a trailing -1 so that
    indexing with code -1 (null) gives -1."""
    idx = pd.Index(vocab, dtype=object).get_indexer(pd.Index(values, dtype=object))
    return np.append(idx, -1).astype(np.int64)


def vocabulary(values, top: int = 8) -> list[str]:
    """The ``top`` most frequent values of a column (a sample is enough), most frequent
    first, ties by name; nulls ignored. Pass the result as ``channels`` / ``categories``
    so that every bucket yields the same feature columns.

    >>> vocabulary(["app", "web", "store", "web", None, "app", "web"], top=2)
    ['web', 'app']
    """
    if isinstance(values, pa.ChunkedArray | pa.Array):
        vc = pc.value_counts(_plain(values))
        vals = vc.field("values").to_pylist()
        counts = vc.field("counts").to_pylist()
    else:
        s = pd.Series(values, dtype=object).dropna().astype(str)
        vc = s.value_counts(sort=False)
        vals, counts = vc.index.tolist(), vc.to_numpy().tolist()
    pairs = sorted(
        ((c, str(v)) for v, c in zip(vals, counts, strict=True) if v is not None),
        key=lambda p: (-p[0], p[1]),
    )
    return [v for _, v in pairs[: max(int(top), 0)]]
