"""One writer per output, and the session a writing command runs in.

Every command that writes under ``output:`` holds the output's *lease*
(:mod:`bigseg.io.lease`: create-only epoch objects under ``_bigseg/lease/``, renewed while
the run lives) for its whole run, taken before a cluster starts. A second run on the same
output fails at once with :class:`~bigseg.errors.LeaseHeld` (exit 6), naming the holder
and when its lease expires. A lease left by a process that died is taken over when it
expires, or at once when its holder was a process on this host that no longer exists.

:func:`output_session` is a writing command's unit of work: the lease, an output written
before the commit log adopted as commit 1 (:mod:`bigseg.store.adopt`), the committed state
opened (:class:`~bigseg.io.output.Output`) with this run's prefix, and on success one
commit of what the run wrote. A failure commits nothing: the previous commit stays the
current state and the run's files wait under ``runs/<run_id>/`` for a re-run of the same
inputs to reuse them or for ``bigseg gc`` to delete them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from bigseg import __version__
from bigseg.io import commits
from bigseg.io.commit import remove_stale_staging
from bigseg.io.layout import Layout
from bigseg.io.lease import Lease, lease
from bigseg.io.output import Output

log = logging.getLogger(__name__)


@contextlib.contextmanager
def output_lease(cfg, what: str) -> Iterator[Lease]:
    """Hold the lease of ``cfg``'s output while the block runs (``what`` names the
    command); an output from before the commit log is adopted first."""
    from bigseg.store.adopt import adopt_legacy

    storage, root = cfg.storage(), _root(cfg)
    storage.makedirs(root)
    with lease(storage, root, what) as held:
        adopt_legacy(storage, root, held)
        if not cfg.is_remote:  # the feature cache's staging left by dead runs
            remove_stale_staging(Layout(root).feature_cache)
        yield held


def _root(cfg):
    from pathlib import Path

    return cfg.output_url if cfg.is_remote else Path(cfg.output_url)


def open_output(cfg) -> Output:
    """The committed state of ``cfg``'s output (no lease: for readers)."""
    return Output.open(_root(cfg), cfg.storage())


def begin(cfg, what: str, key: dict | None = None, inputs: str = "") -> Output:
    """Open the output and start a run on it: its id hashes the parent commit, the
    config, ``what`` and ``key`` (the stages, a model version), the ``inputs``
    fingerprint, ``as_of`` and the code version (:func:`bigseg.io.commits.run_id`).

    Called with the lease held: what a killed attempt of this same run left staged in
    its folder is removed (all but the resumable score staging, which the score stage
    reuses or discards)."""
    out = open_output(cfg)
    conf = {"config": cfg.model_dump(mode="json"), "what": what, **(key or {})}
    out.begin(commits.run_id(out.parent, conf, inputs, cfg.as_of, __version__))
    if not cfg.is_remote:
        remove_stale_staging(out.layout)
    return out


def finish(out: Output, held: Lease | None) -> int | None:
    """Commit what the run wrote (nothing written: no commit); the new number."""
    if not out.changed:
        return None
    n = out.commit(lease=held)
    log.info("%s: committed %d (run %s)", out.root, n, out.run_id)
    return n


@contextlib.contextmanager
def output_session(cfg, what: str, key: dict | None = None, inputs: str = "") -> Iterator[Output]:
    """Lease, open, run the block, commit (see the module docstring)."""
    with output_lease(cfg, what) as held:
        out = begin(cfg, what, key, inputs)
        yield out
        finish(out, held)
