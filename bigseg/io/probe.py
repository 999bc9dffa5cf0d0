"""Can this process reach a run's storage? The probes of ``bigseg cluster-check --config``.

The client places a token under ``output:`` (:func:`place_token`); every Dask worker
then runs :func:`unreadable` and :func:`write_probe` (``client.run``: they are
module-level so the workers import them), and the client removes the token
(:func:`remove_token`). Reading the client's token tells the output the client sees
from a folder of the same name on a worker's own disk, or from another store that a
worker's environment points at (another ``AWS_ENDPOINT_URL``).

Every probe object is under ``_bigseg/probe/``, a prefix nothing else uses, and is
deleted before the probe returns: a check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any, NamedTuple

from bigseg.io.storage import as_path, is_object, storage_for

#: where probes write, under ``output:``
PROBE_PARTS = ("_bigseg", "probe")


class Token(NamedTuple):
    """The client's token under ``output:``: where it is, its content, and the local
    folders the client made for it (removed with it)."""

    location: str
    content: str
    made: tuple[str, ...] = ()


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _first_file(storage, location: str) -> str | None:
    """One file of an input: the file itself, the first match of a glob, or the first
    file under a folder or prefix; None when there is none."""
    rest = location.split("://", 1)[-1]
    if any(ch in rest for ch in "*?["):
        found = storage.glob(location)
    elif storage.is_file(location):
        return location
    else:
        found = storage.find(location)
    return found[0].path if found else None


def unreadable(
    locations: list[str], storage_options: Mapping[str, Any] | None = None
) -> list[tuple[str, str]]:
    """The inputs this process cannot read, as ``(location, why)``.

    Each location (a file, a folder or prefix, or a glob; a local path or a URL) must
    hold a file whose first byte this process can read: that needs the listing and the
    read permissions a stage needs."""
    out = []
    for location in locations:
        try:
            storage = storage_for(location, storage_options)
            first = _first_file(storage, location)
            if first is None:
                why = "holds no file" if storage.exists(location) else "not found"
                out.append((location, why))
                continue
            with storage.open_read(first) as f:
                f.read(1)
        except Exception as e:  # noqa: BLE001 - each is reported, named, by the caller
            out.append((location, _why(e)))
    return out


def _probe_dir(output_url: str, storage_options: Mapping[str, Any] | None):
    return as_path(output_url, storage_for(output_url, storage_options)).joinpath(*PROBE_PARTS)


def _probe_name(kind: str) -> str:
    # host and process: which worker left a probe behind, should one ever outlive a crash
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())
    return f"cluster-check-{kind}-{host}-{os.getpid()}-{secrets.token_hex(6)}"


def place_token(output_url: str, storage_options: Mapping[str, Any] | None = None) -> Token:
    """On the client: create a fresh token under ``output:`` (local folders made as
    needed, and remembered so that :func:`remove_token` removes them again)."""
    storage = storage_for(output_url, storage_options)
    d = _probe_dir(output_url, storage_options)
    made: list[str] = []
    if not is_object(d):
        made = [str(p) for p in (d, *d.parents) if not p.exists()]  # deepest first
        d.mkdir(parents=True, exist_ok=True)
    token = Token(str(d / _probe_name("token")), secrets.token_hex(16), tuple(made))
    try:
        if not storage.put_if_absent(token.location, token.content.encode()):
            raise FileExistsError(f"{token.location}: already there")
    except BaseException:
        remove_token(token, storage_options)
        raise
    return token


def remove_token(token: Token, storage_options: Mapping[str, Any] | None = None) -> None:
    """On the client: delete the token and the local folders :func:`place_token` made
    (each only while empty: a worker's probe, or a run, may have written there)."""
    storage_for(token.location, storage_options).delete(token.location)
    for folder in token.made:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def write_probe(
    output_url: str, storage_options: Mapping[str, Any] | None, token: Token | None
) -> tuple[str, str] | None:
    """On a worker: None when it reads the client's ``token`` under ``output:`` and can
    create and delete an object of its own beside it; else ``(step, why)``, the step
    being ``"see"`` (not the client's output), ``"write"`` or ``"delete"``."""
    try:
        storage = storage_for(output_url, storage_options)
        if token is not None:
            try:
                seen = storage.read_text(token.location) == token.content
            except (FileNotFoundError, NotADirectoryError):
                seen = False
            if not seen:
                return "see", f"{token.location} (written by the client) is not there"
        path = str(_probe_dir(output_url, storage_options) / _probe_name("worker"))
    except Exception as e:  # noqa: BLE001 - reported, naming the worker, by the caller
        return "see", _why(e)
    try:
        if not storage.put_if_absent(path, b"bigseg cluster-check probe\n"):
            return "write", f"{path}: already there"
    except Exception as e:  # noqa: BLE001
        return "write", f"{path}: {_why(e)}"
    try:
        storage.delete(path)
        if storage.exists(path):
            return "delete", f"{path}: still there after a delete"
    except Exception as e:  # noqa: BLE001
        return "delete", f"{path}: {_why(e)}"
    return None
