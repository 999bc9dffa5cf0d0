"""``bigseg erase CONFIG --ids FILE``: the right to erasure.

Removes the listed customers from everything bigseg keeps under ``output:``:

* ``store/`` (every table; only the buckets the ids hash to are read), with the row
  counts of ``store/_manifest.json`` updated and the erasure recorded there
  (``last_erasure``: when, how many ids, rows removed per table; no ids);
* ``features/``, ``segments/``, every ``scores/as_of=*/`` and ``audiences/``;
* ``quarantine/<table>/``: rejected rows keep their values as text, and a row is removed
  when its ``customer_id`` value (trimmed) is one of the ids; a rejected row whose id is
  missing or unreadable names no customer and stays;
* leftovers that may hold copies of the rows: ``.staging/`` (partial outputs of failed
  runs), ``*.~old`` copies of an interrupted publish (put back or deleted first, see
  :func:`bigseg.store.publish.recover`) and temporary ``.*.tmp`` files;
* the per-bucket feature cache ``cache/features/`` (deleted whole; the next run
  recomputes it, see :mod:`bigseg.features.cache`).

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

**Erasure log.** ``output/erasure_log.jsonl`` gets one line per erase request that
adds ids: the keyed hashes of the ids (HMAC-SHA256 keyed with ``BIGSEG_PSEUDONYM_KEY``,
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

* Per directory, atomic: each directory that holds a listed customer is rebuilt in
  ``output/.staging/`` (unchanged files as hard links, files with matching rows
  rewritten without them) and swapped in by a rename with
  :func:`bigseg.store.publish.publish_dir`. A reader sees the old or the new
  directory, never a mix; a failure leaves that directory as it was.
* Not atomic across directories: a crash after some directories were swapped leaves
  the others with the customers' rows. The log is written first, so every later ingest
  already excludes them, and running the same command again completes the erasure.
* Idempotent: directories without matching rows are not touched and ids already in the
  log are not added again, so a second run with the same ids changes nothing.
* Do not run it while another bigseg command writes the same output (it deletes
  ``.staging/`` leftovers, and a concurrent run could publish outputs computed before
  the erasure).
* Deleted files are unlinked, not overwritten: their blocks stay on disk until reused,
  and copies outside ``output:`` (backups, snapshots) are outside bigseg's reach.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bigseg import privacy
from bigseg.errors import ConfigError, DataError
from bigseg.store.buckets import bucket_of
from bigseg.store.publish import (
    new_staging,
    publish_dir,
    recover,
    remove_tree,
    staging_root,
    write_json_atomic,
)
from bigseg.store.store import MANIFEST, bucket_dirname, open_store

log = logging.getLogger(__name__)

#: the erasure log, directly under ``output:``
LOG_NAME = "erasure_log.jsonl"
#: keeps erasure hashes distinct from pseudonyms made with the same key
_DOMAIN = b"bigseg erasure v1\x00"
_HEX = 32
_INT = re.compile(r"[+-]?[0-9]+")
_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_OLD = ".~old"
QUARANTINE = "quarantine"


def erase_key(why: str) -> bytes:
    """The key of the erasure log, from ``BIGSEG_PSEUDONYM_KEY``.

    Parameters
    ----------
    why : str
        What needs it, for the error message.

    Raises
    ------
    ConfigError
        The variable is unset or shorter than 16 characters.
    """
    k = os.environ.get(privacy.ENV, "")
    if len(k) < 16:
        raise ConfigError(
            f"{why} needs the environment variable {privacy.ENV} (at least 16 characters; "
            f"it is {'not set' if not k else 'too short'}): the erasure log holds ids "
            f"hashed with this key. Set it on the client and every worker, keep it secret "
            f"and stable"
        )
    return k.encode()


def read_ids(path: str | Path) -> list[str]:
    """Customer ids from a text file, one per line (surrounding whitespace and blank
    lines ignored, duplicates dropped, order kept).

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
    ids = list(dict.fromkeys(s.strip() for s in text.splitlines() if s.strip()))
    if not ids:
        raise DataError(f"{p}: the ids file lists no customer id (one id per line expected)")
    return ids


def _as_text(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Ids as Python strings (object array, None for null): integers in decimal."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return arr.to_numpy(zero_copy_only=False)


def erasure_hashes(ids: pa.Array | pa.ChunkedArray | Iterable[str], key: bytes) -> np.ndarray:
    """Keyed hashes of customer ids for the erasure log (``S32`` bytes, hex).

    The hash is HMAC-SHA256 over a domain prefix and the id's text (integers in
    decimal), truncated to 128 bits; it differs from the id's pseudonym. Nulls hash to
    ``b""``, which is never in a log.

    Examples
    --------
    >>> h = erasure_hashes(pa.array([42, 42, 7]), b"0123456789abcdef")
    >>> bool(h[0] == h[1]), bool(h[0] == h[2]), len(h[0])
    (True, False, 32)
    >>> bool(erasure_hashes(["42"], b"0123456789abcdef")[0] == h[0])
    True
    """
    if not isinstance(ids, pa.Array | pa.ChunkedArray):
        ids = pa.array(list(ids), pa.string())
    codes, uniq = pd.factorize(_as_text(ids), use_na_sentinel=True)
    mac = privacy._Hmac(key)
    h = np.array([mac(_DOMAIN + str(u).encode()) for u in uniq] + [""], dtype=f"S{_HEX}")
    return h[codes]  # code -1 (null) picks the trailing b""


def is_erased(ids: pa.Array | pa.ChunkedArray, key: bytes, hashes: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``ids`` hash into ``hashes`` (sorted, from the erasure log).

    One HMAC per distinct id, then a vectorised binary search.
    """
    n = len(ids)
    if n == 0 or len(hashes) == 0:
        return np.zeros(n, dtype=bool)
    h = erasure_hashes(ids, key)
    pos = np.minimum(np.searchsorted(hashes, h), len(hashes) - 1)
    return hashes[pos] == h


def load_log(output: str | Path) -> tuple[str, np.ndarray] | None:
    """``(key fingerprint, sorted unique hashes)`` of ``output/erasure_log.jsonl``, or
    None when there is none.

    Raises
    ------
    ConfigError
        The log's lines were written with different keys, or it cannot be parsed.
    """
    path = Path(output) / LOG_NAME
    if not path.is_file():
        return None
    fps, hashes = set(), []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            fps.add(entry["key_fingerprint"])
            hashes += entry["hashes"]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path} line {i}: not an erasure log entry ({e})") from None
    if len(fps) > 1:
        raise ConfigError(
            f"{path}: entries were written with different keys; "
            f"rebuild the log with one key from the original ids"
        )
    if not fps:
        return None
    return fps.pop(), np.unique(np.array(hashes, dtype=f"S{_HEX}"))


def ingest_filter(output: str | Path) -> tuple[str, np.ndarray] | None:
    """What ingest needs to keep erased customers out: ``(key fingerprint, hashes)``,
    or None when nobody was erased from ``output``.

    Raises
    ------
    ConfigError
        There is a log but ``BIGSEG_PSEUDONYM_KEY`` is unset or another key.
    """
    got = load_log(output)
    if got is None:
        return None
    fp, hashes = got
    where = Path(output) / LOG_NAME
    key = erase_key(f"ingest into {output} (customers were erased there: {where})")
    if privacy.key_fingerprint(key) != fp:
        raise ConfigError(
            f"{where} was written with another {privacy.ENV}: with this key ingest cannot "
            f"recognise erased customers and would bring them back. Set the key used by "
            f"`bigseg erase`"
        )
    return fp, hashes


def _append_log(output: Path, key: bytes, hashes: np.ndarray) -> int:
    """Add the hashes not yet logged, as one line; the file is replaced atomically
    (temp file + rename). Returns how many were added."""
    path = output / LOG_NAME
    got = load_log(output)
    new = np.unique(hashes)
    if got is not None:
        new = new[~np.isin(new, got[1])]
    if len(new) == 0:
        return 0
    entry = {
        "version": 1,
        "logged_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "key_fingerprint": privacy.key_fingerprint(key),
        "hash": "HMAC-SHA256(key, 'bigseg erasure v1\\0' + id)[:128 bits]",
        "count": len(new),
        "hashes": [h.decode() for h in new],
    }
    old = path.read_bytes() if path.is_file() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    with open(tmp, "wb") as f:
        f.write(old + (json.dumps(entry) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(new)


def _canonical(texts: list[str], id_type: str | None, where: str) -> list[str]:
    """The ids' text as the store saw it: integers in decimal for ``int64`` stores."""
    if id_type != "int64":
        return list(texts)
    out = []
    for t in texts:
        if not _INT.fullmatch(t):
            raise DataError(
                f"{where}: {t!r} is not an integer, but this store's customer ids are int64"
            )
        if not -(2**63) <= int(t) < 2**63:
            raise DataError(f"{where}: {t!r} is out of the int64 range of this store's ids")
        out.append(str(int(t)))
    return list(dict.fromkeys(out))


def _filter_file(src: str, dst: str, match: pa.Array, trim: bool) -> tuple[int, list[str]]:
    """Rewrite ``dst`` (a hard link to ``src``) without the rows whose ``customer_id``,
    as text, is in ``match``. Returns (rows removed, distinct ids matched); a file
    without matches is left as the link."""
    md = pq.read_metadata(src)
    if "customer_id" not in md.schema.to_arrow_schema().names:
        return 0, []
    ids = _as_text_array(pq.read_table(src, columns=["customer_id"]).column(0))
    if trim:
        ids = pc.utf8_trim_whitespace(ids)
    hit = pc.fill_null(pc.is_in(ids, value_set=match), False)
    n = pc.sum(hit).as_py() or 0
    if n == 0:
        return 0, []
    found = pc.unique(pc.filter(ids, hit)).to_pylist()
    t = pq.read_table(src).filter(pc.invert(hit))
    comp, rg = "zstd", None
    if md.num_row_groups:
        comp = md.row_group(0).column(0).compression.lower()
        comp = "none" if comp == "uncompressed" else comp
        rg = max(md.row_group(i).num_rows for i in range(md.num_row_groups)) or None
    os.unlink(dst)  # never write through the link: the published file stays as it was
    pq.write_table(t, dst, compression=comp, row_group_size=rg)
    return int(n), found


def _as_text_array(ids: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(ids.type):
        ids = ids.cast(ids.type.value_type)
    return ids if pa.types.is_string(ids.type) else ids.cast(pa.string())


def _link_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Recreate ``src`` under ``dst`` with hard links (no data copied), leaving out
    temporary files and the names in ``skip``."""
    for root, _dirs, names in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for n in names:
            if n not in skip and not _TMP.match(n):
                os.link(Path(root) / n, dst / rel / n)


def _filter_files(client, jobs: list[tuple[str, str]], match, trim: bool, desc: str) -> list:
    """:func:`_filter_file` over ``jobs``: tasks on ``client``, or here when None."""
    if client is None:
        return [_filter_file(src, dst, match, trim) for src, dst in jobs]
    from bigseg.progress import gather

    futs = [client.submit(_filter_file, src, dst, match, trim, pure=False) for src, dst in jobs]
    return gather(client, futs, desc, bar=True)


def _erase_dir(
    out: Path,
    final: Path,
    files: list[Path],
    match,
    client,
    *,
    group_depth: int,
    trim: bool = False,
    skip: tuple[str, ...] = (),
    finish=None,
) -> tuple[dict[str, int], set[str]]:
    """Rebuild ``final`` without the matching rows of ``files`` and publish it; a
    directory with no match is left untouched. Returns (rows removed per
    ``final/<first group_depth parts>``, ids found)."""
    if not files:
        return {}, set()
    stage = new_staging(out, f"erase-{final.name}")
    try:
        _link_tree(final, stage, skip)
        jobs = [(str(f), str(stage / f.relative_to(final))) for f in files]
        res = _filter_files(client, jobs, match, trim, f"erase: {final.relative_to(out)}")
        removed: Counter = Counter()
        found: set[str] = set()
        for f, (n, ids) in zip(files, res, strict=True):
            if n:
                rel = f.relative_to(final).parts[:group_depth]
                removed["/".join((str(final.relative_to(out)), *rel))] += n
                found.update(ids)
        if not removed:
            return {}, set()
        if finish is not None:
            finish(stage, removed)
        publish_dir(stage, final)
        log.info("erase: %s rewritten (%s rows removed)", final, sum(removed.values()))
        return dict(removed), found
    finally:
        remove_tree(stage)  # gone already once published


def _clean_leftovers(out: Path) -> list[str]:
    """Put back or delete interrupted publishes, delete ``.staging/`` and temp files."""
    cleaned = []
    for d in [out, out / "scores", out / "models"]:
        for p in sorted(d.glob(f"*{_OLD}")) if d.is_dir() else []:
            recover(p.with_name(p.name[: -len(_OLD)]))
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)
            cleaned.append(str(p.relative_to(out)))
    st = staging_root(out)
    for p in sorted(st.iterdir()) if st.is_dir() else []:
        if p.is_dir():
            remove_tree(p)
        else:
            p.unlink(missing_ok=True)
        cleaned.append(str(p.relative_to(out)))
    from bigseg.features import cache as feature_cache  # (store -> erase -> features cycle)

    cache = feature_cache.cache_root(out)
    if cache.is_dir():  # per-bucket features of past runs (ids included): recomputed on demand
        feature_cache.clear(out)
        cleaned.append(str(cache.relative_to(out)))
    for d in [out, out / "store"]:
        for p in sorted(d.glob(".*.tmp")) if d.is_dir() else []:
            if p.is_file() and _TMP.match(p.name):
                p.unlink(missing_ok=True)
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
    out = Path(cfg.output_dir)
    try:
        store = open_store(out)
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
            f"{out / LOG_NAME} was written with another {privacy.ENV}; set the key used before"
        )
    return store, key


def erase(cfg, ids: str | Path | Iterable[str], client=None) -> dict:
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

    Returns
    -------
    dict
        ``requested`` (distinct ids), ``newly_logged`` (hashes added to the log),
        ``customers_found`` (ids found in the store), ``rows_removed`` (per directory,
        and per table for ``store/`` and ``quarantine/``), ``cleaned`` (leftovers
        deleted), ``log`` (path of the erasure log).

    Raises
    ------
    DataError
        Missing or empty ids file, an id that cannot be of the store's type, no store.
    ConfigError
        ``BIGSEG_PSEUDONYM_KEY`` unset, or not the key the store or log was made with.
    """
    out = Path(cfg.output_dir)
    texts = (
        read_ids(ids)
        if isinstance(ids, str | Path)
        else list(dict.fromkeys(s.strip() for s in ids if s and s.strip()))
    )
    where = str(ids) if isinstance(ids, str | Path) else "ids"
    if not texts:
        raise DataError(f"{where}: no customer id to erase")
    store, key = check_ready(cfg)
    m = store.manifest
    pseudo = bool(m.get("pseudonymized"))
    raw_type = m.get("raw_id_type") if pseudo else m.get("id_type")
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
    elif m.get("id_type") == "int64":
        stored = pa.array([int(c) for c in canon], pa.int64())
    else:
        stored = pa.array(canon, pa.string())
    match = pa.array(sorted(set(canon) | set(pseudonyms)), pa.string())

    # 1. the log first: from now on no ingest brings them back, whatever happens next
    added = _append_log(out, key, erasure_hashes(canon, key))
    cleaned = _clean_leftovers(out)
    store = open_store(out)  # after a possible recovery of store/
    shared = client.scatter(match, broadcast=True) if client is not None else match

    removed: dict[str, int] = {}
    targets = [out / "audiences"]
    if (out / "scores").is_dir():
        targets += sorted(
            p for p in (out / "scores").glob("as_of=*") if p.is_dir() and not p.name.endswith(_OLD)
        )
    targets += [out / "segments", out / "features"]
    for d in targets:
        if d.is_dir():
            r, _ = _erase_dir(out, d, sorted(d.rglob("*.parquet")), shared, client, group_depth=0)
            removed.update(r)
    q = out / QUARANTINE
    if q.is_dir():
        r, _ = _erase_dir(
            out, q, sorted(q.rglob("*.parquet")), shared, client, group_depth=1, trim=True
        )
        removed.update(r)

    # 2. the store last, with its manifest's row counts
    buckets = sorted(set(bucket_of(stored, store.n_buckets).tolist()))
    files = [
        f
        for t in store.tables
        for k in buckets
        for f in sorted((Path(store.root) / t / bucket_dirname(k)).glob("*.parquet"))
    ]

    def finish(stage: Path, rem: Counter) -> None:
        man = json.loads(json.dumps(store.manifest))
        per_table = {k.split("/", 1)[1]: n for k, n in rem.items()}
        for t, n in per_table.items():
            man["tables"][t]["rows"] -= n
        man["last_erasure"] = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "ids_requested": len(canon),
            "rows_removed": per_table,
        }
        write_json_atomic(stage / MANIFEST, man)

    r, found = _erase_dir(
        out, Path(store.root), files, shared, client, group_depth=1, skip=(MANIFEST,), finish=finish
    )
    removed.update(r)
    summary = {
        "requested": len(canon),
        "newly_logged": added,
        "customers_found": len(found),
        "rows_removed": dict(sorted(removed.items())),
        "cleaned": cleaned,
        "log": str(out / LOG_NAME),
    }
    log.info("erase: %s", summary)
    return summary


__all__ = [
    "LOG_NAME",
    "check_ready",
    "erase",
    "erase_key",
    "erasure_hashes",
    "ingest_filter",
    "is_erased",
    "load_log",
    "read_ids",
]
