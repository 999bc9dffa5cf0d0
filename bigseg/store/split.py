"""Split, the first pass of ingest (:mod:`bigseg.store.ingest`): one task per input file
streams it in batches, quarantines the rows that break a rule, drops erased customers and
PII columns, pseudonymises ids when asked, scores review sentiment and appends every row
to the Arrow IPC part file of its bucket."""

from __future__ import annotations

import uuid
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigseg import privacy
from bigseg.config import TableConfig
from bigseg.io import tables
from bigseg.io.layout import QUARANTINE
from bigseg.io.storage import as_path
from bigseg.schema import CATEGORICAL, SCHEMAS, SENTIMENT
from bigseg.sentiment import sentiment_scores
from bigseg.store import erasure
from bigseg.store.buckets import bucket_of
from bigseg.store.reader import InputFile, read_file

#: suffix of split's per-bucket part files (Arrow IPC), merged into the store's Parquet
PART_SUFFIX = ".arrow"
#: input row number of each row of a part file (merge names duplicates by it)
SRC_ROW = "__src_row"


class _Split:
    """What split does with one input file: its rows by bucket into Arrow IPC part files,
    its bad rows into a quarantine file, and the counts it reports."""

    def __init__(self, f: InputFile, n_buckets: int, parts: str, idx: int, key_fp, erased):
        self.f, self.n_buckets, self.parts, self.idx = f, n_buckets, parts, idx
        self.key = privacy.check_key(key_fp) if key_fp else None
        # (key fingerprint, sorted keyed hashes) of erased customers: their rows are skipped
        self.erased = erased
        self.ekey = privacy.check_key(erased[0]) if erased is not None else None
        self.skipped = 0
        self.raw_id_type = None
        self.writers: dict = {}
        self.qwriter = None
        self.counts = np.zeros(n_buckets, dtype=np.int64)
        self.reasons: Counter = Counter()
        self.examples: dict[str, str] = {}
        self.schema = None

    def _not_erased(self, ids) -> np.ndarray | None:
        """Mask of the rows to keep, or None when all stay."""
        if self.erased is None:
            return None
        gone = erasure.is_erased(ids, self.ekey, self.erased[1])
        if not gone.any():
            return None
        self.skipped += int(gone.sum())
        return ~gone

    def bad(self, bad: pa.Table) -> None:
        """Quarantine the rejected rows (ids pseudonymised when asked)."""
        if "customer_id" in bad.column_names:
            keep = self._not_erased(bad.column("customer_id"))
            if keep is not None:
                if not keep.any():
                    return
                bad = bad.filter(pa.array(keep))
        if self.key is not None and "customer_id" in bad.column_names:
            bad = bad.set_column(
                bad.column_names.index("customer_id"),
                "customer_id",
                privacy.pseudonymize(bad.column("customer_id"), self.key),
            )
        # counted per distinct reason, in the order the reasons first occur
        codes = pc.dictionary_encode(bad.column("_reason").combine_chunks())
        idx = codes.indices.to_numpy()
        _, first = np.unique(idx, return_index=True)
        for code, (reason, n) in enumerate(
            zip(codes.dictionary.to_pylist(), np.bincount(idx), strict=True)
        ):
            self.reasons[reason] += int(n)
            if reason not in self.examples:
                i = int(first[code])
                row = bad.column("_row")[i].as_py()
                self.examples[reason] = _example(self.f.path, bad, i, row, reason)
        if self.qwriter is None:
            qdir = as_path(self.parts).parent / QUARANTINE / self.f.table
            qdir.mkdir(exist_ok=True)
            name = f"{uuid.uuid4().hex[:8]}-f{self.idx:06d}.parquet"
            self.qwriter = tables.parquet_writer(qdir / name, bad.schema)
        self.qwriter.write_table(bad.cast(self.qwriter.schema))

    def good(self, t: pa.Table, rows: np.ndarray) -> pa.Table | None:
        """The rows to store: erased customers out, ids pseudonymised, sentiment scored,
        provenance columns added; None when none is left."""
        keep = self._not_erased(t.column(0)) if t.num_rows else None
        if keep is not None:
            t, rows = t.filter(pa.array(keep)), rows[keep]
        if t.num_rows:
            self.raw_id_type = self.raw_id_type or str(t.column(0).type)
        if self.key is not None:
            t = t.set_column(0, "customer_id", privacy.pseudonymize(t.column(0), self.key))
        if t.num_rows == 0:
            return None
        if self.f.table == "reviews" and "text" in t.column_names:
            # a review's sentiment never changes: scored once here, not by every run
            scores = sentiment_scores(t.column("text").to_pandas())
            t = t.append_column(SENTIMENT, pa.array(scores, pa.float64()))
        # provenance, so merge can name the row of a duplicate (the file is the part's);
        # dropped there
        t = t.append_column(SRC_ROW, pa.array(rows, pa.int64()))
        self.schema = self.schema or t.schema
        if t.schema != self.schema:
            t = t.select(self.schema.names).cast(self.schema)
        return t

    def write(self, t: pa.Table) -> None:
        """Append each row to the part file of its bucket."""
        n_buckets = self.n_buckets
        b = bucket_of(t.column("customer_id"), n_buckets)
        # 16-bit bucket numbers sort by radix (4x faster than int32 on 1M rows)
        order = np.argsort(b.astype(np.uint16) if n_buckets <= 1 << 16 else b, kind="stable")
        b_sorted = b[order]
        t = t.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(b_sorted)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(b_sorted)]])
        for s, e in zip(starts, ends, strict=True):
            k = int(b_sorted[s])
            w = self.writers.get(k)
            if w is None:
                d = as_path(self.parts) / self.f.table / f"b{k:05d}"
                # no parents=True: if the run failed and its staging dir is gone,
                # this task stops here instead of re-creating it
                d.mkdir(exist_ok=True)
                # intermediate part: Arrow IPC (no encoding or compression to pay
                # for, read back memory-mapped by merge), removed by merge; a stream,
                # since each batch of a categorical column brings its own dictionary
                part = d / f"f{self.idx:06d}{PART_SUFFIX}"
                w = self.writers[k] = tables.arrow_writer(part, self.schema)
            w.write_table(t.slice(s, e - s))
            self.counts[k] += e - s

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        if self.qwriter is not None:
            self.qwriter.close()

    def result(self) -> dict:
        schema = self.schema
        stored = None if schema is None else logical(_drop_src(schema))
        return {
            "table": self.f.table,
            "path": self.f.path,
            "rows": int(self.counts.sum()),
            "buckets": np.flatnonzero(self.counts).tolist(),
            "bad": dict(self.reasons),
            "examples": self.examples,
            "id_type": None if schema is None else str(schema.field("customer_id").type),
            "raw_id_type": self.raw_id_type,
            "erased_skipped": self.skipped,
            "schema": None if stored is None else stored.serialize().to_pybytes(),
        }


def _example(path: str, bad: pa.Table, i: int, row: int, reason: str) -> str:
    """Where a rejected row is, with its value when the rule names a column (never an
    id: it may identify a person)."""
    col = reason.split(":", 1)[0]
    where = f"{path} row {row}"
    if col == "customer_id" or col not in bad.column_names:
        return where
    value = bad.column(col)[i].as_py()
    return where if value is None else f"{where}, value {value!r}"


def _split_file(
    f: InputFile,
    tc: TableConfig,
    validation,
    n_buckets: int,
    parts: str,
    idx: int,
    key_fp: str | None,
    erased: tuple[str, np.ndarray] | None = None,
) -> dict:
    """Split one input file into per-bucket part files (a task)."""
    pii = set(SCHEMAS[f.table].pii)
    sp = _Split(f, n_buckets, parts, idx, key_fp, erased)
    try:
        for c in read_file(f, tc, validation):
            if c.bad is not None:
                sp.bad(c.bad)
            t = sp.good(c.good.drop_columns([n for n in c.good.column_names if n in pii]), c.rows)
            if t is not None:
                sp.write(t)
    finally:
        sp.close()
    return sp.result()


def _drop_src(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if f.name != SRC_ROW])


def logical(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its dictionary-encoded columns as their values' type: what the
    store's manifest and readers see (the encoding is the Parquet file's business)."""
    return pa.schema(
        [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    )


def encoded(schema: pa.Schema, table: str) -> pa.Schema:
    """``schema`` with the text columns of :data:`bigseg.schema.CATEGORICAL` dictionary-
    encoded, as split writes them from Parquet inputs (the inverse of :func:`logical`)."""
    cats = set(CATEGORICAL.get(table, ()))
    return pa.schema(
        [
            f.with_type(pa.dictionary(pa.int32(), f.type))
            if f.name in cats and pa.types.is_string(f.type)
            else f
            for f in schema
        ]
    )
