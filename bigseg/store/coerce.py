"""Type coercion of input columns (:mod:`bigseg.store.reader`): timestamps from any of
the forms inputs carry them in, customer ids kept exact."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.errors import DataError
from bigseg.store import rules


def to_timestamp(arr: pa.Array, fmt: str | None) -> pa.Array:
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is not None:
            arr = pc.cast(arr, pa.timestamp(arr.type.unit, tz="UTC"))
            arr = arr.cast(pa.timestamp(arr.type.unit))
        # nanosecond inputs (pandas' default) are truncated to microseconds: no loss that
        # matters for customer behaviour, and no error on data that carry them
        return arr.cast(pa.timestamp("us"), safe=False)
    if pa.types.is_date(arr.type):
        return arr.cast(pa.timestamp("us"))
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        if fmt:
            return pc.strptime(arr, format=fmt, unit="us", error_is_null=False)
        try:
            return arr.cast(pa.timestamp("us"))
        except pa.ArrowInvalid:
            pass
        try:
            return arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
        except pa.ArrowInvalid:
            return _mixed_offsets(arr)
    return arr.cast(pa.timestamp("us"))


def _mixed_offsets(arr: pa.Array) -> pa.Array:
    """ISO 8601 text where some values carry a UTC offset (``Z``, ``+02:00``) and some do
    not: the former converted to UTC, the latter taken as UTC (raises ArrowInvalid when
    a value is neither)."""
    arr = pc.utf8_trim_whitespace(arr)
    has_tz = pc.match_substring_regex(arr, r"(Z|[+-]\d\d:?\d\d)$")
    none = pa.scalar(None, arr.type)
    aware = pc.if_else(has_tz, arr, none).cast(pa.timestamp("us", tz="UTC"))
    naive = pc.if_else(has_tz, none, arr).cast(pa.timestamp("us"))
    return pc.coalesce(naive, aware.cast(pa.timestamp("us")))


def coerce_id(arr: pa.Array, where: str) -> pa.Array:
    t = arr.type
    if pa.types.is_integer(t):
        return arr.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return arr.cast(pa.string())
    if pa.types.is_floating(t):
        as_int = pc.cast(arr, pa.int64(), safe=False)
        if pc.all(pc.equal(pc.cast(as_int, t), arr)).as_py() is not False:
            return as_int
        raise DataError(
            f"{where}: customer ids must be integers or strings; found non-integral floats"
        )
    raise DataError(f"{where}: customer ids must be integers or strings, got type {t}")


def isnull(arr) -> np.ndarray:
    return np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)


def timestamps(arr: pa.Array, fmt: str | None, canon: str, r: rules.Reasons) -> pa.Array:
    """Like :func:`to_timestamp`, but unreadable strings are marked and become null."""
    try:
        return to_timestamp(arr, fmt)
    except pa.ArrowException:
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            raise
    out = None
    for f in [fmt] if fmt else ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]:
        got = pc.strptime(pc.utf8_trim_whitespace(arr), format=f, unit="us", error_is_null=True)
        out = got if out is None else pc.coalesce(out, got)
    unreadable = isnull(out) & ~isnull(arr)
    r.mark(unreadable, f"{canon}: not a timestamp" + (f" in format {fmt}" if fmt else ""))
    return out
