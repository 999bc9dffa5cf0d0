"""Distributed K-Means: Lloyd over blocks resident where they live, one small reduction
per iteration.

Each iteration ships the ``k x d`` centres to every block; the block returns its
per-cluster sums, counts and inertia (a fused assign-and-accumulate kernel written once
against the backend's array module: NumPy on CPU, CuPy on GPU); the client adds them up
in block order and moves the centres. Initialisation is k-means++ on a sample, refined
by Lloyd on the sample, best of ``n_init``.
"""

from __future__ import annotations

import logging
import threading
import time

import numba
import numpy as np

from bigseg.backend import resolve
from bigseg.segment.blocks import Blocks, as_blocks, block_shape, sample_block

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


@numba.njit(cache=True, nogil=True, fastmath=True)
def _argmin_accumulate(X, D, c2, sums32, counts, labels, offset, with_labels):  # pragma: no cover
    """Nearest centre from the GEMM products ``D = X @ C.T``, then per-cluster sums and
    counts, in one pass over the chunk (compiled). ``sums32`` is ``(4, k, d)``: rows go
    to four interleaved accumulators so consecutive rows of one cluster do not wait on
    each other's stores (about 8% faster than one)."""
    n, d = X.shape
    k = D.shape[1]
    inertia = 0.0
    for i in range(n):
        bj = 0
        best = c2[0] - 2.0 * D[i, 0]
        for j in range(1, k):
            v = c2[j] - 2.0 * D[i, j]
            if v < best:
                best = v
                bj = j
        x2 = np.float32(0.0)
        r = i & 3
        for t in range(d):
            x2 += X[i, t] * X[i, t]
            sums32[r, bj, t] += X[i, t]
        inertia += max(best + x2, 0.0)
        counts[bj] += 1
        if with_labels:
            labels[offset + i] = bj
    return inertia


_BUFFERS = threading.local()


def _buffer(name: str, shape: tuple) -> np.ndarray:
    """A float32 scratch array reused by this thread across calls (same shape)."""
    cache = getattr(_BUFFERS, "arrays", None)
    if cache is None:
        cache = _BUFFERS.arrays = {}
    a = cache.get(name)
    if a is None or a.shape != tuple(shape):
        a = cache[name] = np.empty(shape, dtype=np.float32)
    return a


def assign_accumulate(X, C, xp, with_labels: bool = False):
    """One Lloyd pass over a block: per-cluster sums and counts, inertia (and labels).

    The same algorithm on both devices: distances as ``|c|^2 - 2 x.c`` (+ ``|x|^2`` for
    the inertia), nearest centre, per-cluster sums, chunk by chunk so the product matrix
    stays small. On the CPU the products are a BLAS GEMM and a compiled numba loop does
    the nearest centre and the sums in one pass (2x faster than a fused pure-numba loop,
    4x faster than NumPy); with CuPy (``xp``) it is GEMM + argmin + a one-hot GEMM.
    """
    if xp is np:  # BLAS for the products, a compiled loop for the rest (one chunk at a time)
        X = np.ascontiguousarray(X, dtype=np.float32)
        C32 = np.ascontiguousarray(C, dtype=np.float32)
        c2 = (C32 * C32).sum(axis=1)
        sums = np.zeros(C32.shape, dtype=np.float64)
        counts = np.zeros(C32.shape[0], dtype=np.int64)
        labels = np.empty(X.shape[0] if with_labels else 0, dtype=np.int32)
        inertia = 0.0
        CT = np.ascontiguousarray(C32.T)
        step = _CHUNK // 2
        # buffers reused across chunks: Dask workers return freed memory to the OS eagerly
        # (MALLOC_TRIM_THRESHOLD_), so a fresh 1 MB array per chunk costs page faults
        D = _buffer("D", (step, C32.shape[0]))
        s32 = _buffer("s32", (4, *C32.shape))
        for s in range(0, X.shape[0], step):
            x = X[s : s + step]
            d = D[: x.shape[0]]
            np.matmul(x, CT, out=d)
            s32.fill(0)
            inertia += _argmin_accumulate(x, d, c2, s32, counts, labels, s, with_labels)
            sums += s32.sum(axis=0)
        return sums, counts, float(inertia), (labels if with_labels else None)
    k, d = C.shape
    C = xp.asarray(C, dtype=X.dtype)
    c2 = (C * C).sum(axis=1)
    sums = xp.zeros((k, d), dtype=xp.float64)
    counts = xp.zeros(k, dtype=xp.int64)
    inertia = 0.0
    labels = xp.empty(X.shape[0], dtype=xp.int32) if with_labels else None
    eye = xp.eye(k, dtype=X.dtype)
    for s in range(0, X.shape[0], _CHUNK):
        x = X[s : s + _CHUNK]
        dist = c2[None, :] - 2.0 * (x @ C.T)
        lab = xp.argmin(dist, axis=1)
        x2 = (x * x).sum(axis=1)
        best = xp.take_along_axis(dist, lab[:, None], axis=1)[:, 0] + x2
        inertia += float(xp.maximum(best, 0).sum(dtype=xp.float64))
        sums += (eye[lab].T @ x).astype(xp.float64)
        counts += xp.bincount(lab, minlength=k)
        if with_labels:
            labels[s : s + _CHUNK] = lab
    return sums, counts, inertia, labels


def _block_stats(block, centers: np.ndarray, device: str):
    be = resolve(device)
    X = be.asarray(block)
    sums, counts, inertia, _ = assign_accumulate(X, centers, be.xp)
    return be.to_numpy(sums), be.to_numpy(counts), inertia


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


class KMeans:
    """K-Means clustering with the scikit-learn contract, over local or Dask data.

    Parameters
    ----------
    n_clusters : int, default 8
    init : "k-means++" or array (n_clusters, n_features), default "k-means++"
        Given centres (e.g. the previous run's, for stable segments) start Lloyd directly.
    n_init : int, default 3
        Initialisations tried on the sample; the best (lowest sample inertia) seeds Lloyd
        on the full data.
    max_iter : int, default 100
    tol : float, default 1e-4
        Stop when the squared centre shift is below ``tol`` times the mean variance of
        the features (scikit-learn's rule).
    random_state : int, default 0
    sample_size : int, default 100_000
        Rows used for initialisation.
    device : {"auto", "cpu", "gpu"}, default "auto"

    Attributes
    ----------
    cluster_centers_ : ndarray (n_clusters, n_features)
    inertia_ : float
    n_iter_ : int
    iter_seconds_ : list of float, wall time of each Lloyd iteration (for benchmarks)
    labels_ : ndarray, only after ``fit`` on in-memory input
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((50, 2)), np.ones((50, 2)) * 10].astype("float32")
    >>> km = KMeans(n_clusters=2, device="cpu").fit(X)
    >>> sorted(np.bincount(km.labels_).tolist())
    [50, 50]
    """

    def __init__(self, n_clusters: int = 8, *, init="k-means++", n_init: int = 3,
                 max_iter: int = 100, tol: float = 1e-4, random_state: int = 0,
                 sample_size: int = 100_000, device: str = "auto"):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.sample_size = sample_size
        self.device = device

    # -- fitting --------------------------------------------------------------------
    def fit(self, X, y=None) -> KMeans:
        blocks, kind = as_blocks(X)
        be = resolve(self.device)
        shapes = blocks.map(block_shape)
        n = sum(s[0] for s in shapes)
        d = shapes[0][1] if shapes else 0
        if n < self.n_clusters:
            raise ValueError(f"n_samples={n} should be >= n_clusters={self.n_clusters}.")
        self.n_features_in_ = d
        s1, s2, cnt = (sum(v) for v in zip(*blocks.map(_block_moments), strict=True))
        mean_var = max(s2 / cnt - (s1 / cnt) ** 2, 1e-12)
        if isinstance(self.init, str):
            C = self._init_centers(blocks, n)
        else:
            C = np.asarray(self.init, dtype=np.float32)
            if C.shape != (self.n_clusters, d):
                raise ValueError(f"init has shape {C.shape}; expected ({self.n_clusters}, {d})")
        tol = self.tol * mean_var
        it = 0
        self.iter_seconds_ = []
        for it in range(1, self.max_iter + 1):  # noqa: B007 - n_iter_ below
            t0 = time.perf_counter()
            stats = blocks.map(_block_stats, C, be.name)
            sums = np.sum([s[0] for s in stats], axis=0)
            counts = np.sum([s[1] for s in stats], axis=0)
            new = C.astype(np.float64).copy()
            nz = counts > 0
            new[nz] = sums[nz] / counts[nz, None]  # empty clusters keep their centre
            shift = float(((new - C) ** 2).sum())
            C = new.astype(np.float32)
            self.iter_seconds_.append(time.perf_counter() - t0)
            if shift <= tol:
                break
        self.cluster_centers_ = C
        self.n_iter_ = it
        # inertia for the final centres
        self.inertia_ = float(sum(s[2] for s in blocks.map(_block_stats, C, be.name)))
        if kind == "local":
            self.labels_ = np.concatenate(blocks.map(_block_labels, C, be.name))
        log.info("kmeans k=%d: %d iterations, inertia %.4g", self.n_clusters, it, self.inertia_)
        return self

    def _init_centers(self, blocks: Blocks, n: int) -> np.ndarray:
        from sklearn.cluster import KMeans as SkKMeans

        frac = min(1.0, self.sample_size / n)
        sample = np.concatenate(blocks.map_indexed(sample_block, frac, self.random_state))
        sample = sample.astype(np.float32, copy=False)
        km = SkKMeans(self.n_clusters, init="k-means++", n_init=self.n_init, max_iter=50,
                      random_state=self.random_state).fit(sample)
        return km.cluster_centers_.astype(np.float32)

    # -- using a fitted model -------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "cluster_centers_"):
            raise ValueError("this KMeans is not fitted yet; call fit first")

    def predict(self, X):
        """Nearest centre of each row: NumPy labels for local input, else a list of
        per-block label arrays."""
        self._check_fitted()
        blocks, kind = as_blocks(X)
        labs = blocks.map(_block_labels, self.cluster_centers_, resolve(self.device).name)
        return np.concatenate(labs) if labs else np.zeros(0, np.int32)

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    def transform(self, X) -> np.ndarray:
        """Distances of each row to every centre."""
        self._check_fitted()
        blocks, _ = as_blocks(X)
        return np.concatenate(
            blocks.map(_block_distances, self.cluster_centers_, resolve(self.device).name)
        )

    def score(self, X, y=None) -> float:
        """Opposite of the inertia of ``X`` (scikit-learn convention)."""
        self._check_fitted()
        blocks, _ = as_blocks(X)
        stats = blocks.map(_block_stats, self.cluster_centers_, resolve(self.device).name)
        return -float(sum(s[2] for s in stats))
