"""The commit log: publication by one create-only write, on any storage (``DESIGN.md`` §7).

::

    <root>/_bigseg/commits/00000000000000000001.json   (20 digits: names sort as numbers)
    <root>/_bigseg/commits/00000000000000000002.json
    <root>/runs/<run_id>/...                           (the files the commits list)

A run writes its files under ``runs/<run_id>/`` (:func:`run_id`), then publishes with
:func:`commit`: one :meth:`~bigseg.io.storage.Storage.put_if_absent` of commit ``parent +
1``, a manifest holding the *full* state, every logical dataset with its files, sizes and
checksums::

    {"version": 1, "n": 2, "parent": 1, "run_id": "...", "created": "2026-...Z",
     "datasets": {"scores/as_of=2026-06-30": {"files": [{"path": "runs/<id>/...",
                                                         "size": 123, "sha256": "..."}],
                                               ...extra metadata}}}

There is no rename, no pointer to swap and nothing to overwrite, so the protocol is the
same on local disk (hard link or ``O_EXCL``) and on object stores (``If-None-Match: *``).
Readers (:func:`latest`, :func:`resolve`) list only ``_bigseg/commits/``, through the
storage every time (no cached listing), take the highest number and read exactly the files
it lists: they never list data prefixes.

Before a store's first commit, :func:`probe_create_only` checks that the store honours
create-only writes (some S3-compatible servers ignore ``If-None-Match``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping

from bigseg.errors import CommitConflict, DatasetMissing, PublishError, StoreUnsafe
from bigseg.io.manifest import (
    COMMITS,
    DIGITS,
    META,
    PROBES,
    RUNS,
    carry_forward,
    checked_relative,
    dataset_entry,
    file_entry,
    join,
    number_of,
    numbered,
    numbers,
    referenced,
)
from bigseg.io.storage import Location, Storage

#: what this module offers: the commit log, and the manifest helpers with it
__all__ = [
    "COMMITS",
    "DIGITS",
    "META",
    "PROBES",
    "RUNS",
    "VERSION",
    "carry_forward",
    "checked_relative",
    "commit",
    "dataset_entry",
    "file_entry",
    "join",
    "latest",
    "number_of",
    "numbered",
    "numbers",
    "probe_create_only",
    "read_commit",
    "referenced",
    "resolve",
    "run_id",
]

VERSION = 1

log = logging.getLogger(__name__)


# -- run ids -----------------------------------------------------------------------------------
def _plain(obj):
    """JSON default for run-id hashing: sets sorted, everything else as ``str``."""
    if isinstance(obj, (set, frozenset)):
        return sorted(str(v) for v in obj)
    return str(obj)


def run_id(parent: int, config: dict, input_fingerprint: str, as_of, code_version: str) -> str:
    """The id of a run, the name of its folder ``runs/<run_id>/``: a stable hash.

    A re-run of the same inputs (config, input fingerprint, ``as_of``, code version) on the
    same parent commit gets the same id, so it rewrites the same names and per-bucket
    completion markers let it resume.

    The parent commit number is part of the hash so that a run never rewrites files that a
    current commit lists. Once a run with id ``R`` commits ``n`` (listing
    ``runs/R/...``), the next run of the same inputs has parent ``n`` and so another id:
    without the parent it would rewrite ``runs/R/...`` in place while readers read them
    through commit ``n``, and a crash mid-rewrite would leave the current commit pointing
    at files of two runs (and checksums that no longer match).

    Parameters
    ----------
    parent : int
        The commit the run starts from (0 when there is none yet).
    config : dict
        The run config as the run sees it (normalised: the same settings give the same
        dict); sets and values JSON cannot hold are hashed by their ``str``.
    input_fingerprint : str
        A fingerprint of the inputs (files, sizes, modification times or ETags).
    as_of : date or str
        The scoring date.
    code_version : str
        bigseg's version (and anything else that changes what the code writes).

    Returns
    -------
    str
        24 hex digits.
    """
    payload = {
        "parent": int(parent),
        "config": config,
        "inputs": input_fingerprint,
        "as_of": str(as_of),
        "code": code_version,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# -- reading -----------------------------------------------------------------------------------
def read_commit(storage: Storage, root: Location, n: int) -> dict:
    """Commit ``n``'s manifest (checked: version, number, datasets)."""
    where = join(root, COMMITS, numbered(n))
    try:
        manifest = json.loads(storage.read_text(where))
    except ValueError as e:
        raise PublishError(f"{where}: commit manifest is not valid JSON ({e})") from e
    if (
        not isinstance(manifest, dict)
        or manifest.get("version") != VERSION
        or manifest.get("n") != n
        or not isinstance(manifest.get("datasets"), dict)
    ):
        raise PublishError(
            f"{where}: not a bigseg commit manifest of version {VERSION} numbered {n}"
        )
    return manifest


def latest(storage: Storage, root: Location) -> tuple[int, dict] | None:
    """The latest commit as ``(n, manifest)``, None when there is none.

    Lists only ``_bigseg/commits/`` (one :meth:`~bigseg.io.storage.Storage.list` per call,
    no cached listing) and reads the highest number: commits are written create-only and
    complete, so the highest number is the current state.
    """
    found = numbers(storage, join(root, COMMITS))
    if not found:
        return None
    return found[-1], read_commit(storage, root, found[-1])


def resolve(
    storage: Storage, root: Location, dataset: str, manifest: Mapping | None = None
) -> list[Location]:
    """The files of logical ``dataset`` (``store``, ``features``, ``segments``,
    ``scores/as_of=2026-06-30``, ``models/<version>``, ``audiences``, ``report``,
    ``metrics``) as full locations, in the order the manifest lists them.

    Parameters
    ----------
    storage, root
        The output.
    dataset : str
        The logical name.
    manifest : dict, optional
        Resolve against this manifest (several datasets read from one commit, consistent);
        default: the :func:`latest` commit.

    Raises
    ------
    DatasetMissing
        No commit yet, or the commit has no such dataset.
    """
    if manifest is None:
        found = latest(storage, root)
        if found is None:
            raise DatasetMissing(f"{join(root, COMMITS)}: nothing committed yet; no {dataset!r}")
        manifest = found[1]
    entry = manifest["datasets"].get(dataset)
    if entry is None:
        have = ", ".join(sorted(manifest["datasets"])) or "none"
        raise DatasetMissing(
            f"{join(root, COMMITS, numbered(manifest['n']))}: commit {manifest['n']} has no "
            f"dataset {dataset!r} (it has: {have})"
        )
    return [join(root, f["path"]) for f in entry["files"]]


# -- writing -----------------------------------------------------------------------------------
def _normal(obj):
    """``obj`` as JSON reads it back (tuples as lists, ...): what a manifest compares."""
    return json.loads(json.dumps(obj, default=str))


def probe_create_only(storage: Storage, root: Location) -> None:
    """Refuse a store that ignores create-only writes.

    Writes one probe key ``_bigseg/probe/<random>`` twice with
    :meth:`~bigseg.io.storage.Storage.put_if_absent`: the first must create it, the second
    must report that it exists and leave the first content. The probe is deleted after.

    Raises
    ------
    StoreUnsafe
        The second write succeeded or changed the content (exit 6).
    """
    storage.makedirs(join(root, PROBES))
    key = join(root, PROBES, f"{uuid.uuid4().hex}.probe")
    first, second = b"bigseg probe: first write\n", b"bigseg probe: second write\n"
    try:
        created = storage.put_if_absent(key, first)
        refused = not storage.put_if_absent(key, second)
        kept = storage.read_bytes(key) == first
    finally:
        storage.delete(key)
    if not (created and refused and kept):
        what = type(storage).__name__
        raise StoreUnsafe(
            f"{root}: the store ({what}) ignores create-only writes: a second create of "
            f"{key} {'succeeded' if not refused else 'changed its content'}. Commits and "
            "leases rest on create-only writes (S3 If-None-Match: *); use a store that "
            "honours them (AWS S3, or a recent MinIO / moto), not one that ignores the header"
        )


def _winner(storage: Storage, root: Location, n: int) -> dict | None:
    try:
        return read_commit(storage, root, n)
    except FileNotFoundError:
        return None


def _is_ours(manifest: dict, winner: dict | None) -> bool:
    return (
        winner is not None
        and winner.get("run_id") == manifest["run_id"]
        and _normal(winner["datasets"]) == manifest["datasets"]
    )


def commit(
    storage: Storage,
    root: Location,
    parent_n: int,
    datasets: Mapping[str, dict],
    run_id: str,
    *,
    lease=None,
    probe: bool | None = None,
    attempts: int = 3,
) -> int:
    """Publish ``datasets`` as commit ``parent_n + 1``: one create-only write.

    Parameters
    ----------
    storage, root
        The output.
    parent_n : int
        The commit the run started from (0: none yet).
    datasets : dict
        The full state, every logical dataset (see :func:`dataset_entry` and
        :func:`carry_forward`).
    run_id : str
        This run's id (:func:`run_id`).
    lease : Lease, optional
        The lease the run holds: checked (not lost, not about to expire) before writing.
    probe : bool, optional
        Run :func:`probe_create_only` first; default: for the first commit (parent 0).
    attempts : int
        Tries when the write fails with an :class:`OSError` (ambiguous: it may have
        landed): each retry reads the name back first.

    Returns
    -------
    int
        The commit number, ``parent_n + 1``; also when that commit is this run's own
        earlier attempt (same run id and datasets), e.g. a retry after a timeout.

    Raises
    ------
    CommitConflict
        Another run holds ``parent_n + 1`` (exit 6), or a newer commit exists.
    StoreUnsafe
        The probe found a store that ignores create-only writes.
    """
    n = parent_n + 1
    manifest = {
        "version": VERSION,
        "n": n,
        "parent": parent_n,
        "run_id": run_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "datasets": _normal(dict(datasets)),
    }
    for entry in manifest["datasets"].values():
        for f in entry["files"]:
            checked_relative(f["path"])
    if probe or (probe is None and parent_n == 0):
        probe_create_only(storage, root)
    if lease is not None:
        lease.check()
    storage.makedirs(join(root, COMMITS))
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    where = join(root, COMMITS, numbered(n))
    if _write(storage, root, where, data, manifest, attempts):
        _check_newest(storage, root, n, run_id)
    else:
        _ours_or_conflict(storage, root, manifest)
    return n


def _ours_or_conflict(storage: Storage, root: Location, manifest: dict) -> None:
    """The commit number was taken: fine when by this run's own earlier attempt (the same
    run id and datasets), :class:`~bigseg.errors.CommitConflict` otherwise."""
    n, where = manifest["n"], join(root, COMMITS, numbered(manifest["n"]))
    winner = _winner(storage, root, n)
    if not _is_ours(manifest, winner):
        by = winner.get("run_id") if winner else "unknown (unreadable)"
        raise CommitConflict(
            f"{where}: commit {n} was taken by run {by}, not this run ({manifest['run_id']}): "
            "another bigseg run published on the same parent first; this run's results are "
            "not committed. Re-run to build on the new state"
        )
    log.info("%s: commit %d is this run's own earlier attempt", where, n)


def _write(
    storage: Storage, root: Location, where: Location, data: bytes, manifest: dict, attempts: int
) -> bool:
    """The create-only write of a commit, retried after an :class:`OSError` (ambiguous:
    it may have landed, so the name is read back first). True when this call wrote it;
    False when the name was taken (by whom is the caller's question)."""
    for attempt in range(max(1, attempts)):
        try:
            return storage.put_if_absent(where, data)
        except OSError as e:
            if _is_ours(manifest, _winner(storage, root, manifest["n"])):
                return True
            if attempt + 1 >= attempts:
                raise
            log.warning("%s: commit write failed (%s); retrying", where, e)
    raise AssertionError("unreachable")


def _check_newest(storage: Storage, root: Location, n: int, run_id: str) -> None:
    """A commit numbered below the newest is not the state readers see: refuse it (a
    stale parent whose successor was garbage-collected)."""
    newest = numbers(storage, join(root, COMMITS))[-1]
    if newest > n:
        raise CommitConflict(
            f"{join(root, COMMITS, numbered(n))}: run {run_id} wrote commit {n}, but commit "
            f"{newest} is newer (its parent {n - 1} was stale); this run's results are not "
            "the current state. Re-run to build on the new state"
        )
