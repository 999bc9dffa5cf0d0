"""Names and entries of the commit manifests (:mod:`bigseg.io.commits`).

Object names are numbers with :data:`DIGITS` digits (``00000000000000000007.json``), so
that names sort as numbers; a manifest lists each logical dataset's files by their path
relative to the output root, with size and SHA-256. :func:`join` builds locations from a
root that is a :class:`~pathlib.Path`, a plain path or a URL alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from bigseg.io.storage import Location, Storage

#: bigseg's own objects under the root: commits, leases, probes
META = "_bigseg"
COMMITS = f"{META}/commits"
PROBES = f"{META}/probe"
#: run records (``bigseg.pipeline.record``) and erasure requests (``bigseg.store.erasure``)
RECORDS = f"{META}/records"
ERASURES = f"{META}/erasure"
#: where runs write the files commits list (the only prefix :mod:`bigseg.io.gc` deletes in)
RUNS = "runs"
#: digits of a commit (and lease epoch) number in its name
DIGITS = 20
_NAME = re.compile(rf"^(\d{{{DIGITS}}})\.json$")
_CHUNK = 1 << 20


# -- names -------------------------------------------------------------------------------------
def join(root: Location, *parts: str) -> Location:
    """``root`` joined with ``/``-separated relative parts: a :class:`~pathlib.Path` for a
    path root, a string for a string root (a plain path or a URL such as ``s3://b/p``)."""
    if isinstance(root, Path):
        return root.joinpath(*parts)
    return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])


def numbered(n: int) -> str:
    """The object name of number ``n``: ``<20 digits>.json``."""
    return f"{n:0{DIGITS}d}.json"


def number_of(name: str) -> int | None:
    """The number in an object name written by :func:`numbered`; None for other names
    (temporary files of a create-only write in progress, strays)."""
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def numbers(storage: Storage, directory: Location) -> list[int]:
    """The numbers of the ``<20 digits>.json`` objects directly under ``directory``,
    ascending: one :meth:`~bigseg.io.storage.Storage.list` of that directory, never cached."""
    found = (number_of(name) for name in storage.list(directory))
    return sorted(n for n in found if n is not None)


def checked_relative(path: str) -> str:
    """``path`` as a manifest path: relative to the root, ``/``-separated, no ``..``."""
    p = PurePosixPath(str(path).replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or str(p) in ("", "."):
        raise ValueError(f"{path!r}: a manifest path must be relative to the output root")
    return str(p)


# -- dataset entries ---------------------------------------------------------------------------
def file_entry(storage: Storage, root: Location, path: str) -> dict:
    """``{"path", "size", "sha256"}`` of one written file, read through ``storage``.

    Parameters
    ----------
    storage : Storage
        Where the file lives.
    root : str or Path
        The output root.
    path : str
        The file's path relative to ``root``.
    """
    rel = checked_relative(path)
    digest, size = hashlib.sha256(), 0
    with storage.open_read(join(root, rel)) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"path": rel, "size": size, "sha256": digest.hexdigest()}


def dataset_entry(storage: Storage, root: Location, files: Iterable, **meta) -> dict:
    """A manifest's entry of one logical dataset: ``{"files": [...], **meta}``.

    Parameters
    ----------
    storage : Storage
        Where the files live (sizes and checksums are read through it).
    root : str or Path
        The output root.
    files : iterable of str or dict
        Each a path relative to ``root`` (measured with :func:`file_entry`), or an entry
        ``{"path", "size", "sha256"}`` the writer already computed (taken as it is).
    **meta
        Extra metadata of the dataset (row counts, ``as_of``, model version, ...); JSON
        values.

    Returns
    -------
    dict
        The entry, files sorted by path.
    """
    if "files" in meta:
        raise ValueError("'files' is the entry's file list, not metadata")
    entries = []
    for f in files:
        if isinstance(f, Mapping):
            e = {"path": checked_relative(f["path"]), "size": int(f["size"])}
            entries.append({**e, "sha256": str(f["sha256"])})
        else:
            entries.append(file_entry(storage, root, f))
    entries.sort(key=lambda e: e["path"])
    return {"files": entries, **meta}


def carry_forward(
    parent: Mapping | None, updates: Mapping[str, dict], drop: Iterable[str] = ()
) -> dict:
    """The full dataset map of a new commit: the parent's datasets, minus ``drop``, with
    ``updates`` replacing or adding entries (a stage commits what it wrote; the rest of
    the state carries over unchanged)."""
    datasets = dict(parent["datasets"]) if parent else {}
    for name in drop:
        datasets.pop(name, None)
    datasets.update(updates)
    return datasets


def referenced(manifest: Mapping) -> set[str]:
    """Every path (relative to the root) that ``manifest`` lists."""
    return {f["path"] for entry in manifest["datasets"].values() for f in entry["files"]}
