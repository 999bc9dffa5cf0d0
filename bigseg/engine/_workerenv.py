"""The environment of the worker processes that bigseg spawns itself (local clusters).

Each variable goes in Dask's ``distributed.nanny.pre-spawn-environ``, which a Nanny sets
before it spawns its worker process: glibc and NumPy read these once, at start. A value
already in the Dask config wins, and so (by Dask's rule) does one already in the
environment. Workers of the other cluster types get them from their own environment
(docs/operations.md, "Worker environment on other cluster types").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask

_PREFIX = "distributed.nanny.pre-spawn-environ."

#: glibc's mmap threshold. Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_`` set (to
#: hand freed memory back to the OS), and setting any such variable freezes glibc's
#: adaptive mmap threshold at 128 KiB: every larger array is then a fresh mmap,
#: page-faulted in on first touch and unmapped when freed. A bucket's features took 1.5 s
#: instead of 0.9 s that way (1M customers, measured); 32 MiB (glibc's own adaptive
#: ceiling) brings it back to 1.0 s while the trim threshold still returns the heap's
#: free top.
WORKER_MMAP_THRESHOLD = 32 * 2**20

#: NumPy advises transparent huge pages for every array of 4 MiB or more. On a VM whose
#: host takes freed guest memory back (free page reporting, as on the 2-core benchmark
#: machine) each fresh 2 MiB page then costs the host ~10 ms to supply again: 250 MB of
#: new array took 1.1-1.9 s with the advice, 0.08 s without it. The workers allocate and
#: free bucket-sized arrays in every task, so a whole 1M-customer run took 32.9 s with
#: the advice and 28.5-30.8 s without (2 runs each); where the host still held the
#: pages, 300k customers took 12.9 s with it and 13.3 s without (benchmarks/HISTORY.md,
#: issue 20, ninth step). bigseg leaves the advice alone in its own process (the
#: client's and scheduler's): switching it off there as well was within the noise
#: (300k, 3 runs each; 1M 30.3 -> 29.6 s, 2 each).
#:
#: Arrow's memory pool: the system allocator (glibc, with the thresholds above) rather
#: than the wheels' default, mimalloc, or jemalloc. On the same VM reading, splitting and
#: merging Parquet with mimalloc took 3.7 s of ingest at 300k customers against 2.6 s with
#: jemalloc (3 runs each); the system pool then matched jemalloc at 300k (ingest 2.55-2.67
#: against 2.51-2.84 s, 3 runs each) and beat it at 1M: ingest 6.6-6.9 against 7.9 s (2
#: each), the whole run 29.2-30.2 against 30.2-34.3 s (4 each; benchmarks/HISTORY.md,
#: issue 20, tenth step).
WORKER_ENV: dict[str, Any] = {
    "MALLOC_MMAP_THRESHOLD_": WORKER_MMAP_THRESHOLD,
    "NUMPY_MADVISE_HUGEPAGE": "0",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
}


def worker_environ() -> dict[str, Any]:
    """Dask config for spawning local workers: :data:`WORKER_ENV`, less what is set."""
    return {
        _PREFIX + name: value
        for name, value in WORKER_ENV.items()
        if dask.config.get(_PREFIX + name, None) is None
    }


def spawning(factory: Callable[[], Any]) -> Callable[[], Any]:
    """``factory`` run with :func:`worker_environ` in the Dask config, which each Nanny
    reads as it is created."""

    def start():
        with dask.config.set(worker_environ()):
            return factory()

    return start
