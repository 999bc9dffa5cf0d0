"""``bigseg ingest``: raw inputs -> validated, customer-bucketed store.

Two shuffle-free passes scheduled on the cluster, each with bounded memory:

1. **split** (one task per input file): stream the file in batches, map columns to
   canonical names, coerce types, and append each row to the part file of its bucket
   (``hash(customer_id) % B``).
2. **merge** (one task per table and bucket): read that bucket's parts, sort by customer
   id (then time), write one Parquet file.

Everything is written under ``output/.staging/`` and published by a rename: a failed
ingest leaves the previous store untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import bigseg
from bigseg.config import RunConfig, TableConfig
from bigseg.errors import DataError
from bigseg.progress import gather
from bigseg.schema import ID, SCHEMAS
from bigseg.store.buckets import auto_buckets, bucket_of
from bigseg.store.publish import (
    check_paths,
    new_staging,
    publish_dir,
    remove_tree,
    write_json_atomic,
)
from bigseg.store.reader import InputFile, list_inputs, read_file
from bigseg.store.store import MANIFEST, Store, bucket_dirname, open_store

log = logging.getLogger(__name__)


def _split_file(f: InputFile, tc: TableConfig, n_buckets: int, parts: str, idx: int) -> dict:
    writers: dict[int, pq.ParquetWriter] = {}
    counts = np.zeros(n_buckets, dtype=np.int64)
    schema = None
    try:
        for t in read_file(f, tc):
            schema = schema or t.schema
            if t.schema != schema:
                t = t.select(schema.names).cast(schema)
            b = bucket_of(t.column("customer_id"), n_buckets)
            order = np.argsort(b, kind="stable")
            b_sorted = b[order]
            t = t.take(pa.array(order))
            bounds = np.flatnonzero(np.diff(b_sorted)) + 1
            starts = np.concatenate([[0], bounds])
            ends = np.concatenate([bounds, [len(b_sorted)]])
            for s, e in zip(starts, ends, strict=True):
                k = int(b_sorted[s])
                w = writers.get(k)
                if w is None:
                    d = Path(parts) / f.table / f"b{k:05d}"
                    # no parents=True: if the run failed and its staging dir is gone,
                    # this task stops here instead of re-creating it
                    d.mkdir(exist_ok=True)
                    w = writers[k] = pq.ParquetWriter(d / f"f{idx:06d}.parquet", schema)
                w.write_table(t.slice(s, e - s))
                counts[k] += e - s
    finally:
        for w in writers.values():
            w.close()
    return {
        "table": f.table,
        "path": f.path,
        "rows": int(counts.sum()),
        "id_type": None if schema is None else str(schema.field("customer_id").type),
        "schema": None if schema is None else schema.serialize().to_pybytes(),
    }


def _merge_bucket(table: str, k: int, parts: str, out: str, schema_bytes: bytes) -> int:
    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    d = Path(parts) / table / f"b{k:05d}"
    pieces = []
    for p in sorted(d.glob("*.parquet")) if d.exists() else []:
        t = pq.read_table(p)
        for field in schema:
            if field.name not in t.column_names:
                t = t.append_column(field, pa.nulls(t.num_rows, field.type))
        pieces.append(t.select(schema.names).cast(schema))
    t = pa.concat_tables(pieces) if pieces else schema.empty_table()
    keys = [("customer_id", "ascending")]
    if SCHEMAS[table].time_column in t.column_names:
        keys.append((SCHEMAS[table].time_column, "ascending"))
    t = t.sort_by(keys)
    dest = Path(out) / table / bucket_dirname(k)
    dest.mkdir()  # the table dir exists unless the run failed and staging was removed
    pq.write_table(t, dest / "part-00000.parquet", compression="zstd", row_group_size=1 << 20)
    shutil.rmtree(d, ignore_errors=True)
    return t.num_rows


def _unify(table: str, schemas: list[pa.Schema]) -> pa.Schema:
    """Canonical column order, union of the columns seen in any file of the table."""
    seen = {}
    for s in schemas:
        for f in s:
            seen.setdefault(f.name, f)
    return pa.schema([seen[c] for c in SCHEMAS[table].columns if c in seen])


def plan_inputs(cfg: RunConfig) -> dict[str, list[InputFile]]:
    """List every configured input file; fails early naming a missing path."""
    base = Path(cfg.base_dir)
    return {t: list_inputs(t, tc, base) for t, tc in cfg.data.tables().items()}


def ingest(cfg: RunConfig, client) -> Store:
    """Build the bucketed store from the configured inputs and publish it atomically.

    Returns the published :class:`Store`.
    """
    out = cfg.output_dir
    inputs = plan_inputs(cfg)
    check_paths(out, [cfg.path(tc.path) for tc in cfg.data.tables().values()])
    n_buckets = _choose_buckets(cfg, inputs, client)
    staging = new_staging(out, "store")
    try:
        parts = staging / "_parts"
        tables = cfg.data.tables()
        files = [(f, tables[t], i) for t, fs in inputs.items() for i, f in enumerate(fs)]
        for t in inputs:
            (parts / t).mkdir(parents=True)
        futs = [
            client.submit(_split_file, f, tc, n_buckets, str(parts), i, pure=False)
            for f, tc, i in files
        ]
        split = gather(client, futs, "ingest: split inputs into buckets", bar=True)
        schemas, id_types = defaultdict(list), defaultdict(set)
        for r in split:
            if r["schema"] is not None:
                schemas[r["table"]].append(pa.ipc.read_schema(pa.py_buffer(r["schema"])))
                id_types[r["id_type"]].add(r["path"])
        if len(id_types) > 1:
            detail = "; ".join(f"{t}: e.g. {sorted(ps)[0]}" for t, ps in id_types.items())
            raise DataError(
                f"column 'customer_id' has different types across input files ({detail}); "
                f"ids must have one type in every table"
            )
        if not schemas.get("transactions"):
            raise DataError("data.transactions: the input files hold no rows")
        unified = {t: _unify(t, s) for t, s in schemas.items()}
        for t in unified:
            (staging / t).mkdir()
        futs = [
            client.submit(_merge_bucket, t, k, str(parts), str(staging),
                          unified[t].serialize().to_pybytes(), pure=False)
            for t in unified for k in range(n_buckets)
        ]
        rows = gather(client, futs, "ingest: sort and write buckets", bar=True)
        shutil.rmtree(parts, ignore_errors=True)
        counts = defaultdict(int)
        for (t, _k), n in zip(((t, k) for t in unified for k in range(n_buckets)), rows, strict=True):
            counts[t] += n
        manifest = {
            "format": 1,
            "bigseg_version": bigseg.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "n_buckets": n_buckets,
            "id_type": next(iter(id_types)),
            "tables": {
                t: {
                    "rows": counts[t],
                    "schema": {f.name: str(f.type) for f in unified[t]},
                }
                for t in unified
            },
            "inputs": [f.fingerprint() for fs in inputs.values() for f in fs],
        }
        write_json_atomic(staging / MANIFEST, manifest)
        publish_dir(staging, out / "store")
    except BaseException:
        remove_tree(staging)
        raise
    store = open_store(out)
    log.info("store published: %s rows in %d buckets", dict(counts), n_buckets)
    return store


def _choose_buckets(cfg: RunConfig, inputs: dict[str, list[InputFile]], client) -> int:
    if cfg.store.buckets != "auto":
        return int(cfg.store.buckets)
    try:  # keep the bucket count of an existing store: later stages rely on it
        return open_store(cfg.output_dir).n_buckets
    except DataError:
        pass
    total = sum(f.size for fs in inputs.values() for f in fs)
    n_workers = len(client.scheduler_info().get("workers", {})) or 1
    return auto_buckets(total, n_workers)


__all__ = ["ingest", "plan_inputs", "ID"]
