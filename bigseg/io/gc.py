"""Garbage collection of an output: keep the newest commits, delete what none references.

:func:`gc` runs under the output's lease (:mod:`bigseg.io.lease`), so no run writes
meanwhile. It keeps the newest ``keep`` commits and every file they list, and deletes:

1. the commit manifests older than the kept ones. The log is not kept: its listing would
   grow without bound (every reader lists ``_bigseg/commits/``), and readers take the
   highest number, which gc never deletes. Deleting the old manifests first keeps the
   invariant that every manifest left lists only files that exist. (A committer whose
   parent was stale and whose next number gc deleted would recreate that number below
   the newest: :func:`bigseg.io.commits.commit` checks for a newer commit after writing
   and refuses with :class:`~bigseg.errors.CommitConflict`.)
2. the files under ``runs/`` that no kept commit lists: files of superseded commits, of
   runs that died before committing (their resume markers included), strays. Nothing
   outside ``runs/`` is ever deleted, and never a listed file wherever it is.

Erasure writes a new commit without the erased customers; ``gc`` then drops the older
versions. With bucket versioning or soft delete the store keeps deleted bytes as old
object versions: that is the store's policy to set, not something gc can undo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bigseg.errors import ConfigError
from bigseg.io.commits import COMMITS, RUNS, join, numbered, numbers, read_commit, referenced
from bigseg.io.lease import Lease, lease
from bigseg.io.storage import Location, Storage

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    """What :func:`gc` kept and deleted (``dry_run``: would delete)."""

    kept_commits: list[int] = field(default_factory=list)
    deleted_commits: list[int] = field(default_factory=list)
    kept_files: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0
    #: the deleted files, relative to the root
    deleted: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"kept commits {self.kept_commits} ({self.kept_files} files); {verb} "
            f"{len(self.deleted_commits)} older commits and {self.deleted_files} files "
            f"({self.deleted_bytes} bytes) under {RUNS}/"
        )


def _files(storage: Storage, root: Location) -> list[tuple[str, int]]:
    """``(path relative to root, size)`` of every file under ``runs/``, from one recursive
    listing (one request per 1,000 keys on S3, not one per directory)."""
    prefix = str(join(root, RUNS)).rstrip("/") + "/"
    out = []
    for f in storage.find(join(root, RUNS)):
        if f.path.startswith(prefix):
            out.append((f"{RUNS}/{f.path[len(prefix) :]}", f.size))
    return out


def _sweep(storage: Storage, root: Location, keep: set[str], report: GcReport) -> None:
    """Delete the files under ``runs/`` not in ``keep``; a run directory left with no
    file is removed whole (on local disk its empty subdirectories go with it)."""
    left: dict[str, int] = {}
    for rel, size in _files(storage, root):
        run = "/".join(rel.split("/")[:2])
        left.setdefault(run, 0)
        if rel in keep:
            left[run] += 1
            continue
        if not report.dry_run:
            storage.delete(join(root, rel))
        report.deleted.append(rel)
        report.deleted_files += 1
        report.deleted_bytes += size
    if not report.dry_run:
        for run, n in left.items():
            if n == 0:
                storage.delete_tree(join(root, run))


def _check_keep(keep) -> None:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"--keep {keep!r}: must be a whole number of commits, at least 1")


def collect(storage: Storage, root: Location, keep: int, dry_run: bool = False) -> GcReport:
    """:func:`gc` without taking the lease: for a caller that already holds it."""
    _check_keep(keep)
    report = GcReport(dry_run=dry_run)
    found = numbers(storage, join(root, COMMITS))
    if not found:
        log.info("%s: nothing committed; nothing to collect", root)
        return report
    report.kept_commits = found[-keep:]
    listed: set[str] = set()
    for n in report.kept_commits:
        listed |= referenced(read_commit(storage, root, n))
    report.kept_files = len(listed)
    report.deleted_commits = found[:-keep]
    if not dry_run:
        for n in report.deleted_commits:
            storage.delete(join(root, COMMITS, numbered(n)))
    _sweep(storage, root, listed, report)
    log.info("%s: gc %s", root, report.summary())
    return report


def gc(
    storage: Storage,
    root: Location,
    keep: int,
    *,
    dry_run: bool = False,
    held: Lease | None = None,
    **lease_options,
) -> GcReport:
    """Keep the newest ``keep`` commits and their files; delete the rest under ``runs/``.

    Parameters
    ----------
    storage, root
        The output.
    keep : int
        How many of the newest commits to keep (at least 1).
    dry_run : bool
        Report what would be deleted, delete nothing.
    held : Lease, optional
        The output's lease when the caller holds it already; otherwise gc takes it (and
        refuses with :class:`~bigseg.errors.LeaseHeld` while a run holds it).
    **lease_options
        Passed to :func:`bigseg.io.lease.lease` (``ttl``, ``clock``, ``probe``).

    Returns
    -------
    GcReport
        Kept and deleted commits, deleted files and bytes.
    """
    _check_keep(keep)  # before taking the lease
    if held is not None:
        held.check(margin=0)
        return collect(storage, root, keep, dry_run)
    with lease(storage, root, "bigseg gc", **lease_options):
        return collect(storage, root, keep, dry_run)
