"""The erasure log: which customers were erased from an output, so that ingest keeps them
out.

Each ``bigseg erase`` request that adds ids writes one object of its own,
``_bigseg/erasure/<UTC time>-<random>.json`` (create-only: concurrent requests cannot
overwrite each other), holding the keyed hashes of the ids (HMAC-SHA256
keyed with ``BIGSEG_PSEUDONYM_KEY``, domain-separated from the pseudonyms, 128 bits in
hex), the key's fingerprint and a timestamp. :func:`bigseg.store.ingest.ingest` skips
every input row whose id hashes into the log (:func:`ingest_filter`, :func:`is_erased`).
A key is required: an unkeyed or salted hash of an integer id is reversed by hashing
every possible id. The erase operation itself is :mod:`bigseg.erase`.

Outputs written before the commit log kept one file, ``erasure_log.jsonl`` (one line per
request): it is never moved or rewritten, and is read together with the objects.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigseg import privacy
from bigseg.errors import ConfigError
from bigseg.io.layout import ERASURE_LOG, Layout
from bigseg.io.manifest import ERASURES
from bigseg.io.storage import as_path, is_object, storage_of

#: the legacy erasure log file, directly under ``output:``
LOG_NAME = ERASURE_LOG
#: the folder of the per-request erasure objects, under ``output:``
LOG_DIR = ERASURES
#: keeps erasure hashes distinct from pseudonyms made with the same key
_DOMAIN = b"bigseg erasure v1\x00"
_HEX = 32

__all__ = [
    "LOG_NAME",
    "append_log",
    "erase_key",
    "erasure_hashes",
    "ingest_filter",
    "is_erased",
    "load_log",
]


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


def log_entries(output: str | Path) -> list[tuple[str, dict]]:
    """``(where, entry)`` of every erasure request logged for ``output``: the legacy
    ``erasure_log.jsonl`` lines, then the per-request objects in name (time) order.

    Raises
    ------
    ConfigError
        An entry cannot be parsed.
    """
    found = []
    legacy = Layout(output).erasure_log
    if not is_object(legacy) and legacy.is_file():  # object stores never had the old log
        lines = legacy.read_text().splitlines()
        found += [(f"{legacy} line {i}", t) for i, t in enumerate(lines, 1) if t.strip()]
    folder = as_path(output) / LOG_DIR
    for p in sorted(folder.iterdir(), key=str) if folder.is_dir() else []:  # one listing
        if p.name.endswith(".json"):
            found.append((str(p), p.read_text()))
    entries = []
    for where, text in found:
        try:
            entry = json.loads(text)
            entry["key_fingerprint"], entry["hashes"]  # noqa: B018 - both required
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{where}: not an erasure log entry ({e})") from None
        entries.append((where, entry))
    return entries


def load_log(output: str | Path) -> tuple[str, np.ndarray] | None:
    """``(key fingerprint, sorted unique hashes)`` of every logged erasure of ``output``
    (:func:`log_entries`), or None when there is none.

    Raises
    ------
    ConfigError
        The entries were written with different keys, or one cannot be parsed.
    """
    entries = log_entries(output)
    fps = {e["key_fingerprint"] for _, e in entries}
    if len(fps) > 1:
        raise ConfigError(
            f"{as_path(output) / LOG_DIR}: erasure requests were logged with different keys; "
            f"rebuild the log with one key from the original ids"
        )
    if not fps:
        return None
    hashes = [h for _, e in entries for h in e["hashes"]]
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
    where = as_path(output) / LOG_DIR
    key = erase_key(f"ingest into {output} (customers were erased there: {where})")
    if privacy.key_fingerprint(key) != fp:
        raise ConfigError(
            f"{where} was written with another {privacy.ENV}: with this key ingest cannot "
            f"recognise erased customers and would bring them back. Set the key used by "
            f"`bigseg erase`"
        )
    return fp, hashes


def append_log(output: str | Path, key: bytes, hashes: np.ndarray) -> int:
    """Log the hashes not yet logged, as one new create-only object (one per request).
    Returns how many were added."""
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
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    where = as_path(output) / LOG_DIR / f"{now}-{uuid.uuid4().hex[:12]}.json"
    where.parent.mkdir(parents=True, exist_ok=True)
    if not storage_of(where).put_if_absent(where, (json.dumps(entry) + "\n").encode()):
        raise AssertionError(f"{where}: a fresh random name exists")  # a bug, not input
    return len(new)
