"""Adopt an output written before the commit log as its commit 1.

Before the commit log, bigseg published fixed folders by rename: ``store/``,
``quarantine/``, ``features/``, ``segments/``, ``scores/as_of=*/``, ``audiences/``,
``models/<version>/`` with ``models/LATEST``, ``metrics.json`` and ``report.html``. The
first writing command on such an output (it holds the lease) adopts them:

1. an interrupted publish is put back first (:func:`bigseg.io.commit.recover_all`);
2. every file of those folders is hard-linked under ``runs/adopted-<hash>/`` with the
   same relative path, and the datasets are committed as commit 1;
3. only then the old folders are deleted, so the only copy of each row is one a commit
   lists: a later ``bigseg erase`` rewrites it, and ``bigseg gc`` collects the versions it
   replaced. Left in place, the old folders would keep erased customers forever (gc
   works only inside ``runs/``).

The erasure log is never moved or rewritten: ``erasure_log.jsonl`` stays where it was
and is read with the per-request objects (:mod:`bigseg.store.erasure`), so no erasure is
lost. The old run records ``runs/<time>.json`` move to ``_bigseg/records/``. A crash
between 2 and 3 is harmless: commit 1 exists, adoption does not run again, and the
leftover folders are deleted by the next adoption check.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bigseg.io import commits
from bigseg.io.commit import copy_file, delete_file, link_files, recover_all, remove_tree
from bigseg.io.layout import (
    AUDIENCES,
    FEATURES,
    LATEST,
    LOCK,
    METRICS,
    MODEL_MANIFEST,
    MODELS,
    QUARANTINE,
    REPORT,
    RUNS,
    SCORES,
    SEGMENTS,
    STAGING,
    STORE,
    STORE_MANIFEST,
)
from bigseg.io.manifest import RECORDS
from bigseg.io.output import LATEST_MODEL, Output
from bigseg.io.storage import Storage, is_remote, local

log = logging.getLogger(__name__)

_DIRS = (STORE, QUARANTINE, FEATURES, SEGMENTS, AUDIENCES)
_FILES = {"metrics": METRICS, "report": REPORT}


def _legacy(root: Path) -> dict[str, Path]:
    """``{dataset: folder or file}`` of the old layout found under ``root``."""
    found: dict[str, Path] = {}
    for name in _DIRS:
        if (root / name).is_dir():
            found[name] = root / name
    if not (root / STORE / STORE_MANIFEST).is_file():
        found.pop(STORE, None)
    scores = root / SCORES
    if scores.is_dir():
        for d in sorted(scores.glob("as_of=*")):
            if d.is_dir():
                found[f"{SCORES}/{d.name}"] = d
    models = root / MODELS
    if models.is_dir():
        for d in sorted(models.iterdir()):
            if d.is_dir() and (d / MODEL_MANIFEST).is_file():
                found[f"{MODELS}/{d.name}"] = d
    for name, fname in _FILES.items():
        if (root / fname).is_file():
            found[name] = root / fname
    return found


def _leftovers(root: Path) -> list[Path]:
    names = [*_DIRS, SCORES, MODELS, STAGING, LOCK, *_FILES.values()]
    return [root / n for n in names if (root / n).exists()]


def adopt_legacy(storage: Storage, root, held=None) -> int | None:
    """Adopt an output from before the commit log as commit 1 (see the module
    docstring); called with the lease held. Returns 1 when it adopted, else None."""
    if is_remote(root):
        return None  # object-storage outputs never had the old layout
    root = Path(root)
    if commits.latest(storage, root) is not None:
        _remove(root, _leftovers(root) if (root / STORE).exists() else [])
        return None
    recover_all(root)
    recover_all(root / SCORES)
    recover_all(root / MODELS)
    found = _legacy(root)
    if not found:
        return None
    digest = hashlib.sha256(str(sorted(map(str, found.values()))).encode()).hexdigest()[:12]
    out = Output.open(root, storage)
    run = out.begin(f"adopted-{digest}").root
    for name, src in sorted(found.items()):
        rel = src.relative_to(root).as_posix()
        if src.is_file():
            copy_file(src, run / rel)
            out.put_files(
                name, [f"{RUNS}/adopted-{digest}/{rel}"], prefix=f"{RUNS}/adopted-{digest}"
            )
            continue
        members = {
            Path(i.path).relative_to(src).as_posix(): i.path
            for i in local.find(src)
            if not Path(i.path).name.startswith(".")
        }
        remove_tree(run / rel)
        link_files(members, run / rel)
        out.put(name, run / rel)
    latest = root / MODELS / LATEST
    if latest.is_file():
        out.put_pointer(LATEST_MODEL, version=latest.read_text().strip())
    n = out.commit(lease=held)
    _move_records(root)
    _remove(root, _leftovers(root))
    log.warning(
        "%s: adopted the outputs of an earlier bigseg version as commit %d (%s); the "
        "erasure log stays as it is",
        root,
        n,
        ", ".join(sorted(found)),
    )
    return n


def _move_records(root: Path) -> None:
    for p in sorted((root / RUNS).glob("*.json")):
        copy_file(p, root / RECORDS / p.name)
        delete_file(p)


def _remove(root: Path, paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            remove_tree(p)
        else:
            delete_file(p)
