"""Per-bucket feature cache: after an incremental ingest, only the buckets it touched are
recomputed.

Features of a bucket are a pure function of

* the bucket's store files (every table): an incremental ingest adds part files to the
  buckets its new rows hash to and hard-links the others unchanged, so a bucket's
  *signature* (file names, sizes and modification times) changes exactly when its data
  does;
* what the features are computed for: the cutoffs (so ``as_of`` and the horizon), which
  cutoffs carry labels, consent enforcement, the categorical vocabularies (global: a new
  category changes every bucket's columns), the pseudonymisation key fingerprint;
* the feature code itself (a hash of the ``bigseg.features`` sources).

The hash of all of that names the entry, ``output/cache/features/bucket=NNNNN/<key>/``
(one Arrow IPC file per cutoff + ``meta.json``), staged and published whole
(:func:`bigseg.io.commit.staged_dir`), so a killed run never leaves a half entry that a
later run would read. Writing
an entry removes the bucket's older ones. A moved ``as_of`` changes every customer's
features (recency, tenure, windows), so a run at a new date recomputes everything; what
is saved is the recomputation of untouched buckets at the same date, e.g. a nightly
score at a fixed ``--as-of`` after late transactions arrived, or ``bigseg run`` after
``bigseg ingest`` of a small correction.

``bigseg erase`` deletes the whole cache (it holds customer ids).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path

from bigseg.io import tables
from bigseg.io.commit import read_json, remove_tree, staged_dir, write_text_atomic
from bigseg.io.layout import Layout
from bigseg.io.storage import storage_of
from bigseg.store import Store
from bigseg.store.store import bucket_dirname

log = logging.getLogger(__name__)

#: bump when the layout of an entry changes
LAYOUT = 1


def cache_root(output: str | Path) -> Path:
    return Layout(output).feature_cache


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """SHA-256 of the feature code (every ``bigseg/features/*.py``): a changed feature
    definition must not be served from an old entry."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def bucket_signature(store: Store, k: int) -> list:
    """(table, file name, size, mtime in ns) of every store file of bucket ``k``."""
    sig = []
    for table in sorted(store.tables):
        for f in sorted(store.parts.get(table, {}).get(k, []), key=str):
            size, mtime_ns = storage_of(f).info(f)
            sig.append((table, f.name, size, mtime_ns))
    return sig


def entry_key(store: Store, k: int, what: dict) -> str:
    doc = {
        "layout": LAYOUT,
        "code": code_hash(),
        "bucket": k,
        "signature": bucket_signature(store, k),
        "key_fingerprint": store.manifest.get("key_fingerprint"),
        **what,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _read_entry(d: Path) -> dict | None:
    try:
        meta = read_json(d / "meta.json")
        frames = {
            name: tables.read_feather(d / f"{i}.arrow") for i, name in enumerate(meta["frames"])
        }
    except (OSError, ValueError, KeyError) as e:  # unreadable entry: recompute
        log.warning("feature cache entry %s unreadable (%s); recomputing", d, e)
        return None
    return {**{k: v for k, v in meta.items() if k != "frames"}, "frames": frames}


def _write_entry(output: str | Path, bucket_dir: Path, key: str, res: dict) -> None:
    # staged inside the cache (cache/features/.staging): the output's top level holds
    # only what the commit log owns
    with staged_dir(cache_root(output), bucket_dir / key) as tmp:
        names = list(res["frames"])
        for i, name in enumerate(names):  # Arrow IPC (Feather): 3-4x cheaper to write
            # than Parquet for these all-numeric frames, as small with lz4, read back whole
            tables.write_feather(
                tmp / f"{i}.arrow", res["frames"][name].reset_index(drop=True), compression="lz4"
            )
        meta = {k: v for k, v in res.items() if k != "frames"}
        meta["frames"] = names
        write_text_atomic(tmp / "meta.json", json.dumps(meta, default=_plain))
    for old in bucket_dir.iterdir():  # older entries (and dead runs' temporaries) of the bucket
        if old.name != key:
            remove_tree(old, attempts=1)


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def cached(output: str | Path, store: Store, k: int, what: dict, compute) -> dict:
    """``compute()`` for bucket ``k``, or its cached result when neither the bucket's data
    nor ``what`` changed since it was stored. The result gets ``"cached": bool``."""
    bucket_dir = cache_root(output) / bucket_dirname(k)
    key = entry_key(store, k, what)
    if (bucket_dir / key).is_dir():
        hit = _read_entry(bucket_dir / key)
        if hit is not None:
            return {**hit, "cached": True}
    res = compute()
    try:
        _write_entry(output, bucket_dir, key, res)
    except OSError as e:  # a full or read-only disk must not fail the run
        log.warning("feature cache for bucket %d not written: %s", k, e)
    return {**res, "cached": False}


def clear(output: str | Path) -> None:
    """Remove the whole feature cache (``bigseg erase`` does this)."""
    remove_tree(cache_root(output), attempts=1)
