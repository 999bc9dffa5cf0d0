"""Row rules applied at ingest. A row that breaks one is not dropped silently: it goes to
``output/quarantine/<table>/`` with a ``_reason`` naming the column and the rule, and
``_file``/``_row`` saying where it came from. If more than ``validation.max_bad_share``
of a table's rows are bad, the run stops before publishing anything.

Rules (first broken rule per row is the reason):

=====================  =============================================================
``<col>: null``        a required column is empty (customer ids, timestamps, amounts)
``customer_id: blank`` a text id that is empty or only whitespace (a guest checkout,
                       a missing value): never a customer. Leading and trailing
                       spaces of any other id are part of it and are kept
``<col>: not a ...``   a value that cannot be read as the column's type (numbers:
                       with ``.`` as the decimal mark, or ``,`` where
                       ``csv.decimal: ","``; never a thousands separator)
``<col>: invalid       text that is not valid UTF-8 (CSV input)
UTF-8``
``amount: not finite`` NaN or infinity
``amount: absurd``     ``abs(amount) > validation.max_amount`` (default 1,000,000)
``<ts>: before 1970``  a timestamp before 1970-01-01
``<ts>: in the         a timestamp more than a day after the time of the run
future``
``age: out of range``  not within 0..120
``rating: out of       not within 1..5
range``
``<col>: unknown       a value outside ``validation.categories.<col>`` (or, for
category``             ``events.event_type``, outside session/page_view/app_open)
``duplicate row``      the same row twice in one table (within one ingest)
=====================  =============================================================
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: default vocabularies for categorical columns (users extend or override in config)
DEFAULT_CATEGORIES = {("events", "event_type"): ("session", "page_view", "app_open")}

_FLOAT_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|infinity|nan)\s*$"
_INT_RE = r"^\s*[-+]?\d+\s*$"
#: numbers written with a decimal comma (``csv.decimal: ","``): a ``.`` is then refused,
#: as ``1.234`` may mean 1234 (a thousands separator) and must not be read as 1.234
_FLOAT_COMMA_RE = _FLOAT_RE.replace(r"\.", ",")
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f", "")


class Reasons:
    """First reason per row, filled rule by rule (a small code per row; 0 = good)."""

    def __init__(self, n: int):
        self._code = np.zeros(n, dtype=np.int16)
        self._names: list[str | None] = [None]

    def mark(self, mask, reason: str) -> None:
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return
        m = m & (self._code == 0)
        if reason not in self._names:
            self._names.append(reason)
        self._code[m] = self._names.index(reason)

    def mark_where(self, mask: pa.Array | pa.ChunkedArray, reason: str) -> None:
        """:meth:`mark` for an Arrow boolean mask (a null marks nothing). A mask with no
        true value, the usual case of clean data, is never converted to NumPy."""
        n = (
            sum(c.true_count for c in mask.chunks)
            if isinstance(mask, pa.ChunkedArray)
            else mask.true_count
        )
        if n:
            self.mark(_np(mask), reason)

    @property
    def bad(self) -> np.ndarray:
        return self._code != 0

    @property
    def reason(self) -> np.ndarray:
        """The first reason of every row (None for a good row), as an object array."""
        return np.array(self._names, dtype=object)[self._code]


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def parse_strings(
    arr: pa.Array, target: pa.DataType, canon: str, r: Reasons, decimal: str = "."
) -> pa.Array:
    """Strings -> ``target`` for numbers and booleans; unreadable values are marked and
    become null (so the rest of the batch still converts). ``decimal``: the decimal mark
    of floats, ``"."`` or ``","``."""
    if pa.types.is_boolean(target):
        low = pc.utf8_trim_whitespace(pc.utf8_lower(arr))
        known = pc.is_in(low, value_set=pa.array(_TRUE + _FALSE))
        r.mark(~_np(known) & ~_np(pc.is_null(arr)), f"{canon}: not a boolean")
        return pc.is_in(low, value_set=pa.array(_TRUE))
    comma = decimal == "," and not pa.types.is_integer(target)
    pattern = _INT_RE if pa.types.is_integer(target) else _FLOAT_COMMA_RE if comma else _FLOAT_RE
    ok = pc.match_substring_regex(arr, pattern, ignore_case=True)
    bad = ~_np(ok) & ~_np(pc.is_null(arr))
    what = "an integer" if pa.types.is_integer(target) else "a number"
    r.mark(bad, f"{canon}: not {what}" + (" with a decimal comma" if comma else ""))
    clean = pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr)
    if comma:
        clean = pc.replace_substring(clean, ",", ".")
    return pc.utf8_trim_whitespace(clean).cast(target)


def check_values(
    table: str,
    cols: dict[str, pa.Array],
    r: Reasons,
    *,
    max_amount: float,
    categories: dict,
    now: dt.datetime | None = None,
) -> None:
    """Apply the range and category rules to coerced columns."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    future = pa.scalar(now + dt.timedelta(days=1), pa.timestamp("us"))
    epoch = pa.scalar(dt.datetime(1970, 1, 1), pa.timestamp("us"))
    for name, arr in cols.items():
        t = arr.type
        if pa.types.is_timestamp(t) and name != "signup_date":
            r.mark_where(pc.less(arr, epoch), f"{name}: before 1970")
            r.mark_where(pc.greater(arr, future), f"{name}: in the future")
        elif pa.types.is_timestamp(t):
            r.mark_where(pc.greater(arr, future), f"{name}: in the future")
    ids = cols.get("customer_id")
    if ids is not None and (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        blank = pc.or_(pc.equal(pc.utf8_length(ids), 0), pc.utf8_is_space(ids))
        r.mark_where(blank, "customer_id: blank")
    if "amount" in cols:
        a = cols["amount"]
        r.mark_where(pc.invert(pc.is_finite(a)), "amount: not finite")  # NaN or infinite
        r.mark_where(pc.greater(pc.abs(a), max_amount), "amount: absurd")
    if "age" in cols:
        a = cols["age"]
        r.mark_where(pc.or_(pc.less(a, 0), pc.greater(a, 120)), "age: out of range")
    if "rating" in cols:
        a = cols["rating"]
        r.mark_where(pc.or_(pc.less(a, 1), pc.greater(a, 5)), "rating: out of range")
    vocab = {c: v for (tb, c), v in DEFAULT_CATEGORIES.items() if tb == table}
    vocab.update(categories or {})
    for name, values in vocab.items():
        if name in cols:
            arr = cols[name]
            kind = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
            known = pc.is_in(arr, value_set=pa.array(list(values), kind))
            # is_in says false for a null: a missing value is no unknown category
            r.mark_where(pc.and_(pc.invert(known), pc.is_valid(arr)), f"{name}: unknown category")


def mark_duplicates(t: pa.Table, r: Reasons, sorted_by: list[str] | None = None) -> None:
    """Mark every repeat of an identical row (the first occurrence stays good).

    ``sorted_by``: columns ``t`` is sorted by. Identical rows then sit in one run of
    equal keys, so only the rows of runs longer than one (usually few: one customer,
    one timestamp) are compared in full; the result is the same as comparing all rows.
    """
    if t.num_rows < 2:
        return
    rows = None
    if sorted_by:
        same = np.ones(t.num_rows - 1, dtype=bool)  # row i+1 has row i's key
        for name in sorted_by:
            col = t.column(name)
            eq = pc.fill_null(pc.equal(col.slice(1), col.slice(0, t.num_rows - 1)), True)
            same &= _np(eq)
        in_run = np.zeros(t.num_rows, dtype=bool)
        in_run[1:] |= same
        in_run[:-1] |= same
        rows = np.flatnonzero(in_run)
        if len(rows) == 0:
            return
        t = t.take(pa.array(rows))
    df = t.to_pandas(types_mapper=None)
    dup = df.duplicated(keep="first").to_numpy()
    if rows is not None:
        full = np.zeros(len(r.bad), dtype=bool)
        full[rows[dup]] = True
        dup = full
    r.mark(dup, "duplicate row")


def as_utf8(arr: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """A binary column as text, and the mask of its rows that are not valid UTF-8 (None
    when all are valid: the column is then validated once, by the cast itself); the
    invalid rows become null."""
    try:
        return arr.cast(pa.string()), None
    except pa.ArrowInvalid:
        pass
    bad = np.zeros(len(arr), dtype=bool)
    for i, v in enumerate(arr.to_pylist()):
        if v is not None:
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
    return pc.if_else(pa.array(bad), pa.scalar(None, arr.type), arr).cast(pa.string()), bad
