"""The Lloyd pass shared by the K-Means family: nearest centre, per-cluster sums and
counts and inertia over one block, on NumPy (BLAS + a compiled numba loop) or CuPy, and
the per-block tasks built on it. No scikit-learn here: a worker assigning customers to
fitted centres needs only this (:mod:`bigseg.segment.assign`); the estimators' use of
fitted centres is :class:`bigseg.segment.centers._CentersModel`.
"""

from __future__ import annotations

import numba
import numpy as np

from bigseg.backend import kernels, resolve

_CHUNK = 1 << 16
#: rows per chunk of the CPU pass: the chunk (128 KiB at d = 16) and its products stay in L2
_STEP = 2048
#: ``init`` strings accepted by :class:`KMeans` and :class:`MiniBatchKMeans`
KMEANS_INITS = ("k-means++", "k-means||")
MINIBATCH_INITS = ("k-means++",)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _lloyd_pass(X, CT, c2, step, labels, with_labels, with_x2):  # pragma: no cover
    """One Lloyd pass over ``X`` in one compiled call: chunk by chunk (``step`` rows, so
    the chunk and its products stay in cache), the products ``X @ C.T`` by BLAS GEMM,
    then the nearest centre and the per-cluster sums and counts in one loop over the
    chunk. Sums go to four interleaved float32 accumulators per chunk (consecutive rows
    of one cluster do not wait on each other's stores), added into float64 per chunk.
    Returns ``sum(min_j |c_j|^2 - 2 x.c_j)``, plus ``sum |x|^2`` when ``with_x2`` (their
    sum is the inertia; the Lloyd loop needs neither)."""
    n, d = X.shape
    k = CT.shape[1]
    sums = np.zeros((k, d), np.float64)
    counts = np.zeros(k, np.int64)
    s32 = np.empty((4, k, d), np.float32)
    D = np.empty((step, k), np.float32)
    part = 0.0
    x2 = 0.0
    for s in range(0, n, step):
        e = min(s + step, n)
        x = X[s:e]
        m = e - s
        if m == step:
            np.dot(x, CT, D)
            Dm = D
        else:
            Dm = np.dot(x, CT)
        s32[:] = 0
        for i in range(m):
            bj = 0
            best = c2[0] - 2.0 * Dm[i, 0]
            for j in range(1, k):
                v = c2[j] - 2.0 * Dm[i, j]
                if v < best:
                    best = v
                    bj = j
            r = i & 3
            for t in range(d):
                s32[r, bj, t] += x[i, t]
            part += best
            counts[bj] += 1
            if with_labels:
                labels[s + i] = bj
        if with_x2:
            for i in range(m):
                q = np.float32(0.0)
                for t in range(d):
                    q += x[i, t] * x[i, t]
                x2 += q
        for r in range(4):
            for j in range(k):
                for t in range(d):
                    sums[j, t] += s32[r, j, t]
    return sums, counts, part, x2


def assign_accumulate(
    X, C, xp, with_labels: bool = False, inertia: bool = True, fused: bool = True
):
    """One Lloyd pass over a block: per-cluster sums and counts, inertia (and labels).

    The same algorithm on both devices: distances as ``|c|^2 - 2 x.c`` (+ ``|x|^2`` for
    the inertia), nearest centre, per-cluster sums, chunk by chunk so the product matrix
    stays small. On the CPU the products are a BLAS GEMM and a compiled numba loop does
    the nearest centre and the sums, the whole pass in one compiled call
    (:func:`_lloyd_pass`); with CuPy (``xp``) it is GEMM + argmin + a one-hot GEMM.
    ``inertia=False`` skips the ``|x|^2`` terms (the Lloyd loop does not need them) and
    returns None for the inertia. On the GPU, the pass is one fused kernel launch
    (:func:`bigseg.backend.kernels.lloyd_pass`) where it can run, else (or with
    ``fused=False``) the CuPy array form.
    """
    if xp is np:  # BLAS for the products, a compiled loop for the rest, in one call
        X = np.ascontiguousarray(X, dtype=np.float32)
        C32 = np.ascontiguousarray(C, dtype=np.float32)
        c2 = (C32 * C32).sum(axis=1)
        labels = np.empty(X.shape[0] if with_labels else 0, dtype=np.int32)
        if X.shape[0] == 0:
            return (
                np.zeros(C32.shape),
                np.zeros(C32.shape[0], dtype=np.int64),
                0.0 if inertia else None,
                labels if with_labels else None,
            )
        sums, counts, part, x2 = _lloyd_pass(
            X, np.ascontiguousarray(C32.T), c2, _STEP, labels, with_labels, inertia
        )
        total = max(float(part + x2), 0.0) if inertia else None
        return sums, counts, total, (labels if with_labels else None)
    if fused:
        out = kernels.lloyd_pass(X, C, xp, with_labels=with_labels, inertia=inertia)
        if out is not None:
            return out
    k, d = C.shape
    C = xp.asarray(C, dtype=X.dtype)
    c2 = (C * C).sum(axis=1)
    sums = xp.zeros((k, d), dtype=xp.float64)
    counts = xp.zeros(k, dtype=xp.int64)
    total = xp.zeros((), dtype=xp.float64)  # stays on the device: one sync at the end
    labels = xp.empty(X.shape[0], dtype=xp.int32) if with_labels else None
    eye = xp.eye(k, dtype=X.dtype)
    for s in range(0, X.shape[0], _CHUNK):
        x = X[s : s + _CHUNK]
        dist = c2[None, :] - 2.0 * (x @ C.T)
        lab = xp.argmin(dist, axis=1)
        if inertia:
            best = xp.take_along_axis(dist, lab[:, None], axis=1)[:, 0] + (x * x).sum(axis=1)
            total += xp.maximum(best, 0).sum(dtype=xp.float64)
        sums += (eye[lab].T @ x).astype(xp.float64)
        counts += xp.bincount(lab, minlength=k)
        if with_labels:
            labels[s : s + _CHUNK] = lab
    return sums, counts, (float(total) if inertia else None), labels


def _block_stats(block, centers: np.ndarray, device: str, inertia: bool = True):
    be = resolve(device)
    X = be.asarray(block)
    sums, counts, total, _ = assign_accumulate(X, centers, be.xp, inertia=inertia)
    return be.to_numpy(sums), be.to_numpy(counts), total


def _block_labels(block, centers: np.ndarray, device: str) -> np.ndarray:
    be = resolve(device)
    _, _, _, lab = assign_accumulate(be.asarray(block), centers, be.xp, with_labels=True)
    return be.to_numpy(lab)


def _block_distances(block, centers: np.ndarray, device: str) -> np.ndarray:
    be = resolve(device)
    xp, X = be.xp, be.asarray(block)
    C = xp.asarray(centers, dtype=X.dtype)
    d2 = (X * X).sum(1)[:, None] - 2.0 * (X @ C.T) + (C * C).sum(1)[None, :]
    return be.to_numpy(xp.sqrt(xp.maximum(d2, 0)))


def _block_moments(block) -> tuple[float, float, int]:
    b = block.astype("float64")  # NumPy or CuPy alike; only three scalars come back
    return float(b.sum()), float((b * b).sum()), int(b.size)


def _check_init_name(init, allowed: tuple[str, ...]) -> None:
    """ValueError naming the allowed values when ``init`` is a string not among them."""
    if isinstance(init, str) and init not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ValueError(
            f"init must be one of {names} or an array of shape "
            f"(n_clusters, n_features); got {init!r}"
        )


def _init_array(init, k: int, d: int) -> np.ndarray:
    C = np.asarray(init, dtype=np.float32)
    if C.shape != (k, d):
        raise ValueError(f"init has shape {C.shape}; expected ({k}, {d})")
    return C
