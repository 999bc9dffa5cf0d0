"""``bigseg erase CONFIG --ids FILE``: the right to erasure.

Removes the listed customers from everything bigseg keeps under ``output:``, as one new
commit (:mod:`bigseg.io.commits`) in which no dataset holds them:

* ``store`` (every table; only the buckets the ids hash to are read), with the row
  counts of the store's ``_manifest.json`` updated and the erasure recorded there
  (``last_erasure``: when, how many ids, rows removed per table; no ids);
* ``features``, ``segments``, every ``scores/as_of=*`` and ``audiences``;
* ``quarantine``: rejected rows keep their values as text, and a row is removed when its
  ``customer_id`` value, exactly or trimmed, is one of the ids; a rejected row whose id
  is missing or unreadable names no customer and stays;
* every older version: after committing, erase keeps only its own commit and deletes
  every file under ``runs/`` it does not list (:func:`bigseg.io.gc.collect` with
  ``keep=1``): superseded commits and runs that died before committing held the rows;
* the per-bucket feature cache ``cache/features/`` (deleted whole; the next run
  recomputes it, see :mod:`bigseg.features.cache`) and temporary ``.*.tmp`` files.

Not rewritten, because they hold no per-customer rows and no ids (``tests/test_erase.py``
scans them): ``models/`` (XGBoost trees, preprocessing moments, segment centres or
prototypes; with ``segmentation.method: hdbscan`` the segmenter keeps scaled feature
vectors of a sample of core customers, without ids), ``metrics.json`` and ``report.html``
(counts and means per segment). They were fitted on data that included the erased
customers; their statistical influence goes with the next ``bigseg run``. The input files
(``data:`` paths) are never modified, even when they lie under ``output:`` (the demo's
``raw/``): deleting customers from source systems is the data owner's job; the erasure
log keeps them from coming back (below).

Ids are given one per line, as the user knows them (the raw ids). They are converted to
the store's id type (``int64``: ``"0042"`` is customer 42; ``string``: kept exactly,
``"0042"`` stays ``"0042"``), and with ``privacy.pseudonymize: true`` mapped to their
pseudonyms (:func:`bigseg.privacy.pseudonymize`) to find the rows; the store manifest's
``raw_id_type`` (recorded at ingest) says which type the ids had before pseudonymisation
(a store ingested before it was recorded: ids are used exactly as written). Rows are
matched on both forms, raw and pseudonymised, so outputs left from a run with the other
setting are covered as well.

**Erasure log** (:mod:`bigseg.store.erasure`). Each erase request that adds ids writes
one create-only object ``_bigseg/erasure/<time>-<random>.json``: the keyed hashes of the ids (HMAC-SHA256 keyed with ``BIGSEG_PSEUDONYM_KEY``,
domain-separated from the pseudonyms, 128 bits in hex), the key's fingerprint and a
timestamp. :func:`bigseg.store.ingest.ingest` skips every input row, good or rejected,
whose id hashes into the log, so re-ingesting old raw files does not bring an erased
customer back (counted as ``last_ingest.erased_rows_skipped``). A key is **required**,
whether or not ids are pseudonymised: an unkeyed or salted hash of an integer id is
reversed by hashing every possible id (the salt would sit beside it), so such a log
would tell anyone who reads it which customers asked to be erased. With the key kept out
of ``output:``, the log reveals neither. Consequence: after an erasure, ingest needs the
same key on the client and every worker, and refuses to run without it (or with another
one) rather than let erased customers back in; rotating the key means rebuilding the
log from the original ids.

**Guarantees.**

* Atomic: the files with matching rows are rewritten without them under the erase's
  own prefix ``runs/<run_id>/``, the others carried forward by reference, and one commit
  publishes all datasets at once. A reader sees the state before or after the erasure,
  never a mix; a failure commits nothing, and running the same command again completes
  the erasure. The log is written first, so every later ingest already excludes them.
* Idempotent: directories without matching rows are not touched and ids already in the
  log are not added again, so a second run with the same ids changes nothing.
* It holds the output's lease: no other bigseg command writes the output meanwhile.
* Deleted files are unlinked, not overwritten: their blocks stay on disk until reused,
  and copies outside ``output:`` (backups, snapshots) are outside bigseg's reach. On
  object storage with bucket versioning or soft delete, a deleted object stays as an
  old version until the bucket's lifecycle rules expire it: set those rules (or delete
  the versions) for an erasure to reach them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc

from bigseg import privacy
from bigseg.errors import ConfigError, DataError
from bigseg.io import tables
from bigseg.io.commit import (
    clear_staging,
    delete_file,
    is_temporary,
    remove_tree,
    write_json_atomic,
)
from bigseg.io.gc import collect
from bigseg.io.layout import AUDIENCES, FEATURES, SEGMENTS, STORE, Layout
from bigseg.io.output import Output, member_of, scores_dataset
from bigseg.io.storage import is_object
from bigseg.store.buckets import bucket_of
from bigseg.store.erasure import LOG_DIR, append_log, erase_key, erasure_hashes, load_log
from bigseg.store.lock import begin, finish, open_output, output_lease
from bigseg.store.store import MANIFEST, open_store

log = logging.getLogger(__name__)

_INT = re.compile(r"[+-]?[0-9]+")
QUARANTINE = "quarantine"


def id_lines(lines: Iterable[str | None]) -> list[str]:
    """The ids of ``lines`` exactly as ingest keeps them: a line ending (``\\n``, ``\\r\\n``,
    ``\\r``) is not part of an id, leading and trailing spaces are; blank lines (empty or
    only whitespace: never an id, see :mod:`bigseg.store.rules`) are skipped, duplicates
    dropped, order kept."""
    out = (s.rstrip("\r\n") for s in lines if s is not None)
    return list(dict.fromkeys(s for s in out if s.strip()))


def read_ids(path: str | Path) -> list[str]:
    """Customer ids from a text file, one per line (:func:`id_lines`: CRLF or LF line
    endings, spaces kept as part of the id, blank lines ignored, duplicates dropped).

    Raises
    ------
    DataError
        The file is missing, unreadable, not UTF-8, or lists no id.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: ids file not found (one customer id per line expected)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read the ids file ({type(e).__name__}: {e})") from None
    ids = id_lines(text.splitlines())
    if not ids:
        raise DataError(f"{p}: the ids file lists no customer id (one id per line expected)")
    return ids


def _canonical(texts: list[str], id_type: str | None, where: str) -> list[str]:
    """The ids' text as the store saw it: integers in decimal for ``int64`` stores."""
    if id_type != "int64":
        return list(texts)
    out = []
    for t in texts:
        t = t.strip()  # an integer id has no spaces: " 42" can only mean 42
        if not _INT.fullmatch(t):
            raise DataError(
                f"{where}: {t!r} is not an integer, but this store's customer ids are int64"
            )
        if not -(2**63) <= int(t) < 2**63:
            raise DataError(f"{where}: {t!r} is out of the int64 range of this store's ids")
        out.append(str(int(t)))
    return list(dict.fromkeys(out))


def _filter_file(src, dst, match: pa.Array, trim: bool) -> tuple[int, list[str]]:
    """Write ``dst``: ``src`` without the rows whose ``customer_id``, as text, is in
    ``match``. Returns (rows removed, distinct ids matched); without a match nothing is
    written (``src`` stays the dataset's file)."""
    md = tables.read_parquet_metadata(src)
    if "customer_id" not in md.schema.to_arrow_schema().names:
        return 0, []
    ids = _as_text_array(tables.read_parquet(src, columns=["customer_id"]).column(0))
    hit = pc.fill_null(pc.is_in(ids, value_set=match), False)
    if trim:  # a raw id in quarantine: exactly, or trimmed (" 42" of an int64 store)
        trimmed = pc.fill_null(pc.is_in(pc.utf8_trim_whitespace(ids), value_set=match), False)
        hit = pc.or_(hit, trimmed)
    n = pc.sum(hit).as_py() or 0
    if n == 0:
        return 0, []
    found = pc.unique(pc.filter(ids, hit)).to_pylist()
    t = tables.read_parquet(src).filter(pc.invert(hit))
    comp, rg = "zstd", None
    if md.num_row_groups:
        comp = md.row_group(0).column(0).compression.lower()
        comp = "none" if comp == "uncompressed" else comp
        rg = max(md.row_group(i).num_rows for i in range(md.num_row_groups)) or None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tables.write_parquet(dst, t, compression=comp, row_group_size=rg)
    return int(n), found


def _as_text_array(ids: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(ids.type):
        ids = ids.cast(ids.type.value_type)
    return ids if pa.types.is_string(ids.type) else ids.cast(pa.string())


def _filter_files(client, jobs: list[tuple[str, str]], match, trim: bool, desc: str) -> list:
    """:func:`_filter_file` over ``jobs``: tasks on ``client``, or here when None."""
    if client is None:
        return [_filter_file(src, dst, match, trim) for src, dst in jobs]
    from bigseg.progress import gather

    futs = [client.submit(_filter_file, src, dst, match, trim, pure=False) for src, dst in jobs]
    return gather(client, futs, desc, bar=True)


def _erase_dataset(
    output: Output,
    name: str,
    match,
    client,
    *,
    group_depth: int,
    trim: bool = False,
    only: set[str] | None = None,
    finish=None,
) -> tuple[dict[str, int], set[str]]:
    """Dataset ``name`` anew without the matching rows: the files with a match (among
    ``only`` when given) rewritten under this run's prefix, the others carried forward by
    reference. A dataset with no match is left as it is. Returns (rows removed per
    ``name/<first group_depth parts>``, ids found)."""
    entry = output.need(name)
    files = {
        m: p
        for m, p in output.members(name).items()
        if m.endswith(".parquet") and (only is None or str(p) in only)
    }
    if not files:
        return {}, set()
    stage = output.layout.root / name
    remove_tree(stage)  # an earlier attempt of this same run
    jobs = [(p, stage / m) for m, p in files.items()]
    res = _filter_files(client, jobs, match, trim, f"erase: {name}")
    removed: Counter = Counter()
    found: set[str] = set()
    for m, (n, ids) in zip(files, res, strict=True):
        if n:
            removed["/".join((name, *PurePosixPath(m).parts[:group_depth]))] += n
            found.update(ids)
    if not removed:
        remove_tree(stage)
        return {}, set()
    if finish is not None:
        finish(stage, removed)
    mine = output.put(name, stage)["files"]
    new = {member_of(name, f["path"]) for f in mine}
    carried = [f for f in entry["files"] if member_of(name, f["path"]) not in new]
    meta = {k: v for k, v in entry.items() if k not in ("files", "prefix")}
    output.put_files(name, [*carried, *mine], prefix=output.need(name)["prefix"], **meta)
    log.info("erase: %s rewritten (%s rows removed)", name, sum(removed.values()))
    return dict(removed), found


def _clean_leftovers(out) -> list[str]:
    """Delete what may hold copies of the rows outside the commits: the feature cache,
    and on local disk staging and temporary files (the runs' own prefixes are collected
    after the commit, see :func:`erase`)."""
    from bigseg.features import cache as feature_cache  # (erase sits above features)

    cleaned = []
    cache = feature_cache.cache_root(out)
    if cache.is_dir():  # per-bucket features of past runs (ids included): recomputed on demand
        feature_cache.clear(out)
        cleaned.append(str(cache.relative_to(out)))
    if is_object(out):
        return cleaned
    cleaned += [str(p.relative_to(out)) for p in clear_staging(Layout(out))]
    for p in sorted(out.glob(".*.tmp")):
        if p.is_file() and is_temporary(p.name):
            delete_file(p)
            cleaned.append(str(p.relative_to(out)))
    return cleaned


def check_ready(cfg) -> tuple:
    """What erase needs before it changes anything: the store and the key.

    Returns
    -------
    (Store, bytes)
        The published store and the key.

    Raises
    ------
    DataError
        No store under ``output:``.
    ConfigError
        No key, or not the key the store was pseudonymised or the log was written with.
    """
    out = cfg.output_path
    try:
        store = open_store(open_output(cfg))
    except DataError:
        raise DataError(
            f"{out}: no bucketed store (store/_manifest.json) here, so nothing "
            f"to erase; check `output:` in the config"
        ) from None
    key = erase_key("bigseg erase")
    fp = privacy.key_fingerprint(key)
    if store.manifest.get("pseudonymized") and store.manifest.get("key_fingerprint") != fp:
        raise ConfigError(
            f"{privacy.ENV} is not the key {store.root} was pseudonymised "
            f"with: the erased ids could not be found. Set that key"
        )
    got = load_log(out)
    if got is not None and got[0] != fp:
        raise ConfigError(
            f"{out / LOG_DIR}: erasures were logged with another {privacy.ENV}; set the key "
            "used before"
        )
    return store, key


def _id_forms(manifest: dict, texts: list[str], key: bytes, where: str):
    """The ids as the store holds them: ``(canonical texts, stored ids, match)``, where
    ``match`` holds both the raw and the pseudonymised forms (as text)."""
    pseudo = bool(manifest.get("pseudonymized"))
    raw_type = manifest.get("raw_id_type") if pseudo else manifest.get("id_type")
    if raw_type not in ("int64", "string"):
        log.warning(
            "erase: the type of the raw ids is not recorded in the store (%s); "
            "ids are used as written",
            raw_type,
        )
    canon = _canonical(texts, raw_type, where)
    pseudonyms = privacy.pseudonymize(pa.array(canon, pa.string()), key).to_pylist()
    if pseudo:
        stored = pa.array(pseudonyms, pa.string())
    elif manifest.get("id_type") == "int64":
        stored = pa.array([int(c) for c in canon], pa.int64())
    else:
        stored = pa.array(canon, pa.string())
    match = pa.array(sorted(set(canon) | set(pseudonyms)), pa.string())
    return canon, stored, match


def _erase_outputs(output: Output, shared, client) -> dict[str, int]:
    """Erase from audiences, every scores date, segments, features and quarantine."""
    removed: dict[str, int] = {}
    names = [AUDIENCES, *(scores_dataset(d) for d in output.scores_dates()), SEGMENTS, FEATURES]
    for name in names:
        if output.has(name):
            r, _ = _erase_dataset(output, name, shared, client, group_depth=0)
            removed.update(r)
    if output.has(QUARANTINE):
        r, _ = _erase_dataset(output, QUARANTINE, shared, client, group_depth=1, trim=True)
        removed.update(r)
    return removed


def _erase_store(output: Output, store, stored, n_ids: int, shared, client):
    """Erase from the store's buckets the ids hash to, with its manifest's row counts.
    Returns (rows removed per table, ids found)."""
    buckets = sorted(set(bucket_of(stored, store.n_buckets).tolist()))
    only = {
        str(f) for t in store.tables for k in buckets for f in store.parts.get(t, {}).get(k, [])
    }

    def finish(stage: Path, rem: Counter) -> None:
        man = json.loads(json.dumps(store.manifest))
        per_table = {k.split("/", 1)[1]: n for k, n in rem.items()}
        for t, n in per_table.items():
            man["tables"][t]["rows"] -= n
        man["last_erasure"] = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "ids_requested": n_ids,
            "rows_removed": per_table,
        }
        write_json_atomic(stage / MANIFEST, man)

    return _erase_dataset(output, STORE, shared, client, group_depth=1, only=only, finish=finish)


def erase(cfg, ids: str | Path | Iterable[str], client=None, held=None) -> dict:
    """Erase customers from every output under ``cfg.output_dir`` (see module docstring).

    Parameters
    ----------
    cfg : RunConfig
        The run config (only ``output`` is used; the store says how ids were stored).
    ids : str, Path or iterable of str
        A file with one raw customer id per line, or the ids as text.
    client : distributed.Client, optional
        Rewrite files as tasks on this cluster (``output`` must be visible to every
        worker, as for the pipeline); None rewrites them in this process.
    held : Lease, optional
        The output's lease when the caller took it (``bigseg erase`` does, before the
        cluster starts); otherwise erase takes it.

    Returns
    -------
    dict
        ``requested`` (distinct ids), ``newly_logged`` (hashes added to the log),
        ``customers_found`` (ids found in the store), ``not_found`` (the requested ids,
        as given, that the store does not hold), ``rows_removed`` (per directory,
        and per table for ``store/`` and ``quarantine/``), ``cleaned`` (leftovers
        deleted), ``log`` (path of the erasure log).

    Raises
    ------
    DataError
        Missing or empty ids file, an id that cannot be of the store's type, no store.
    ConfigError
        ``BIGSEG_PSEUDONYM_KEY`` unset, or not the key the store or log was made with.
    """
    texts = read_ids(ids) if isinstance(ids, str | Path) else id_lines(ids)
    where = str(ids) if isinstance(ids, str | Path) else "ids"
    if not texts:
        raise DataError(f"{where}: no customer id to erase")
    if held is None:
        with output_lease(cfg, "bigseg erase") as lease:
            return erase(cfg, texts, client, lease)
    out = cfg.output_path
    store, key = check_ready(cfg)
    canon, stored, match = _id_forms(store.manifest, texts, key, where)

    # 1. the log first: from now on no ingest brings them back, whatever happens next
    added = append_log(out, key, erasure_hashes(canon, key))
    cleaned = _clean_leftovers(out)
    output = begin(cfg, "bigseg erase", {"ids": sorted(canon)})
    shared = client.scatter(match, broadcast=True) if client is not None else match
    removed = _erase_outputs(output, shared, client)
    # 2. the store last, with its manifest's row counts
    r, found = _erase_store(output, store, stored, len(canon), shared, client)
    removed.update(r)
    # 3. one commit without them, then only that commit kept: older commits (and runs
    # that died before committing) hold the rows
    finish(output, held)
    gone = collect(output.storage, output.root, keep=1)
    cleaned += gone.deleted
    stored_text = _as_text_array(pa.chunked_array([stored])).to_pylist()
    missing = [c for c, s in zip(canon, stored_text, strict=True) if s not in found]
    summary = {
        "requested": len(canon),
        "newly_logged": added,
        "customers_found": len(found),
        "not_found": missing,
        "rows_removed": dict(sorted(removed.items())),
        "cleaned": cleaned,
        "log": str(out / LOG_DIR),
    }
    log.info("erase: %s", summary)
    return summary


__all__ = ["check_ready", "erase", "read_ids"]
