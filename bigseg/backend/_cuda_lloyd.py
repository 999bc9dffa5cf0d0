"""The numba.cuda source of the fused K-Means pass (:mod:`bigseg.backend.kernels` loads it
on first use, so numba's CUDA target is imported only where the kernel runs). ``cuda`` is
a module global so that numba's CUDA simulator can stand in for it in tests."""

import numpy as np

# numba-cuda (0.30 and earlier) registers an overload for ``np.row_stack`` when numba.cuda is
# imported; NumPy 2.4 removed that alias of ``vstack``, so the import raised AttributeError
# and the fused kernel never ran on a GPU. The alias names the same function.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import cuda, float32, float64, int64  # noqa: E402 - after the alias above

from bigseg.backend.kernels import MAX_D


@cuda.jit
def lloyd(X, C, c2, sums, counts, part, labels, with_labels, with_x2, rows_per_block):
    k = C.shape[0]
    d = C.shape[1]
    kd = k * d
    # shared, one float32 array: centres (kd) | |c|^2 (k) | sums (kd) | counts (k)
    sh = cuda.shared.array(0, dtype=float32)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for i in range(tid, kd, nt):
        sh[i] = C[i // d, i % d]
        sh[kd + k + i] = float32(0.0)
    for j in range(tid, k, nt):
        sh[kd + j] = c2[j]
        sh[2 * kd + k + j] = float32(0.0)
    cuda.syncthreads()
    xr = cuda.local.array(MAX_D, dtype=float32)
    best_sum = float64(0.0)
    x2_sum = float64(0.0)
    start = cuda.blockIdx.x * rows_per_block
    stop = min(start + rows_per_block, X.shape[0])
    for r in range(start + tid, stop, nt):
        for t in range(d):
            xr[t] = X[r, t]
        bj = 0
        best = float32(0.0)
        for j in range(k):  # the first of equal distances wins, as on the CPU
            dot = float32(0.0)
            for t in range(d):
                dot += xr[t] * sh[j * d + t]
            v = sh[kd + j] - float32(2.0) * dot
            if j == 0 or v < best:
                best = v
                bj = j
        best_sum += float64(best)
        if with_x2:
            q = float32(0.0)
            for t in range(d):
                q += xr[t] * xr[t]
            x2_sum += float64(q)
        for t in range(d):
            cuda.atomic.add(sh, kd + k + bj * d + t, xr[t])
        cuda.atomic.add(sh, 2 * kd + k + bj, float32(1.0))
        if with_labels:
            labels[r] = bj
    cuda.atomic.add(part, 0, best_sum)
    cuda.atomic.add(part, 1, x2_sum)
    cuda.syncthreads()
    for i in range(tid, kd, nt):
        cuda.atomic.add(sums, (i // d, i % d), float64(sh[kd + k + i]))
    for j in range(tid, k, nt):
        cuda.atomic.add(counts, j, int64(sh[2 * kd + k + j]))
