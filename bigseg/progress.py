"""Waiting on Dask futures with a progress bar (rich) and clean failure.

Library code calls :func:`gather`; the bar is shown only when the CLI turned it on
(``set_enabled(True)``) and stderr is a terminal or ``BIGSEG_PROGRESS=1``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from distributed import KilledWorker, as_completed

from bigseg.errors import ClusterError

log = logging.getLogger(__name__)
_ENABLED = False


def set_enabled(flag: bool) -> None:
    global _ENABLED
    _ENABLED = flag


def _show() -> bool:
    return _ENABLED and (sys.stderr.isatty() or os.environ.get("BIGSEG_PROGRESS") == "1")


def stage(name: str, seconds: float | None = None) -> None:
    """Announce a stage starting (``seconds`` None) or finished, on stderr when shown."""
    if _show():
        msg = f"[{name}] started" if seconds is None else f"[{name}] done in {seconds:.1f}s"
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def gather(client, futures: list, desc: str, bar: bool = False, item: str | None = None) -> list:
    """Wait for ``futures`` (in order); on the first failure cancel the rest and re-raise
    the task's own exception (e.g. a DataError naming the file). A task that kept
    killing its worker process (Dask's KilledWorker) becomes a ClusterError naming
    ``desc`` and the task's position in ``futures`` (``item`` names what positions
    are, e.g. ``"bucket"``). ``bar=True`` shows a progress bar (for the long,
    bucket-by-bucket steps)."""
    if not futures:
        return []
    t0 = time.perf_counter()
    show, bar = bar, None
    if show and _show():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
            console=None,
        )
        bar.start()
        task = bar.add_task(desc, total=len(futures))
    try:
        for fut in as_completed(futures):
            if fut.status == "error":
                try:
                    fut.result()  # raises the task's own exception, with its traceback
                except KilledWorker as e:
                    raise _killed(desc, futures, fut, e, item) from e
                finally:
                    # pending tasks never start; running ones finish on their own (callers
                    # clean staging with retries, see bigseg.io.commit.remove_tree)
                    client.cancel([f for f in futures if f is not fut])
            if bar is not None:
                bar.advance(task)
        results = client.gather(futures)
    finally:
        if bar is not None:
            bar.stop()
    log.info("%s: %d tasks in %.2fs", desc, len(futures), time.perf_counter() - t0)
    return results


def _killed(desc: str, futures: list, fut, e: KilledWorker, item: str | None) -> ClusterError:
    i = next(j for j, f in enumerate(futures) if f.key == fut.key)
    which = (
        f"{item} {i}"
        if item
        else (
            f"task {i} of {len(futures)} (numbered from 0 in submission order: the bucket "
            f"number in per-bucket steps)"
        )
    )
    culprit = "it" if e.task == fut.key else f"the task it depends on, {e.task!r},"
    return ClusterError(
        f"{desc}: {which} failed: {culprit} crashed the worker process running it "
        f"{e.allowed_failures + 1} times, so Dask gave up on it "
        f"(distributed.scheduler.allowed-failures = {e.allowed_failures}; last worker "
        f"{e.last_worker.address}). A worker process dies like this when it runs out of "
        f"memory or native code crashes: see the worker logs."
    )
