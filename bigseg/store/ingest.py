"""``bigseg ingest``: raw inputs -> validated, customer-bucketed store.

Two shuffle-free passes scheduled on the cluster, each with bounded memory:

1. **split** (one task per input file): stream the file in batches, map columns to
   canonical names, coerce types, apply the row rules (:mod:`bigseg.store.rules`; bad
   rows go to quarantine), drop PII columns, pseudonymise ids when asked, and append each
   row to the part file of its bucket (``hash(customer_id) % B``).
2. **merge** (one task per table and touched bucket): read that bucket's new parts,
   quarantine exact duplicate rows, sort by customer id (then time), write one Parquet
   file into the bucket.

**Erased customers stay erased**: when the erasure log holds entries (written by
``bigseg erase``, :mod:`bigseg.erase`; see :mod:`bigseg.store.erasure`), split drops every row, good or bad, whose
customer id's keyed hash is in the log, before anything is written, and counts them
(``last_ingest.erased_rows_skipped`` in the manifest). The hashes are keyed with
``BIGSEG_PSEUDONYM_KEY``, so the key must then be set on the client and every worker;
ingest refuses to run without it rather than let erased customers back in.

**Incremental**: input files already in the store's manifest (same path, size and
modification time) are not read again. New files are split and merged into *new* part
files of the buckets they touch; the committed files of untouched buckets are carried
by reference (the new commit lists them; no copy, no rewrite). If an
ingested file changed or disappeared, the column mapping or pseudonymisation changed, or
the store outgrew its automatic bucket count (:func:`bigseg.store.buckets.outgrown`),
the store is rebuilt from scratch.

Everything is written under the run's own prefix (``runs/<run_id>/store``,
``.../quarantine``) and becomes the datasets ``store`` and ``quarantine`` of the run's
commit (:mod:`bigseg.io.output`): a failed or refused ingest (e.g. more than
``validation.max_bad_share`` bad rows) commits nothing, and the previous store and
quarantine stay current.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigseg import privacy
from bigseg.config import RunConfig
from bigseg.errors import DataError
from bigseg.io import tables
from bigseg.io.commit import check_paths, delete_file, remove_tree, write_json_atomic
from bigseg.io.layout import QUARANTINE
from bigseg.io.output import Output
from bigseg.io.storage import as_path
from bigseg.progress import gather
from bigseg.schema import DERIVED, SCHEMAS
from bigseg.store import erasure, rules
from bigseg.store import manifest as record
from bigseg.store.buckets import auto_buckets, outgrown
from bigseg.store.reader import InputFile, list_inputs
from bigseg.store.split import PART_SUFFIX, SRC_ROW, _split_file, encoded
from bigseg.store.store import MANIFEST, Store, bucket_dirname, open_store

log = logging.getLogger(__name__)


def _merge_bucket(
    table: str,
    k: int,
    parts,
    out,
    schema_bytes: bytes,
    part_name: str,
    qroot,
    paths: dict[int, str],
    sources: list[int],
    carried: bool,
) -> tuple[int, dict, dict]:
    """Sort bucket ``k`` of ``table``: the split parts of the input files ``sources``
    (no listing), duplicates to quarantine, one new part file. ``carried``: the bucket
    keeps committed files of earlier ingests (an empty new part is then not needed).
    Returns the rows kept, the duplicates quarantined and ``{part file: {"size",
    "sha256"}}`` of the file written."""
    unified = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    # the categorical text stays dictionary-encoded through the sort and into the
    # Parquet writer (a part from a CSV input is encoded here)
    schema = encoded(unified, table).append(pa.field(SRC_ROW, pa.int64()))
    d = as_path(parts) / table / f"b{k:05d}"
    sources = sorted(sources)
    files = [d / f"f{i:06d}{PART_SUFFIX}" for i in sources]
    pieces = []
    for p in files:
        t = tables.read_arrow(p, stream=True)
        if not t.schema.equals(schema):
            for field in schema:
                if field.name not in t.column_names:
                    t = t.append_column(field, pa.nulls(t.num_rows, field.type))
            t = t.select(schema.names).cast(schema)
        pieces.append(t)
    t = pa.concat_tables(pieces) if pieces else schema.empty_table()
    # a part holds the rows of one input file: its number is not stored per row
    origin = np.repeat(np.array(sources, np.int32), [p.num_rows for p in pieces])
    src_rows = t.column(SRC_ROW)
    keys = [("customer_id", "ascending")]
    if SCHEMAS[table].time_column in t.column_names:
        keys.append((SCHEMAS[table].time_column, "ascending"))
    # what Table.sort_by does, keeping the order to find a duplicate's file and row
    order = pc.sort_indices(t, sort_keys=keys)
    t = t.drop_columns([SRC_ROW]).take(order)
    r = rules.Reasons(t.num_rows)
    rules.mark_duplicates(t, r, sorted_by=[name for name, _ in keys])
    bad = {}
    if r.bad.any():
        at = order.to_numpy()[r.bad]  # row numbers in the concatenated parts
        dup_file = as_path(qroot) / table / f"dup-{part_name}-b{k:05d}.parquet"
        bad = _quarantine_duplicates(
            t.filter(pa.array(r.bad)), [paths[i] for i in origin[at]], src_rows.take(at), dup_file
        )
        t = t.filter(pa.array(~r.bad))
    dest = as_path(out) / table / bucket_dirname(k)
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    if t.num_rows or not carried:  # every bucket has a file, if an empty one
        path = dest / f"{part_name}.parquet"
        written[str(path)] = tables.write_parquet(
            path,
            t,
            digest=True,
            # lz4, not zstd: every later stage reads the store (1M customers, a 2.8M-row
            # transactions bucket: written in 0.19 s instead of 0.24, read back in 0.10
            # s instead of 0.16, 18 % larger; measured)
            compression="lz4",
            row_group_size=1 << 20,
            # min/max only of the sort keys (what a reader can skip row groups by):
            # those of every column took 17-20% of the write (300k store, measured)
            write_statistics=[name for name, _ in keys],
            # no Arrow schema in the file: its text columns read back as text, not as
            # the dictionaries they were written from (the Parquet types say the rest)
            store_schema=False,
            **store_encodings(t.schema),
        )
    for p in files:
        delete_file(p)
    return t.num_rows, bad, written


def _quarantine_duplicates(dup: pa.Table, files: list[str], rows, dest) -> dict:
    """Write the duplicate rows ``dup`` (from input ``files``, at ``rows``) to the
    quarantine file ``dest``; their count and an example, as split reports reasons."""
    q = {c: dup.column(c).cast(pa.string()) for c in dup.column_names}
    q["_reason"] = pa.array(["duplicate row"] * dup.num_rows, pa.string())
    q["_file"] = pa.array(files, pa.string())
    q["_row"] = rows
    tables.write_parquet(dest, pa.table(q))
    return {"duplicate row": (dup.num_rows, f"{q['_file'][0]} row {q['_row'][0]}")}


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
    opts = cfg.storage_options.as_dict()
    return {t: list_inputs(t, tc, base, opts) for t, tc in cfg.data.tables().items()}


def _previous(
    cfg: RunConfig, output: Output, inputs: dict, key_fp: str | None, want: int | None
) -> tuple[Store | None, str]:
    """The store to extend incrementally, or (None, why it is rebuilt). ``want``: the
    automatic bucket count for these inputs on this cluster (None: a fixed count)."""
    try:
        old = open_store(output)
    except DataError:
        return None, "no store yet"
    m = old.manifest
    if m.get("format") != 2 or m.get("mapping_hash") != record.mapping_hash(cfg):
        return None, "the column mapping, validation or pseudonymisation settings changed"
    if m.get("key_fingerprint") != key_fp:
        return None, "the pseudonymisation key changed"
    if cfg.store.buckets != "auto" and int(cfg.store.buckets) != old.n_buckets:
        return None, f"store.buckets changed ({old.n_buckets} -> {cfg.store.buckets})"
    if want is not None and outgrown(old.n_buckets, want):
        return None, f"the store outgrew its {old.n_buckets} buckets ({want} now)"
    now = {f.path: f.fingerprint() for fs in inputs.values() for f in fs}
    for fp in m.get("inputs", []):
        if now.get(fp["path"]) != fp:
            return None, f"input {fp['path']} changed or disappeared since it was ingested"
    return old, ""


def _split_all(client, cfg, files, parts, start: int, n_buckets, key_fp, erased) -> list:
    """Split every new input file into per-bucket parts (one task per file)."""
    tables_cfg = cfg.data.tables()
    if erased is not None:  # one copy per worker, not one per task
        erased = client.scatter(erased, broadcast=True)
    futs = [
        client.submit(
            _split_file,
            f,
            tables_cfg[f.table],
            cfg.validation,
            n_buckets,
            parts,
            start + i,
            key_fp,
            erased,
            pure=False,
        )
        for i, f in enumerate(files)
    ]
    return gather(client, futs, "ingest: split inputs into buckets", bar=True)


def _schemas(old: Store | None, split: list[dict]):
    """Per table: the schemas seen (old store's included), the id types seen (with
    where) and the buckets the new rows touched."""
    schemas, id_types, touched = defaultdict(list), defaultdict(set), defaultdict(set)
    if old is not None:
        id_types[old.manifest["id_type"]].add(old.root)
        for t, info in old.manifest["tables"].items():
            schemas[t].append(record.schema_of(info["schema"]))
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
        bad, examples = Counter(), {}
        for r in split:
            if r["table"] == "transactions":
                bad.update(r["bad"])
                for k, v in r["examples"].items():
                    examples.setdefault(k, v)
        why = "; ".join(
            f"{k}: {n} (e.g. {examples.get(k, '?')})"
            + record.hint("transactions", k, examples.get(k, ""))
            for k, n in bad.most_common(5)
        )
        raise DataError(
            "data.transactions: the input files hold no valid rows"
            + (f"; every row broke a rule: {why}" if why else "")
        )
    return schemas, id_types, touched


def _merge_all(client, jobs, unified, parts, store_dir, qdir, paths, sources, old) -> list:
    """Sort and write every touched bucket (one task per table and bucket)."""
    batch = f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    futs = [
        client.submit(
            _merge_bucket,
            t,
            k,
            parts,
            store_dir,
            unified[t].serialize().to_pybytes(),
            batch,
            qdir,
            paths,
            sources.get((t, k), []),
            bool(old is not None and old.parts.get(t, {}).get(k)),
            pure=False,
        )
        for t, k in jobs
    ]
    return gather(client, futs, "ingest: sort and write buckets", bar=True)


def ingest(cfg: RunConfig, client, output: Output | None = None, inputs=None) -> Store:
    """Ingest the configured inputs into the bucketed store of ``output`` (a run's
    :class:`~bigseg.io.output.Output`; without one, a run of its own that commits).

    Only files not yet in the store are read (see the module docstring). ``inputs``:
    :func:`plan_inputs` when the caller listed them already. Returns the new
    :class:`Store`; its manifest's ``last_ingest`` says what this run did.
    """
    # before the lease: an output inside an input gets nothing written, not even a lease
    if not cfg.is_remote:
        check_paths(cfg.output_dir, cfg.local_input_paths())
    if output is None:
        from bigseg.store.lock import output_session

        with output_session(cfg, "bigseg ingest") as out:
            return ingest(cfg, client, out, inputs)
    inputs = plan_inputs(cfg) if inputs is None else inputs
    key_fp = privacy.key_fingerprint(privacy.key_from_env()) if cfg.privacy.pseudonymize else None
    want = _auto_buckets(cfg, inputs, client)
    old, why = _previous(cfg, output, inputs, key_fp, want)
    known = {fp["path"] for fp in old.manifest["inputs"]} if old else set()
    new = {t: [f for f in fs if f.path not in known] for t, fs in inputs.items()}
    n_files = sum(len(fs) for fs in new.values())
    if old is not None and n_files == 0:
        log.info("store is up to date: no new input files")
        return old
    log.info(
        "ingest: %d new file(s); %s", n_files, "incremental" if old else f"full rebuild ({why})"
    )
    n_buckets = old.n_buckets if old else _choose_buckets(cfg, output, want)
    _build(cfg, client, output, old, inputs, new, key_fp, n_buckets)
    store = open_store(output)
    log.info("store written: %s", {t: v["rows"] for t, v in store.manifest["tables"].items()})
    return store


def _build(cfg, client, output: Output, old, inputs, new, key_fp, n_buckets) -> None:
    """Split and merge the new files into this run's ``store`` and ``quarantine``: new
    part files under the run's prefix, the committed files of the old store (and
    quarantine) carried forward by reference (never copied or rewritten)."""
    lay = output.layout
    erased = erasure.ingest_filter(cfg.output_path)  # None unless customers were erased here
    store_dir, qdir, parts = lay.store, lay.quarantine, lay.root / "_parts"
    for d in (store_dir, qdir, parts):  # what an earlier attempt of this run left
        remove_tree(d)
    for t in new:  # split tasks make no parents: a cancelled one cannot re-create them
        (parts / t).mkdir(parents=True, exist_ok=True)
    for t in SCHEMAS:
        (qdir / t).mkdir(parents=True, exist_ok=True)
    start = len(old.manifest["inputs"]) if old else 0
    files = [f for fs in new.values() for f in fs]
    try:
        split = _split_all(client, cfg, files, parts, start, n_buckets, key_fp, erased)
        paths = {start + i: f.path for i, f in enumerate(files)}
        sources: dict = defaultdict(list)
        for i, r in enumerate(split):
            for k in r["buckets"]:
                sources[(r["table"], k)].append(start + i)
        schemas, id_types, touched = _schemas(old, split)
        unified = {t: _unify(t, s) for t, s in schemas.items()}
        jobs = [
            (t, k)
            for t in unified
            for k in range(n_buckets)
            if old is None or k in touched[t] or not old.has(t)
        ]
        merged = _merge_all(client, jobs, unified, parts, store_dir, qdir, paths, sources, old)
    finally:
        remove_tree(parts, attempts=1)
    report = record.quarantine_report(split, merged, jobs, old)
    record.enforce_bad_share(report, cfg.validation.max_bad_share)
    for line in record.quarantined(report, cfg.validation.max_bad_share):
        log.warning("%s", line)  # rows left out are said, never dropped silently
    manifest = record.manifest(
        cfg, old, unified, inputs, new, id_types, key_fp, n_buckets, jobs, merged, report
    )
    manifest["raw_id_type"] = record.raw_id_type(old, split)
    manifest["last_ingest"]["erased_rows_skipped"] = record.erased_skipped(split)
    write_json_atomic(store_dir / MANIFEST, manifest)
    _record(output, old, "quarantine", qdir)
    _record(output, old, "store", store_dir, [m[2] for m in merged])


def _record(output: Output, old, name: str, written, known=()) -> None:
    """Dataset ``name``: the files this run wrote (``known``: those its tasks measured,
    :meth:`~bigseg.io.output.Output.put`), plus (incremental) the committed ones."""
    mine = output.put(name, written, known)["files"]
    carried = []
    if old is not None and name in output.base:
        carried = [
            f for f in output.base[name]["files"] if f["path"].rsplit("/", 1)[-1] != MANIFEST
        ]
    output.put_files(name, [*carried, *mine], prefix=output.need(name).get("prefix", ""))


def _auto_buckets(cfg: RunConfig, inputs, client) -> int | None:
    """The automatic bucket count for ``inputs`` on this cluster; None if configured."""
    if cfg.store.buckets != "auto":
        return None
    total = sum(f.size for fs in inputs.values() for f in fs)
    n_workers = len(client.scheduler_info().get("workers", {})) or 1
    return auto_buckets(total, n_workers)


def _choose_buckets(cfg: RunConfig, output: Output, want: int | None) -> int:
    """The bucket count of a rebuilt store: the configured one, else the existing
    store's unless it is outgrown (a rebuild for another reason keeps it), else ``want``."""
    if want is None:
        return int(cfg.store.buckets)
    try:
        current = open_store(output).n_buckets
    except DataError:
        return want
    return want if outgrown(current, want) else current


__all__ = ["ingest", "plan_inputs", "QUARANTINE"]
