"""Atomic publication of output directories.

Everything bigseg publishes is written to a staging directory beside its final place
(same filesystem), then moved into place by ``rename``. Readers see the old complete
directory or the new complete directory, never a half-written one:

* no previous version: one ``rename(staging, final)`` — atomic;
* a previous version: ``rename(final, final.~old)``, ``rename(staging, final)``, then the
  old copy is deleted. If the process dies between the two renames, :func:`recover`
  (called before every read and publish) puts the old version back.

:func:`dask.dataframe.to_parquet` is not used for publishing: it is not atomic, and with
``overwrite=True`` removes the original data even when the write fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from bigseg.errors import PublishError

log = logging.getLogger(__name__)

_OLD = ".~old"


def _old(final: Path) -> Path:
    return final.with_name(final.name + _OLD)


def recover(final: str | Path) -> None:
    """Undo an interrupted swap: restore ``final`` from its ``.~old`` copy if needed."""
    final = Path(final)
    old = _old(final)
    if old.exists():
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            log.warning("restoring %s from an interrupted publish", final)
            os.rename(old, final)


def staging_root(output: str | Path) -> Path:
    return Path(output) / ".staging"


def new_staging(output: str | Path, name: str) -> Path:
    """A fresh, empty staging directory under ``output/.staging/``."""
    d = staging_root(output) / f"{name}-{uuid.uuid4().hex[:12]}"
    d.mkdir(parents=True)
    return d


#: prefix of the resumable staging directories of the score stage (see
#: :class:`ResumableStage`): kept across runs, the stage reuses or discards them
RESUMABLE = "score-"


def remove_stale_staging(output: str | Path) -> list[str]:
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
            p.unlink(missing_ok=True)
        gone.append(p.name)
    if gone:
        log.warning("%s: removed %d staging entr%s left by interrupted runs: %s", root,
                    len(gone), "y" if len(gone) == 1 else "ies", ", ".join(gone))
    return gone


def remove_tree(path: str | Path, attempts: int = 20) -> None:
    """Delete a staging tree, retrying while cancelled tasks may still be finishing a
    write into it."""
    path = Path(path)
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)
    log.warning("could not fully remove %s", path)


def publish_dir(staging: str | Path, final: str | Path) -> Path:
    """Move a complete ``staging`` directory to ``final``, replacing any previous version."""
    staging, final = Path(staging), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
    if final.exists():
        old = _old(final)
        os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, final)
    _fsync_dir(final.parent)
    return final


@contextlib.contextmanager
def staged_dir(output: str | Path, final: str | Path) -> Iterator[Path]:
    """Context manager: yields a staging dir, publishes it to ``final`` on success and
    deletes it on any error, leaving the previous ``final`` untouched."""
    staging = new_staging(output, Path(final).name)
    try:
        yield staging
    except BaseException:
        remove_tree(staging)
        raise
    publish_dir(staging, final)


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON to ``path`` via a temp file + ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


#: the directories bigseg owns under ``output:`` (published and replaced as wholes)
MANAGED = ("store", "features", "segments", "scores", "models", "quarantine", "audiences", ".staging")


def check_paths(output: Path, inputs: list[Path]) -> None:
    """Refuse layouts where publishing could delete or pollute input data.

    The output directory must not be inside an input directory (a later read of that
    input would pick up our outputs), and no input may live inside a directory bigseg
    owns and replaces (``output/store``, ``output/scores``, ...). Inputs elsewhere under
    ``output`` (the demo keeps ``raw/`` there) are fine.
    """
    out = output.resolve()
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


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
