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
        log.warning(
            "%s: removed %d staging entr%s left by interrupted runs: %s",
            root,
            len(gone),
            "y" if len(gone) == 1 else "ies",
            ", ".join(gone),
        )
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
MANAGED = (
    "store",
    "features",
    "segments",
    "scores",
    "models",
    "quarantine",
    "audiences",
    ".staging",
)


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


# -- resumable staging ---------------------------------------------------------------------
_RECORD = "record.json"


def _plain(obj):
    """``obj`` as plain JSON values, exactly reversible by :func:`_unplain`: arrays keep
    their dtype and shape, dicts with non-string keys keep their keys (floats are written
    with ``repr``, so a float64 reads back bit-identical)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return {"__array__": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _plain(v) for k, v in obj.items()}
        return {"__items__": [[_plain(k), _plain(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unplain(obj):
    import numpy as np

    if isinstance(obj, dict):
        if "__array__" in obj:
            return np.asarray(obj["data"], dtype=np.dtype(obj["__array__"])).reshape(obj["shape"])
        if "__items__" in obj:
            return {_unplain(k): _unplain(v) for k, v in obj["__items__"]}
        return {k: _unplain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unplain(v) for v in obj]
    return obj


def dumps_stats(obj) -> str:
    """Per-bucket statistics as JSON text (numpy arrays and int-keyed dicts included;
    no pickle): what a resumable stage saves beside each finished bucket."""
    return json.dumps(_plain(obj), allow_nan=True)


def loads_stats(text: str):
    """Inverse of :func:`dumps_stats`."""
    return _unplain(json.loads(text))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a uniquely named temp file + ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResumableStage:
    """A staging directory that outlives a killed run, for a stage that works bucket by
    bucket: ``output/.staging/score-<name>-<fingerprint[:16]>/``.

    ``record.json`` holds the full fingerprint of everything that determines the
    stage's result (the caller hashes it: inputs, model, config, code) and the stage's
    global inputs; each finished bucket ``k`` has ``part-<k>.arrow`` and then
    ``stats-<k>.json``, both written atomically (temp file + rename), the stats last:
    a bucket counts as finished when its stats file exists. Opening with the same
    fingerprint resumes (the finished buckets are :attr:`done`); any other resumable
    directory, or this one with another fingerprint, is deleted. Nothing here is
    published: the stage publishes its outputs from these files with
    :func:`staged_dir`, then calls :meth:`remove`.
    """

    def __init__(self, output: str | Path, name: str, fingerprint: str):
        self.fingerprint = fingerprint
        root = staging_root(output)
        self.dir = root / f"{RESUMABLE}{name}-{fingerprint[:16]}"
        if root.is_dir():
            for p in root.iterdir():
                if p.name.startswith(RESUMABLE) and p != self.dir:
                    log.info("discarding resumable staging %s (another fingerprint)", p)
                    remove_tree(p)
        self.record: dict | None = None
        rec = self.dir / _RECORD
        if rec.is_file():
            try:
                got = json.loads(rec.read_text())
            except ValueError:
                got = {}
            if got.get("fingerprint") == fingerprint:
                self.record = got
        if self.record is None:  # new, or not ours: start afresh
            remove_tree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def write_record(self, info: dict, inputs: dict) -> None:
        """Start the stage: record the fingerprint, ``info`` (for people) and the
        stage's global ``inputs`` (read back exactly by :meth:`globals`)."""
        self.record = {"fingerprint": self.fingerprint, **info, "globals": _plain(inputs)}
        write_text_atomic(self.dir / _RECORD, json.dumps(self.record, default=str))

    def globals(self) -> dict:
        return _unplain(self.record["globals"])

    def part(self, k: int) -> Path:
        return self.dir / f"part-{k:05d}.arrow"

    def stats(self, k: int) -> Path:
        return self.dir / f"stats-{k:05d}.json"

    def done(self, n: int) -> list[int]:
        """The finished buckets among ``0..n-1`` (nothing before :meth:`write_record`)."""
        if self.record is None:
            return []
        return [k for k in range(n) if self.stats(k).is_file() and self.part(k).is_file()]

    def load_stats(self, k: int):
        return loads_stats(self.stats(k).read_text())

    def remove(self) -> None:
        remove_tree(self.dir)
