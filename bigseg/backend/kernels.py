"""Fused GPU kernels: one pass over the data where the CuPy array form needs several.

The K-Means (and SOM) pass in :func:`bigseg.segment.kmeans.assign_accumulate` written with
CuPy array operations is a GEMM for the products, an argmin, a one-hot matrix and a second
GEMM for the per-cluster sums, chunk by chunk: X is read three times, (rows, k)
intermediates are written and read back, and every chunk costs about ten kernel launches.
:func:`lloyd_pass` does the same pass as **one** kernel launch (numba.cuda, on CuPy device
arrays): each thread takes rows, keeps the row in registers, finds the nearest centre
among the centres held in shared memory, and adds the row into per-block cluster sums in
shared memory (``float32``, flushed to ``float64`` device totals once per block of 4,096
rows). X is read once; the issue's target for the GPU pass is three times that read.

The kernel runs where numba's CUDA target works (the ``numba-cuda`` package, a CUDA driver
and NVVM). Where it does not, or when k and d exceed the shared memory (or d > 64),
:func:`lloyd_pass` returns None and the caller uses the CuPy form: same results, up to
float32 rounding of the products. Its logic is tested on any machine with numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, NumPy arrays; ``tests/test_gpu_kernels.py``).
"""

from __future__ import annotations

import functools
import logging
import warnings

log = logging.getLogger(__name__)

#: the row is kept in a per-thread array of this many values
MAX_D = 64
THREADS = 256
#: rows a block of threads sums in shared float32 before one flush to the float64 totals
ROWS_PER_BLOCK = THREADS * 16
#: the static shared-memory limit per block without opting in to more
SHARED_BYTES = 48 * 1024


def shared_bytes(k: int, d: int) -> int:
    """Shared memory the pass needs: centres, their squared norms, sums and counts."""
    return 4 * (2 * k * d + 2 * k)


def fits(k: int, d: int) -> bool:
    """True when ``k`` centres of ``d`` features fit the fused kernel."""
    return 1 <= d <= MAX_D and k >= 1 and shared_bytes(k, d) <= SHARED_BYTES


@functools.lru_cache(maxsize=1)
def _lloyd_kernel():
    from bigseg.backend import _cuda_lloyd  # noqa: PLC0415 - numba.cuda only when used

    return _cuda_lloyd.lloyd


def launch_lloyd(X, C, xp, with_labels: bool = False, inertia: bool = True):
    """Run the fused pass over ``X`` (rows, d) float32 with centres ``C`` (k, d), arrays of
    the array module ``xp`` (CuPy on a GPU; NumPy under numba's CUDA simulator).

    Returns ``(sums (k, d) float64, counts (k,) int64, inertia or None, labels int32 or
    None)``, the first two and the labels as ``xp`` arrays, like
    :func:`bigseg.segment.kmeans.assign_accumulate`.
    """
    n, d = X.shape
    k = C.shape[0]
    if not fits(k, d):
        raise ValueError(
            f"k={k}, d={d} do not fit the fused kernel (d <= {MAX_D}, "
            f"{shared_bytes(k, d)} > {SHARED_BYTES} shared bytes)"
        )
    C32 = xp.ascontiguousarray(xp.asarray(C, dtype=xp.float32))
    c2 = (C32 * C32).sum(axis=1)
    sums = xp.zeros((k, d), dtype=xp.float64)
    counts = xp.zeros(k, dtype=xp.int64)
    part = xp.zeros(2, dtype=xp.float64)
    labels = xp.zeros(max(n, 1) if with_labels else 1, dtype=xp.int32)
    if n:
        grid = -(-n // ROWS_PER_BLOCK)
        with warnings.catch_warnings():
            # numba warns when the grid is small (a few blocks of 4,096 rows): true for small
            # inputs and not actionable by the user, who would see it once per worker.
            warnings.filterwarnings("ignore", message=".*under-utilization")
            _lloyd_kernel()[grid, THREADS, 0, shared_bytes(k, d)](
                xp.ascontiguousarray(X),
                C32,
                c2,
                sums,
                counts,
                part,
                labels,
                bool(with_labels),
                bool(inertia),
                ROWS_PER_BLOCK,
            )
    total = None
    if inertia:
        p = part.get() if hasattr(part, "get") else part  # one sync: two numbers
        total = max(float(p[0] + p[1]), 0.0)
    return sums, counts, total, (labels[:n] if with_labels else None)


_broken: list[str] = []


def lloyd_pass(X, C, xp, with_labels: bool = False, inertia: bool = True):
    """:func:`launch_lloyd` on a GPU when the fused kernel can run there, else None (the
    caller falls back to the CuPy array form). A failure to compile or launch is logged
    once and turns the kernel off for this process."""
    if _broken or X.ndim != 2 or not fits(C.shape[0], X.shape[1]):
        return None
    if X.dtype != xp.float32:
        X = X.astype(xp.float32)
    try:
        return launch_lloyd(X, C, xp, with_labels=with_labels, inertia=inertia)
    except Exception as e:  # noqa: BLE001 - no numba CUDA target, NVVM or driver: fall back
        _broken.append(f"{type(e).__name__}: {e}")
        log.warning("fused GPU K-Means kernel unavailable (%s); using the CuPy form", _broken[0])
        return None
