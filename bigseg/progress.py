"""Waiting on Dask futures with a progress bar (rich) and clean failure.

Library code calls :func:`gather`; the bar is shown only when the CLI turned it on
(``set_enabled(True)``) and stderr is a terminal or ``BIGSEG_PROGRESS=1``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from distributed import as_completed

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


def gather(client, futures: list, desc: str, bar: bool = False) -> list:
    """Wait for ``futures`` (in order); on the first failure cancel the rest and re-raise
    the task's own exception (e.g. a DataError naming the file). ``bar=True`` shows a
    progress bar (for the long, bucket-by-bucket steps)."""
    if not futures:
        return []
    t0 = time.perf_counter()
    show, bar = bar, None
    if show and _show():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), transient=False, console=None,
        )
        bar.start()
        task = bar.add_task(desc, total=len(futures))
    try:
        for fut in as_completed(futures):
            if fut.status == "error":
                try:
                    fut.result()  # raises the task's own exception, with its traceback
                finally:
                    # pending tasks never start; running ones finish on their own (callers
                    # clean staging with retries, see store.publish.remove_tree)
                    client.cancel([f for f in futures if f is not fut])
            if bar is not None:
                bar.advance(task)
        results = client.gather(futures)
    finally:
        if bar is not None:
            bar.stop()
    log.info("%s: %d tasks in %.2fs", desc, len(futures), time.perf_counter() - t0)
    return results

