"""Privacy at the door: keyed pseudonyms for customer ids.

With ``privacy.pseudonymize: true`` every customer id is replaced at ingest, before
anything is stored, by ``HMAC-SHA256(key, str(id))`` (hex, first 32 characters = 128
bits). A plain hash of an id can be reversed by hashing every possible id; a keyed one
cannot without the key. The key comes only from the ``BIGSEG_PSEUDONYM_KEY``
environment variable, on the client and on every worker, and is never written or
logged: only a keyed fingerprint of a fixed string is recorded, to check that every
process uses the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np
import pandas as pd
import pyarrow as pa

from bigseg.errors import ConfigError

ENV = "BIGSEG_PSEUDONYM_KEY"
_PROBE = b"bigseg pseudonym key check v1"
_HEX = 32


def key_from_env() -> bytes:
    """The pseudonymisation key, from the environment; a clear error when absent."""
    k = os.environ.get(ENV, "")
    if len(k) < 16:
        raise ConfigError(
            f"privacy.pseudonymize is on but the environment variable {ENV} is "
            f"{'not set' if not k else 'shorter than 16 characters'} (set it on the client "
            f"and every worker; keep it secret and stable: changing it changes every id)"
        )
    return k.encode()


def key_fingerprint(key: bytes) -> str:
    """A value that identifies the key without revealing it."""
    return hmac.new(key, _PROBE, hashlib.sha256).hexdigest()[:16]


def check_key(expected_fingerprint: str) -> bytes:
    """On a worker: the key from its environment, checked against the client's."""
    key = key_from_env()
    if key_fingerprint(key) != expected_fingerprint:
        raise ConfigError(f"{ENV} on this worker differs from the client's; set the same key")
    return key


class _Hmac:
    """HMAC-SHA256 (RFC 2104) with the keyed inner/outer states computed once: ~2x faster
    than ``hmac.new`` per id; equal to it (tested)."""

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        k = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))

    def __call__(self, msg: bytes) -> str:
        i = self._inner.copy()
        i.update(msg)
        o = self._outer.copy()
        o.update(i.digest())
        return o.hexdigest()[:_HEX]


def pseudonymize(ids: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """Keyed pseudonyms of customer ids (string array; nulls stay null).

    Examples
    --------
    >>> a = pseudonymize(pa.array([42, 42, 7]), b"0123456789abcdef")
    >>> v = a.to_pylist()
    >>> v[0] == v[1], v[0] == v[2], len(v[0])
    (True, False, 32)
    """
    values = ids.to_pandas() if hasattr(ids, "to_pandas") else pd.Series(ids)
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    mac = _Hmac(key)
    mapped = np.array([mac(str(u).encode()) for u in uniq] + [None], dtype=object)
    return pa.array(mapped[codes], type=pa.string())  # code -1 picks the trailing None
