"""Committed scores copied out as one plain, hive-partitioned Parquet dataset.

::

    <to>/as_of=2026-06-30/part-00000.parquet   (byte copies of the committed part files)
    <to>/as_of=2026-06-30/_bigseg_export.json  (what the partition holds, see below)
    <to>/as_of=2026-09-30/...

Tools that read a dataset by listing folders (DuckDB, Spark, Trino, BI tools) cannot
read an output, whose files live under the runs that wrote them and are current only
through the commit log. An export gives them a folder per ``as_of``. The part files are
the committed files byte for byte (plain Parquet already: no re-encoding), each checked
against the SHA-256 its commit lists; they have no ``as_of`` column, the folder name
supplies it (a reader's hive partitioning), so no reader meets the column twice.

**Idempotent**: each partition's marker ``_bigseg_export.json`` (a ``_`` name: Spark,
Hive and pyarrow skip it, a ``*.parquet`` glob does not match it) lists the partition's
files with the sizes and SHA-256s of the commit they came from. A partition whose marker
lists exactly the files the commit has now, and whose folder holds exactly those files at
those sizes, is left alone: exporting the same scores again writes nothing. Any other
partition is rewritten whole, and files the commit no longer has are deleted.

**What a reader listing mid-export sees**, per partition:

* local disk: the new partition is staged under ``<to>/.staging/`` and moved in by
  rename (the previous version is moved aside first, into ``.staging/``, then deleted),
  so a reader sees the old or the new partition whole, or for an instant none. A glob
  that descends into hidden folders (DuckDB's ``**``) also sees the staging: name the
  partitions, ``<to>/as_of=*/*.parquet``;
* object storage (no rename): the marker is deleted, the new part files written over the
  old names (each object whole), stale ones deleted, the marker written last. A reader
  listing mid-export may see a mix of old and new part files for that partition.

One export per destination at a time: exports take no lease (a lease's objects would be
new files at every export). Staging left by a killed export is deleted by a later one
once it is :data:`STALE_STAGING_S` old.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bigseg.errors import DataError, DatasetMissing
from bigseg.io.commit import json_text, publish_new_dirs, remove_tree
from bigseg.io.manifest import file_entry, join
from bigseg.io.objectstore import FsspecStorage
from bigseg.io.output import Output, scores_dataset
from bigseg.io.storage import LocalStorage, Location, Storage, fsync_dir, local

#: the per-partition marker
MARKER = "_bigseg_export.json"
#: local staging of new partitions and of the versions they replace
STAGING = ".staging"
#: leftover staging older than this (seconds) belongs to a dead export
STALE_STAGING_S = 3600.0
MARKER_VERSION = 1


def partition(day: str) -> str:
    return f"as_of={day}"


@dataclass(frozen=True)
class Part:
    """One file of an exported partition: its export name and where it comes from."""

    name: str
    size: int
    sha256: str
    #: its path in the output, relative to the output root
    source: str


def planned(out: Output, day: str) -> list[Part]:
    """The partition of ``day`` as the latest commit has it: the dataset's Parquet
    files in member order, named ``part-00000.parquet``, ``part-00001.parquet``, ...
    (deterministic: the same commit always gives the same names)."""
    entries = out.need(scores_dataset(day))["files"]
    members = sorted((f["path"].rsplit("/", 1)[-1], f) for f in entries)
    files = [f for name, f in members if name.endswith(".parquet")]
    return [
        Part(f"part-{i:05d}.parquet", int(f["size"]), str(f["sha256"]), f["path"])
        for i, f in enumerate(files)
    ]


def _marker(out: Output, day: str, parts: list[Part]) -> dict:
    return {
        "version": MARKER_VERSION,
        "as_of": day,
        "output": str(out.root),
        "commit": out.parent,
        "files": [
            {"path": p.name, "size": p.size, "sha256": p.sha256, "source": p.source} for p in parts
        ],
    }


def _content(files: list[dict]) -> list[tuple]:
    """What decides whether a partition is current: names, sizes, checksums (not the
    commit number: a later commit carrying the same scores forward changes nothing)."""
    return sorted((f["path"], int(f["size"]), str(f["sha256"])) for f in files)


def is_current(storage: Storage, where: Location, parts: list[Part]) -> bool:
    """True when the partition at ``where`` holds exactly ``parts``: its marker lists
    them and one listing finds exactly them (and the marker) at their sizes. The files
    are not re-hashed: a copy was checked when written."""
    found = {_name(where, i.path): i.size for i in storage.find(where)}
    want = {p.name: p.size for p in parts}
    if found.pop(MARKER, None) is None or found != want:
        return False
    try:
        marker = json.loads(storage.read_text(join(where, MARKER)))
        listed = _content(marker["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable or foreign: rewrite it
    return listed == sorted((p.name, p.size, p.sha256) for p in parts)


def _name(root: Location, path: str) -> str:
    """``path``'s name below ``root`` (a listing returns full locations)."""
    r = str(root).rstrip("/")
    return path[len(r) + 1 :] if path.startswith(r + "/") else path.rsplit("/", 1)[-1]


# -- copying ---------------------------------------------------------------------------------
def _same_store(a: Storage, b: Storage) -> bool:
    """True when ``b`` can copy ``a``'s files itself (local to local, or the same
    object-store protocol with the same options: a server-side copy)."""
    if isinstance(a, LocalStorage) and isinstance(b, LocalStorage):
        return True
    return (
        isinstance(a, FsspecStorage)
        and isinstance(b, FsspecStorage)
        and a.protocol == b.protocol
        and a.options == b.options
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _damaged(out: Output, part: Part, what: str) -> DataError:
    return DataError(
        f"{out.path(part.source)}: {what} than commit {out.parent} lists (size {part.size}, "
        f"sha256 {part.sha256[:12]}...): the committed file is damaged; the export of "
        "this date stopped (a local partition stays as it was)"
    )


def copy_part(out: Output, part: Part, storage: Storage, dst: Location) -> None:
    """Copy one committed file to ``dst`` (on ``storage``) and check the copy against
    the commit's size and SHA-256: a file copy on local disk, a server-side copy within
    one object store, else the bytes read whole (one part file in memory) and written
    whole."""
    src = join(out.root, part.source)
    try:
        if _same_store(out.storage, storage):
            storage.copy(src, dst)
            got = file_entry(storage, _parent(dst), _leaf(dst))
            size, sha = got["size"], got["sha256"]
        else:
            data = out.storage.read_bytes(src)
            size, sha = len(data), _sha256(data)
            if (size, sha) == (part.size, part.sha256):
                storage.write_bytes(dst, data)
    except FileNotFoundError as e:
        raise DatasetMissing(
            f"{src}: listed by commit {out.parent} but not there ({e}); was it collected "
            "by `bigseg gc` meanwhile? Export again"
        ) from None
    if (size, sha) != (part.size, part.sha256):
        storage.delete(dst)
        raise _damaged(out, part, f"has {size} bytes with sha256 {sha[:12]}..., other")


def _parent(path: Location) -> Location:
    return path.parent if isinstance(path, Path) else str(path).rsplit("/", 1)[0]


def _leaf(path: Location) -> str:
    return path.name if isinstance(path, Path) else str(path).rsplit("/", 1)[-1]


# -- one partition -------------------------------------------------------------------------
def export_partition(out: Output, day: str, storage: Storage, to: Location) -> bool:
    """Make ``<to>/as_of=<day>/`` equal to the latest commit's scores of ``day``;
    True when something was written, False when it already was."""
    parts = planned(out, day)
    where = join(to, partition(day))
    if is_current(storage, where, parts):
        return False
    marker = json_text(_marker(out, day, parts)).encode()
    if isinstance(storage, LocalStorage):
        _write_local(out, parts, Path(where), marker)
    else:
        _write_remote(out, parts, storage, where, marker)
    return True


def _write_local(out: Output, parts: list[Part], final: Path, marker: bytes) -> None:
    """Stage the partition whole, then swap it in: the previous version is moved aside
    into the staging folder (a hidden name no ``as_of=*`` glob matches) before the new
    one is renamed in, and deleted after."""
    staging = final.parent / STAGING
    tag = f"{final.name.replace('=', '-')}-{uuid.uuid4().hex[:12]}"
    new, old = staging / f"new-{tag}", staging / f"old-{tag}"
    new.mkdir(parents=True)
    try:
        for p in parts:
            copy_part(out, p, local, new / p.name)
        local.write_bytes(new / MARKER, marker)
        if final.exists():
            local.rename(final, old)
            fsync_dir(final.parent)
        publish_new_dirs([(new, final)])  # fsyncs every file, then one rename
    except BaseException:
        if old.exists() and not final.exists():  # put the previous version back
            local.rename(old, final)
        remove_tree(new, attempts=1)
        raise
    remove_tree(old, attempts=1)


def _write_remote(out: Output, parts: list[Part], storage: Storage, where: str, marker: bytes):
    """No rename on object stores: the marker goes first (a partition without one is
    rewritten by the next export), the part files are written over their names, stale
    files are deleted, and the marker is written last."""
    storage.delete(join(where, MARKER))
    for p in parts:
        copy_part(out, p, storage, join(where, p.name))
    keep = {p.name for p in parts}
    for info in storage.find(where):
        if _name(where, info.path) not in keep:
            storage.delete(info.path)
    storage.write_bytes(join(where, MARKER), marker)


def clean_staging(storage: Storage, to: Location, older_than: float = STALE_STAGING_S) -> list:
    """Delete what killed exports left under ``<to>/.staging/`` (entries older than
    ``older_than`` seconds: a younger one may be a running export's), and the folder
    itself once empty, so that a finished export leaves only its partitions. Returns
    the names deleted. Object stores have no staging: nothing to do."""
    if not isinstance(storage, LocalStorage):
        return []
    staging = Path(to) / STAGING
    if not staging.is_dir():
        return []
    now, gone = time.time(), []
    for p in sorted(staging.iterdir()):
        if now - p.lstat().st_mtime > older_than:
            remove_tree(p, attempts=1)
            gone.append(p.name)
    if not any(staging.iterdir()):
        local.delete_tree(staging)
    return gone
