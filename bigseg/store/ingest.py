"""``bigseg ingest``: raw inputs -> validated, customer-bucketed store.

Two shuffle-free passes scheduled on the cluster, each with bounded memory:

1. **split** (one task per input file): stream the file in batches, map columns to
   canonical names, coerce types, apply the row rules (:mod:`bigseg.store.rules`; bad
   rows go to quarantine), drop PII columns, pseudonymise ids when asked, and append each
   row to the part file of its bucket (``hash(customer_id) % B``).
2. **merge** (one task per table and touched bucket): read that bucket's new parts,
   quarantine exact duplicate rows, sort by customer id (then time), write one Parquet
   file into the bucket.

**Erased customers stay erased**: when ``output/erasure_log.jsonl`` exists (written by
``bigseg erase``, :mod:`bigseg.erase`), split drops every row, good or bad, whose
customer id's keyed hash is in the log, before anything is written, and counts them
(``last_ingest.erased_rows_skipped`` in the manifest). The hashes are keyed with
``BIGSEG_PSEUDONYM_KEY``, so the key must then be set on the client and every worker;
ingest refuses to run without it rather than let erased customers back in.

**Incremental**: input files already in the store's manifest (same path, size and
modification time) are not read again. New files are split and merged into *new* part
files of the buckets they touch; untouched buckets are carried over as hard links (no
copy, no rewrite). If an ingested file changed or disappeared, or the column mapping or
pseudonymisation changed, the store is rebuilt from scratch.

Everything is written under ``output/.staging/`` and published by a rename: a failed or
refused ingest (e.g. more than ``validation.max_bad_share`` bad rows) leaves the previous
store and quarantine untouched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import bigseg
from bigseg import erase as erasure
from bigseg import privacy
from bigseg.config import RunConfig, TableConfig
from bigseg.errors import DataError
from bigseg.progress import gather
from bigseg.schema import DERIVED, SCHEMAS, SENTIMENT
from bigseg.store import rules
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

QUARANTINE = "quarantine"
#: suffix of split's per-bucket part files (Arrow IPC), merged into the store's Parquet
PART_SUFFIX = ".arrow"
SRC_FILE, SRC_ROW = "__src_file", "__src_row"


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
    key = privacy.check_key(key_fp) if key_fp else None
    # (key fingerprint, sorted keyed hashes) of erased customers: their rows are skipped
    ekey = privacy.check_key(erased[0]) if erased is not None else None
    skipped = 0
    raw_id_type = None
    pii = set(SCHEMAS[f.table].pii)
    writers: dict[int, pq.ParquetWriter] = {}
    qwriter = None
    counts = np.zeros(n_buckets, dtype=np.int64)
    reasons: Counter = Counter()
    examples: dict[str, str] = {}
    schema = None
    try:
        for c in read_file(f, tc, validation):
            bad = c.bad
            if bad is not None and erased is not None and "customer_id" in bad.column_names:
                gone = erasure.is_erased(bad.column("customer_id"), ekey, erased[1])
                if gone.any():
                    skipped += int(gone.sum())
                    bad = bad.filter(pa.array(~gone)) if not gone.all() else None
            if bad is not None:
                if key is not None and "customer_id" in bad.column_names:
                    bad = bad.set_column(
                        bad.column_names.index("customer_id"),
                        "customer_id",
                        privacy.pseudonymize(bad.column("customer_id"), key),
                    )
                for reason, row in zip(
                    bad.column("_reason").to_pylist(), bad.column("_row").to_pylist(), strict=True
                ):
                    reasons[reason] += 1
                    examples.setdefault(reason, f"{f.path} row {row}")
                if qwriter is None:
                    qdir = Path(parts).parent / QUARANTINE / f.table
                    qdir.mkdir(exist_ok=True)
                    qwriter = pq.ParquetWriter(
                        qdir / f"{uuid.uuid4().hex[:8]}-f{idx:06d}.parquet", bad.schema
                    )
                qwriter.write_table(bad.cast(qwriter.schema))
            t = c.good.drop_columns([n for n in c.good.column_names if n in pii])
            rows = c.rows
            if erased is not None and t.num_rows:
                gone = erasure.is_erased(t.column(0), ekey, erased[1])
                if gone.any():
                    skipped += int(gone.sum())
                    t, rows = t.filter(pa.array(~gone)), rows[~gone]
            if t.num_rows:
                raw_id_type = raw_id_type or str(t.column(0).type)
            if key is not None:
                t = t.set_column(0, "customer_id", privacy.pseudonymize(t.column(0), key))
            if t.num_rows == 0:
                continue
            if f.table == "reviews" and "text" in t.column_names:
                # a review's sentiment never changes: scored once here, not by every run
                from bigseg.features import text as text_features  # (features -> store)

                t = t.append_column(
                    SENTIMENT,
                    pa.array(
                        text_features.sentiment_scores(t.column("text").to_pandas()), pa.float64()
                    ),
                )
            # provenance, so merge can name the file and row of a duplicate; dropped there
            t = t.append_column(SRC_FILE, pa.array(np.full(t.num_rows, idx, np.int32)))
            t = t.append_column(SRC_ROW, pa.array(rows, pa.int64()))
            schema = schema or t.schema
            if t.schema != schema:
                t = t.select(schema.names).cast(schema)
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
                w = writers.get(k)
                if w is None:
                    d = Path(parts) / f.table / f"b{k:05d}"
                    # no parents=True: if the run failed and its staging dir is gone,
                    # this task stops here instead of re-creating it
                    d.mkdir(exist_ok=True)
                    # intermediate part: Arrow IPC (no encoding or compression to pay
                    # for, read back memory-mapped by merge), removed by merge
                    w = writers[k] = pa.ipc.new_file(d / f"f{idx:06d}{PART_SUFFIX}", schema)
                w.write_table(t.slice(s, e - s))
                counts[k] += e - s
    finally:
        for w in writers.values():
            w.close()
        if qwriter is not None:
            qwriter.close()
    return {
        "table": f.table,
        "path": f.path,
        "rows": int(counts.sum()),
        "buckets": np.flatnonzero(counts).tolist(),
        "bad": dict(reasons),
        "examples": examples,
        "id_type": None if schema is None else str(schema.field("customer_id").type),
        "raw_id_type": raw_id_type,
        "erased_skipped": skipped,
        "schema": None if schema is None else _drop_src(schema).serialize().to_pybytes(),
    }


def _drop_src(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in (SRC_FILE, SRC_ROW)])


def _merge_bucket(
    table: str,
    k: int,
    parts: str,
    out: str,
    schema_bytes: bytes,
    part_name: str,
    qroot: str,
    paths: dict[int, str],
) -> tuple[int, dict]:
    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    schema = schema.append(pa.field(SRC_FILE, pa.int32())).append(pa.field(SRC_ROW, pa.int64()))
    d = Path(parts) / table / f"b{k:05d}"
    pieces = []
    for p in sorted(d.glob(f"*{PART_SUFFIX}")) if d.exists() else []:
        with pa.memory_map(str(p)) as src:
            t = pa.ipc.open_file(src).read_all()
        for field in schema:
            if field.name not in t.column_names:
                t = t.append_column(field, pa.nulls(t.num_rows, field.type))
        pieces.append(t.select(schema.names).cast(schema))
    t = pa.concat_tables(pieces) if pieces else schema.empty_table()
    keys = [("customer_id", "ascending")]
    if SCHEMAS[table].time_column in t.column_names:
        keys.append((SCHEMAS[table].time_column, "ascending"))
    t = t.sort_by(keys)
    r = rules.Reasons(t.num_rows)
    rules.mark_duplicates(
        t.drop_columns([SRC_FILE, SRC_ROW]), r, sorted_by=[name for name, _ in keys]
    )
    bad = {}
    if r.bad.any():
        dup = t.filter(pa.array(r.bad))
        q = {
            c: dup.column(c).cast(pa.string())
            for c in dup.column_names
            if c not in (SRC_FILE, SRC_ROW)
        }
        q["_reason"] = pa.array(["duplicate row"] * dup.num_rows, pa.string())
        q["_file"] = pa.array([paths[i] for i in dup.column(SRC_FILE).to_pylist()], pa.string())
        q["_row"] = dup.column(SRC_ROW)
        pq.write_table(pa.table(q), Path(qroot) / table / f"dup-{part_name}-b{k:05d}.parquet")
        t = t.filter(pa.array(~r.bad))
        example = f"{q['_file'][0]} row {q['_row'][0]}"
        bad = {"duplicate row": (dup.num_rows, example)}
    t = t.drop_columns([SRC_FILE, SRC_ROW])
    dest = Path(out) / table / bucket_dirname(k)
    dest.mkdir(exist_ok=True)  # the table dir exists unless the run failed and was cleaned
    if t.num_rows or not any(dest.iterdir()):
        pq.write_table(
            t,
            dest / f"{part_name}.parquet",
            compression="zstd",
            row_group_size=1 << 20,
            **store_encodings(t.schema),
        )
    shutil.rmtree(d, ignore_errors=True)
    return t.num_rows, bad


def store_encodings(schema: pa.Schema) -> dict:
    """Parquet encodings of a store file: dictionaries for the string columns only (the
    features read the categorical ones back as dictionaries) and delta encoding for
    integers and times (ids are sorted, a customer's times too). A 1M transactions
    bucket (2.8M rows) wrote in 0.44 s instead of 0.53-0.87 s with a dictionary tried on
    every column, took 26 instead of 30 MiB and read back in 0.12 s instead of 0.15-0.35
    s (one thread, measured)."""
    strings = [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]
    delta = {
        f.name: "DELTA_BINARY_PACKED"
        for f in schema
        if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)
    }
    return {"use_dictionary": strings or False, "column_encoding": delta or None}


def _unify(table: str, schemas: list[pa.Schema]) -> pa.Schema:
    """Canonical column order, union of the columns seen in any file of the table (then
    the columns ingest derives, :data:`bigseg.schema.DERIVED`)."""
    seen = {}
    for s in schemas:
        for f in s:
            seen.setdefault(f.name, f)
    return pa.schema(
        [seen[c] for c in (*SCHEMAS[table].columns, *DERIVED.get(table, ())) if c in seen]
    )


def plan_inputs(cfg: RunConfig) -> dict[str, list[InputFile]]:
    """List every configured input file; fails early naming a missing path."""
    base = Path(cfg.base_dir)
    return {t: list_inputs(t, tc, base) for t, tc in cfg.data.tables().items()}


def _mapping_hash(cfg: RunConfig) -> str:
    doc = {t: tc.model_dump(mode="json") for t, tc in cfg.data.tables().items()}
    doc["_pseudonymize"] = cfg.privacy.pseudonymize
    doc["_validation"] = cfg.validation.model_dump(mode="json")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _previous(cfg: RunConfig, inputs: dict, key_fp: str | None) -> tuple[Store | None, str]:
    """The store to extend incrementally, or (None, why it is rebuilt)."""
    try:
        old = open_store(cfg.output_dir)
    except DataError:
        return None, "no store yet"
    m = old.manifest
    if m.get("format") != 2 or m.get("mapping_hash") != _mapping_hash(cfg):
        return None, "the column mapping, validation or pseudonymisation settings changed"
    if m.get("key_fingerprint") != key_fp:
        return None, "the pseudonymisation key changed"
    if cfg.store.buckets != "auto" and int(cfg.store.buckets) != old.n_buckets:
        return None, f"store.buckets changed ({old.n_buckets} -> {cfg.store.buckets})"
    now = {f.path: f.fingerprint() for fs in inputs.values() for f in fs}
    for fp in m.get("inputs", []):
        if now.get(fp["path"]) != fp:
            return None, f"input {fp['path']} changed or disappeared since it was ingested"
    return old, ""


def ingest(cfg: RunConfig, client) -> Store:
    """Ingest the configured inputs into the bucketed store and publish it atomically.

    Only files not yet in the store are read (see the module docstring). Returns the
    published :class:`Store`; its manifest's ``last_ingest`` says what this run did.
    """
    out = cfg.output_dir
    inputs = plan_inputs(cfg)
    check_paths(out, [cfg.path(tc.path) for tc in cfg.data.tables().values()])
    key_fp = privacy.key_fingerprint(privacy.key_from_env()) if cfg.privacy.pseudonymize else None
    old, why = _previous(cfg, inputs, key_fp)
    known = {fp["path"] for fp in old.manifest["inputs"]} if old else set()
    new = {t: [f for f in fs if f.path not in known] for t, fs in inputs.items()}
    n_files = sum(len(fs) for fs in new.values())
    if old is not None and n_files == 0:
        log.info("store is up to date: no new input files")
        return old
    erased = erasure.ingest_filter(out)  # None unless customers were erased here
    log.info(
        "ingest: %d new file(s); %s", n_files, "incremental" if old else f"full rebuild ({why})"
    )
    n_buckets = old.n_buckets if old else _choose_buckets(cfg, inputs, client)
    batch = f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    staging = new_staging(out, "store")
    try:
        store_dir, qdir = staging / "store", staging / QUARANTINE
        if old is not None:
            _link_tree(Path(old.root), store_dir)
            if (out / QUARANTINE).is_dir():
                _link_tree(out / QUARANTINE, qdir)
        parts = staging / "_parts"
        for t in new:
            (parts / t).mkdir(parents=True, exist_ok=True)
        for t in SCHEMAS:
            (qdir / t).mkdir(parents=True, exist_ok=True)
        tables = cfg.data.tables()
        start = len(old.manifest["inputs"]) if old else 0
        files = [f for fs in new.values() for f in fs]
        if erased is not None:  # one copy per worker, not one per task
            erased = client.scatter(erased, broadcast=True)
        futs = [
            client.submit(
                _split_file,
                f,
                tables[f.table],
                cfg.validation,
                n_buckets,
                str(parts),
                start + i,
                key_fp,
                erased,
                pure=False,
            )
            for i, f in enumerate(files)
        ]
        split = gather(client, futs, "ingest: split inputs into buckets", bar=True)
        paths = {start + i: f.path for i, f in enumerate(files)}
        schemas, id_types, touched = defaultdict(list), defaultdict(set), defaultdict(set)
        if old is not None:
            id_types[old.manifest["id_type"]].add(old.root)
            for t, info in old.manifest["tables"].items():
                schemas[t].append(_schema_of(info["schema"]))
        for r in split:
            if r["schema"] is not None:
                schemas[r["table"]].append(pa.ipc.read_schema(pa.py_buffer(r["schema"])))
                id_types[r["id_type"]].add(r["path"])
                touched[r["table"]].update(r["buckets"])
        if len(id_types) > 1:
            detail = "; ".join(f"{t}: e.g. {sorted(ps)[0]}" for t, ps in id_types.items())
            raise DataError(
                f"column 'customer_id' has different types across input files ({detail}); "
                f"ids must have one type in every table"
            )
        if not schemas.get("transactions"):
            raise DataError("data.transactions: the input files hold no valid rows")
        unified = {t: _unify(t, s) for t, s in schemas.items()}
        jobs = [
            (t, k)
            for t in unified
            for k in range(n_buckets)
            if old is None or k in touched[t] or not old.has(t)
        ]
        for t in unified:
            (store_dir / t).mkdir(parents=True, exist_ok=True)
        futs = [
            client.submit(
                _merge_bucket,
                t,
                k,
                str(parts),
                str(store_dir),
                unified[t].serialize().to_pybytes(),
                batch,
                str(qdir),
                paths,
                pure=False,
            )
            for t, k in jobs
        ]
        merged = gather(client, futs, "ingest: sort and write buckets", bar=True)
        shutil.rmtree(parts, ignore_errors=True)
        report = _quarantine_report(split, merged, jobs, old)
        _enforce_bad_share(report, cfg.validation.max_bad_share)
        manifest = _manifest(
            cfg, old, unified, inputs, new, id_types, key_fp, n_buckets, jobs, merged, report
        )
        manifest["raw_id_type"] = _raw_id_type(old, split)
        manifest["last_ingest"]["erased_rows_skipped"] = _erased_skipped(split)
        write_json_atomic(store_dir / MANIFEST, manifest)
        publish_dir(qdir, out / QUARANTINE)
        publish_dir(store_dir, out / "store")
    finally:
        remove_tree(staging)
    store = open_store(out)
    log.info("store published: %s", {t: v["rows"] for t, v in store.manifest["tables"].items()})
    return store


def _raw_id_type(old: Store | None, split: list[dict]) -> str | None:
    """Type of the customer ids as read, before pseudonymisation (``int64`` or
    ``string``; ``mixed`` when files disagree, None when unknown): ``bigseg erase``
    needs it to turn ids given as text into the values that were pseudonymised."""
    types = {r["raw_id_type"] for r in split if r["raw_id_type"]}
    if old is not None:
        m = old.manifest
        prev = m.get("raw_id_type") or (None if m.get("pseudonymized") else m.get("id_type"))
        if prev is None:  # a store from before this was recorded
            return None
        types.add(prev)
    return types.pop() if len(types) == 1 else ("mixed" if types else None)


def _erased_skipped(split: list[dict]) -> dict[str, int]:
    """Rows per table not ingested because their customer was erased."""
    out: Counter = Counter()
    for r in split:
        out[r["table"]] += r["erased_skipped"]
    return {t: n for t, n in out.items() if n}


def _schema_of(d: dict) -> pa.Schema:
    return pa.schema([pa.field(n, _parse_type(t)) for n, t in d.items()])


def _parse_type(s: str) -> pa.DataType:
    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "int16": pa.int16(),
        "int8": pa.int8(),
        "double": pa.float64(),
        "bool": pa.bool_(),
        "timestamp[us]": pa.timestamp("us"),
    }[s]


def _link_tree(src: Path, dst: Path) -> None:
    """Recreate ``src`` under ``dst`` with hard links (no data copied)."""
    for root, _dirs, names in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for n in names:
            if n != MANIFEST:
                os.link(Path(root) / n, dst / rel / n)


def _quarantine_report(split, merged, jobs, old) -> dict:
    """Per table: good rows this ingest, bad rows by reason, and one example per reason."""
    rep = defaultdict(lambda: {"rows": 0, "bad": Counter(), "examples": {}})
    for r in split:
        e = rep[r["table"]]
        e["rows"] += r["rows"]
        e["bad"].update(r["bad"])
        for reason, ex in r["examples"].items():
            e["examples"].setdefault(reason, ex)
    for (t, _k), (_n, bad) in zip(jobs, merged, strict=True):
        for reason, (n, example) in bad.items():
            rep[t]["bad"][reason] += n
            rep[t]["rows"] -= n  # counted as good by split
            rep[t]["examples"].setdefault(reason, example)
    return {
        t: {"rows": v["rows"], "bad": dict(v["bad"]), "examples": v["examples"]}
        for t, v in rep.items()
    }


def _enforce_bad_share(report: dict, max_share: float) -> None:
    problems = []
    for t, v in report.items():
        n_bad = sum(v["bad"].values())
        total = v["rows"] + n_bad
        if total and n_bad / total > max_share:
            top = ", ".join(
                f"{r}: {c} (e.g. {v['examples'].get(r, '?')})"
                for r, c in sorted(v["bad"].items(), key=lambda x: -x[1])[:5]
            )
            problems.append(
                f"{t}: {n_bad} of {total} rows ({n_bad / total:.1%}) break rules, "
                f"more than validation.max_bad_share = {max_share:g}: {top}"
            )
    if problems:
        raise DataError("nothing was published:\n  " + "\n  ".join(problems))


def _manifest(
    cfg, old, unified, inputs, new, id_types, key_fp, n_buckets, jobs, merged, report
) -> dict:
    counts = defaultdict(int)
    if old is not None:
        for t, v in old.manifest["tables"].items():
            counts[t] = v["rows"]
    for (t, _k), (n, _bad) in zip(jobs, merged, strict=True):
        counts[t] += n
    changed = sorted({k for _t, k in jobs})
    quarantined = defaultdict(Counter)
    if old is not None:
        for t, c in old.manifest.get("quarantine", {}).items():
            quarantined[t].update(c)
    for t, v in report.items():
        quarantined[t].update(v["bad"])
    return {
        "format": 2,
        "bigseg_version": bigseg.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_buckets": n_buckets,
        "id_type": next(iter(id_types)),
        "pseudonymized": key_fp is not None,
        "key_fingerprint": key_fp,
        "mapping_hash": _mapping_hash(cfg),
        "tables": {
            t: {"rows": counts[t], "schema": {f.name: str(f.type) for f in unified[t]}}
            for t in unified
        },
        "quarantine": {t: dict(c) for t, c in quarantined.items() if c},
        "inputs": (old.manifest["inputs"] if old else [])
        + [f.fingerprint() for fs in new.values() for f in fs],
        "last_ingest": {
            "mode": "incremental" if old else "full",
            "new_files": sum(len(fs) for fs in new.values()),
            "changed_buckets": changed,
            "rows": {t: v["rows"] for t, v in report.items()},
            "quarantined": {t: v["bad"] for t, v in report.items() if v["bad"]},
        },
    }


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


__all__ = ["ingest", "plan_inputs", "QUARANTINE"]
