"""Atomic writes, staging and one durability policy.

What a run writes goes under its own prefix ``runs/<run_id>/`` and becomes visible only
through the commit that lists it (:mod:`bigseg.io.commits`): nobody reads a run's files
before then, so nothing here has to be atomic towards readers of committed data. Within a
run, a dataset folder is written whole or not at all:

* on a local file system :func:`staged_dir` stages it beside its final place and moves
  it in by rename (:func:`publish_dir`), so a run that dies never leaves a half folder
  under the name a re-run of the same run id would take up;
* on object storage :func:`staged_dir` writes the final place directly (emptied first):
  there is no rename, and an object appears only once its upload completes.

**Durability policy** (the one policy, everywhere): a name becomes visible only after its
bytes are durable. :func:`write_bytes_atomic` and its JSON/text forms ``fsync`` the file
before the rename and the directory after it; :func:`publish_dir` ``fsync``\\ s every file
of the staged tree before the rename and the parent directory after it;
:meth:`~bigseg.io.storage.Storage.put_if_absent` (create-only, what commits and leases
rest on) is durable when it returns. :func:`recover` undoes an interrupted publish of the
layout from before the commit log (adopted by :mod:`bigseg.store.adopt`).

:func:`dask.dataframe.to_parquet` is not used for publishing: it is not atomic, and with
``overwrite=True`` removes the original data even when the write fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from bigseg.errors import PublishError
from bigseg.io.layout import MANAGED, Layout, as_layout
from bigseg.io.storage import (
    TEMPORARY,
    Location,
    fsync_dir,
    fsync_file,
    is_object,
    local,
    storage_of,
)

log = logging.getLogger(__name__)

_OLD = ".~old"

#: prefix of the resumable staging directories of the score stage (see
#: :class:`bigseg.io.resume.ResumableStage`): kept across runs, the stage reuses or
#: discards them
RESUMABLE = "score-"


def _old(final: Path) -> Path:
    return final.with_name(final.name + _OLD)


def is_temporary(name: str) -> bool:
    """True for the temporary files of an unfinished atomic write."""
    return bool(TEMPORARY.match(name))


# -- single files ----------------------------------------------------------------------------
def write_bytes_atomic(path: Location, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole and durably (parents made as needed; an
    object is whole by itself)."""
    if is_object(path):
        path.write_bytes(data)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(path, data)


def write_text_atomic(path: Location, text: str) -> None:
    """:func:`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def json_text(obj) -> str:
    """bigseg's JSON file format: 2-space indent, keys in insertion order, a final newline
    (values JSON cannot hold are written with ``str``)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def finite(obj):
    """``obj`` with every non-finite float (NaN, +-Infinity; numpy's too) replaced by
    ``None`` and numpy scalars made plain Python values, in nested dicts, lists and
    tuples: what strict JSON can hold."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and type(obj).__module__ == "numpy" and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # a numpy scalar
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def strict_json_text(obj) -> str:
    """:func:`json_text` of strict JSON (RFC 8259): ``null`` where a value is undefined,
    never ``NaN`` or ``Infinity`` (``metrics.json``, run records)."""
    return json.dumps(finite(obj), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"


def write_json_atomic(path: Location, obj, *, strict: bool = False) -> None:
    """:func:`write_bytes_atomic` of ``obj`` as :func:`json_text` (``strict``:
    :func:`strict_json_text`)."""
    write_text_atomic(path, strict_json_text(obj) if strict else json_text(obj))


def read_json(path: Location):
    return json.loads(storage_of(path).read_text(path))


def read_bytes(path: Location) -> bytes:
    return storage_of(path).read_bytes(path)


def open_log(path: Location):
    """A file to write a log into, in place (not atomic: no reader takes it for complete
    output); binary, with a real file descriptor (a subprocess may write to it)."""
    return local.open_write(path)


def delete_file(path: Location) -> None:
    """Delete one file; nothing when it is not there."""
    storage_of(path).delete(path)


def copy_file(src: Location, dst: Location) -> None:
    """Copy one file with its modification time (objects: a server-side copy)."""
    if is_object(dst):
        dst.storage.copy(src, dst)
        return
    local.copy(src, dst)


# -- directories -----------------------------------------------------------------------------
def recover(final: Location) -> None:
    """Undo an interrupted publish of ``final`` (its previous version is put back when
    the new one never arrived; a leftover previous version is deleted)."""
    final = Path(final)
    old = _old(final)
    if old.exists():
        if final.exists():
            local.delete_tree(old)
        else:
            log.warning("restoring %s from an interrupted publish", final)
            local.rename(old, final)


def recover_all(parent: Location) -> list[Path]:
    """:func:`recover` every interrupted publish directly under ``parent``; returns the
    leftovers found (each now put back or deleted)."""
    parent = Path(parent)
    found = sorted(parent.glob(f"*{_OLD}")) if parent.is_dir() else []
    for p in found:
        recover(p.with_name(p.name[: -len(_OLD)]))
        if p.exists():
            local.delete_tree(p)
    return found


def staging_root(output: str | Path | Layout) -> Path:
    return as_layout(output).staging


def new_staging(output: str | Path | Layout, name: str) -> Path:
    """A fresh, empty staging directory under ``output/.staging/``."""
    d = staging_root(output) / f"{name}-{uuid.uuid4().hex[:12]}"
    d.mkdir(parents=True)
    return d


def remove_tree(path: Location, attempts: int = 20) -> None:
    """Delete a staging tree (or a file), retrying while cancelled tasks may still be
    finishing a write into it."""
    if is_object(path):
        path.storage.delete_tree(path)
        return
    if not local.delete_tree(path, attempts=attempts):
        log.warning("could not fully remove %s", path)


def remove_stale_staging(output: str | Path | Layout) -> list[str]:
    """Delete what dead runs left under ``output/.staging/`` (called by the run that
    holds the output lock, so no other run can be writing there): every entry but the
    resumable score staging (:data:`RESUMABLE`), which the score stage reuses when its
    fingerprint matches and discards otherwise. Returns the names removed."""
    root = staging_root(output)
    if not root.is_dir():
        return []
    gone = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(RESUMABLE) and p.is_dir():
            continue
        if p.is_dir() and not p.is_symlink():
            remove_tree(p)
        else:
            local.delete(p)
        gone.append(p.name)
    if gone:
        log.warning(
            "%s: removed %d staging entr%s left by interrupted runs: %s",
            root,
            len(gone),
            "y" if len(gone) == 1 else "ies",
            ", ".join(gone),
        )
    return gone


def clear_staging(output: str | Path | Layout) -> list[Path]:
    """Delete everything under ``output/.staging/``, resumable staging included (erase:
    partial outputs may hold erased customers). Returns what was there."""
    root = staging_root(output)
    found = sorted(root.iterdir()) if root.is_dir() else []
    for p in found:
        if p.is_dir():
            remove_tree(p)
        else:
            local.delete(p)
    return found


def link_files(members: dict, dst: Location, skip: tuple[str, ...] = ()) -> None:
    """Stage the committed files ``members`` (``{path below dst: location}``) under
    ``dst``: shared, not copied, where the storage can (hard links on local disk). A file
    of the copy must be replaced (:func:`replace_file`), never written through."""
    dst = Path(dst)
    for rel, src in members.items():
        if Path(rel).name in skip:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        local.link(src, dst / rel)


def replace_file(path: Location) -> Path:
    """Make way for a new file at ``path`` in a staged tree from :func:`clone_tree`
    (the shared file of the published tree stays as it was). Returns ``path``."""
    local.delete(path)
    return Path(path)


def _sync_tree(d: Path) -> None:
    for root, _dirs, names in os.walk(d):
        for n in names:
            fsync_file(Path(root) / n)
        fsync_dir(root)


def publish_dir(staging: Location, final: Location) -> Path:
    """Commit a complete ``staging`` directory as ``final``, replacing any previous
    version (see the module docstring). ``staging`` is gone afterwards."""
    staging, final = Path(staging), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sync_tree(staging)
    recover(final)
    if final.exists():
        old = _old(final)
        local.rename(final, old)
        local.rename(staging, final)
        local.delete_tree(old)
    else:
        local.rename(staging, final)
    fsync_dir(final.parent)
    return final


@contextlib.contextmanager
def staged_dir(output: str | Path | Layout, final: Location) -> Iterator[Path]:
    """Context manager: yields a staging dir, publishes it to ``final`` on success and
    deletes it on any error, leaving the previous ``final`` untouched.

    On object storage ``final`` is yielded itself, emptied first: it lies under a run's
    own prefix, which no reader sees before the run commits, and an object store has no
    rename to publish a staged copy with."""
    if is_object(final):
        remove_tree(final)
        try:
            yield final
        except BaseException:
            remove_tree(final)
            raise
        return
    staging = new_staging(output, Path(final).name)
    try:
        yield staging
    except BaseException:
        remove_tree(staging)
        raise
    publish_dir(staging, final)


def check_paths(output: Path, inputs: list[Path]) -> None:
    """Refuse layouts where publishing could delete or pollute input data.

    The output directory must not be inside an input directory (a later read of that
    input would pick up our outputs), and no input may live inside a directory bigseg
    owns and replaces (``output/store``, ``output/scores``, ...). Inputs elsewhere under
    ``output`` (the demo keeps ``raw/`` there) are fine.
    """
    out = Path(output).resolve()
    for p in inputs:
        src = p.resolve()
        if src.is_dir() and (out == src or src in out.parents):
            raise PublishError(
                f"output directory {out} is inside input path {p}: refusing, as our outputs "
                f"would mix with the input data. Choose an output outside the inputs."
            )
        for name in MANAGED:
            owned = out / name
            if src == owned or owned in src.parents:
                raise PublishError(
                    f"input path {p} is inside {owned}, which bigseg replaces when it "
                    f"publishes: refusing before anything is deleted. Move the inputs."
                )


def publish_new_dirs(pairs: list[tuple[Location, Location]]) -> None:
    """Commit several staged directories to destinations that are absent or empty, all
    or none: on a failure the ones already committed are taken back to their staging
    place (a data set is never left half published)."""
    moved: list[tuple[Path, Path]] = []
    try:
        for staging, final in pairs:
            staging, final = Path(staging), Path(final)
            _sync_tree(staging)
            if final.exists():
                final.rmdir()  # empty: the caller checked
            local.rename(staging, final)
            moved.append((final, staging))
            fsync_dir(final.parent)
    except BaseException:
        for final, staging in moved:  # roll back so no half data set stays
            local.rename(final, staging)
        raise
