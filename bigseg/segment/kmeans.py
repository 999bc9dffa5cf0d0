"""Distributed K-Means: Lloyd over blocks resident where they live, one small reduction
per iteration.

Each iteration ships the ``k x d`` centres to every block; the block returns its
per-cluster sums, counts and inertia (a fused assign-and-accumulate kernel written once
against the backend's array module: NumPy on CPU, CuPy on GPU); the client adds them up
in block order and moves the centres. Initialisation is k-means++ on a sample, refined
by Lloyd on the sample, best of ``n_init``; or k-means|| (Bahmani et al. 2012, "Scalable
K-Means++") over all the blocks: a few oversampling passes, then the weighted candidates
are reduced to ``k`` centres locally.

:class:`MiniBatchKMeans` is for data that does not fit in cluster memory: each step
computes only ``batch_blocks`` chunks of a lazy (not persisted) Dask collection from their
graph, e.g. re-reading Parquet, and gets back only per-cluster sums and counts; centres
move with a per-centre learning rate (Sculley 2010, in batch form).
"""

from __future__ import annotations

import logging
import time

import numba
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from bigseg.backend import kernels, resolve
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import Blocks, as_blocks, block_shape, sample_block

log = logging.getLogger(__name__)

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


def _block_row(block, index: int, want: int, row: int) -> np.ndarray | None:
    """Row ``row`` of block ``want`` as a ``(1, d)`` float32 NumPy array; None from every
    other block."""
    if index != want:
        return None
    r = block[row : row + 1]
    get = getattr(r, "get", None)
    return np.asarray(get() if callable(get) else r, dtype=np.float32)


def _block_oversample(
    block,
    index: int,
    candidates: np.ndarray,
    phi: float,
    ell: float,
    seed: int,
    round_: int,
    device: str,
) -> np.ndarray:
    """One k-means|| round on one block: keep each row independently with probability
    ``min(1, ell * d2 / phi)``, ``d2`` its squared distance to the nearest candidate.

    The uniform draws come from NumPy seeded by ``(seed, round_, index)`` only, so the
    rows kept do not depend on the worker, the number of workers or the device. Returns
    the kept rows as float32 NumPy (about ``ell * cost(block) / phi`` rows)."""
    be = resolve(device)
    xp, X = be.xp, be.asarray(block)
    C = xp.asarray(candidates, dtype=xp.float32)
    c2 = (C * C).sum(axis=1)
    n = X.shape[0]
    u = np.random.default_rng([seed, round_, index]).random(n)
    step = max(1024, (1 << 22) // max(C.shape[0], 1))  # product matrix at most 16 MB
    kept = []
    for s in range(0, n, step):
        x = X[s : s + step].astype(xp.float32, copy=False)
        d2 = ((x * x).sum(axis=1)[:, None] - 2.0 * (x @ C.T) + c2[None, :]).min(axis=1)
        d2 = xp.maximum(d2, 0)
        take = xp.asarray(u[s : s + step]) < xp.minimum(ell * d2 / phi, 1.0)
        if bool(take.any()):
            kept.append(be.to_numpy(x[take]))
    d = X.shape[1] if X.ndim == 2 else 0
    return np.concatenate(kept) if kept else np.zeros((0, d), np.float32)


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


class _CentersModel(ClusterMixin, BaseEstimator):
    """Use of fitted ``cluster_centers_``: nearest centre, distances, score."""

    def predict(self, X):
        """Nearest centre of each row, as NumPy labels (Dask input is gathered)."""
        check_fitted(self, "cluster_centers_")
        blocks, kind = as_blocks(X)
        labs = blocks.map(_block_labels, self.cluster_centers_, resolve(self.device).name)
        return np.concatenate(labs) if labs else np.zeros(0, np.int32)

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    def transform(self, X) -> np.ndarray:
        """Distances of each row to every centre."""
        check_fitted(self, "cluster_centers_")
        blocks, _ = as_blocks(X)
        return np.concatenate(
            blocks.map(_block_distances, self.cluster_centers_, resolve(self.device).name)
        )

    def score(self, X, y=None) -> float:
        """Opposite of the inertia of ``X`` (scikit-learn convention)."""
        check_fitted(self, "cluster_centers_")
        blocks, _ = as_blocks(X)
        stats = blocks.map(_block_stats, self.cluster_centers_, resolve(self.device).name)
        return -float(sum(s[2] for s in stats))


class KMeans(_CentersModel):
    """K-Means clustering with the scikit-learn contract, over local or Dask data.

    Parameters
    ----------
    n_clusters : int, default 8
    init : "k-means++", "k-means||" or array (n_clusters, n_features), default "k-means++"
        "k-means++": k-means++ on a sample of ``sample_size`` rows, refined by Lloyd on
        the sample. "k-means||": k-means|| over all the rows (Bahmani et al. 2012), see
        :meth:`_init_parallel`; costs ``2 * init_rounds + 2`` passes over the blocks, each
        as cheap as a Lloyd iteration, and holds only the candidates (about
        ``oversampling_factor * n_clusters * init_rounds`` rows) on the client. Given
        centres (e.g. the previous run's, for stable segments) start Lloyd directly.
    n_init : int, default 3
        Initialisations tried on the sample (k-means++) or on the weighted candidates
        (k-means||); the best (lowest inertia there) seeds Lloyd on the full data.
    max_iter : int, default 100
    tol : float, default 1e-4
        Stop when the squared centre shift is below ``tol`` times the mean variance of
        the features (scikit-learn's rule).
    random_state : int, default 0
    sample_size : int, default 100_000
        Rows used for the k-means++ initialisation.
    oversampling_factor : float, default 2.0
        k-means||: each round keeps about ``oversampling_factor * n_clusters`` rows.
    init_rounds : int, default 5
        k-means||: oversampling rounds.
    device : {"auto", "cpu", "gpu"}, default "auto"

    Attributes
    ----------
    cluster_centers_ : ndarray (n_clusters, n_features)
    inertia_ : float
    n_iter_ : int
    init_candidates_ : int, rows k-means|| reduced to the initial centres (k-means|| only)
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

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="k-means++",
        n_init: int = 3,
        max_iter: int = 100,
        tol: float = 1e-4,
        random_state: int = 0,
        sample_size: int = 100_000,
        oversampling_factor: float = 2.0,
        init_rounds: int = 5,
        device: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.sample_size = sample_size
        self.oversampling_factor = oversampling_factor
        self.init_rounds = init_rounds
        self.device = device

    # -- fitting --------------------------------------------------------------------
    def fit(self, X, y=None) -> KMeans:
        _check_init_name(self.init, KMEANS_INITS)
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
        if isinstance(self.init, str) and self.init == "k-means||":
            C = self._init_parallel(blocks, [s[0] for s in shapes], be.name)
        elif isinstance(self.init, str):
            C = self._init_centers(blocks, n)
        else:
            C = _init_array(self.init, self.n_clusters, d)
        tol = self.tol * mean_var
        it = 0
        self.iter_seconds_ = []
        for it in range(1, self.max_iter + 1):  # noqa: B007 - n_iter_ below
            t0 = time.perf_counter()
            stats = blocks.map(_block_stats, C, be.name, False)  # inertia: once, at the end
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
        km = SkKMeans(
            self.n_clusters,
            init="k-means++",
            n_init=self.n_init,
            max_iter=50,
            random_state=self.random_state,
        ).fit(sample)
        return km.cluster_centers_.astype(np.float32)

    def _init_parallel(self, blocks: Blocks, sizes: list[int], device: str) -> np.ndarray:
        """k-means|| (Bahmani et al. 2012, "Scalable K-Means++") over all the blocks.

        The first candidate is one row drawn from ``random_state`` by its global index.
        Each of ``init_rounds`` rounds is one pass where every block keeps each row with
        probability ``min(1, l * d2 / phi)`` (``l = oversampling_factor * n_clusters``,
        ``d2`` the row's squared distance to the nearest candidate, ``phi`` the total of
        ``d2`` from the pass before), seeded by ``(random_state, round, block index)`` so
        the candidates do not depend on the workers; then one pass with the fused Lloyd
        kernel gives the new ``phi`` and, after the last round, each candidate's weight
        (rows nearest to it). The weighted candidates are reduced to ``n_clusters``
        centres locally by weighted k-means++ and Lloyd (scikit-learn, best of
        ``n_init``). Memory on the client: the candidates, about ``l * init_rounds`` rows.
        """
        from sklearn.cluster import KMeans as SkKMeans

        if not self.oversampling_factor > 0 or self.init_rounds < 1:
            raise ValueError(
                "k-means|| needs oversampling_factor > 0 and init_rounds >= 1; "
                f"got {self.oversampling_factor!r} and {self.init_rounds!r}"
            )
        k, seed = self.n_clusters, self.random_state
        ell = float(self.oversampling_factor) * k
        n = sum(sizes)
        offsets = np.cumsum([0, *sizes])
        first = int(np.random.default_rng(seed).integers(n))
        b = int(np.searchsorted(offsets, first, side="right")) - 1
        rows = blocks.map_indexed(_block_row, b, first - int(offsets[b]))
        cand = next(r for r in rows if r is not None)
        stats = blocks.map(_block_stats, cand, device)
        phi = float(sum(s[2] for s in stats))
        for r in range(1, self.init_rounds + 1):
            if phi <= 0.0:
                break  # every row sits on a candidate
            new = blocks.map_indexed(_block_oversample, cand, phi, ell, seed, r, device)
            new = [a for a in new if len(a)]
            if new:
                cand = np.concatenate([cand, *new])
                stats = blocks.map(_block_stats, cand, device)
                phi = float(sum(s[2] for s in stats))
        if len(cand) < k:  # tiny or degenerate data: top up with a uniform sample
            extra = blocks.map_indexed(sample_block, min(1.0, 4.0 * k / n), seed)
            cand = np.concatenate([cand, *(e.astype(np.float32) for e in extra)])
            stats = blocks.map(_block_stats, cand, device)
        weights = np.sum([s[1] for s in stats], axis=0).astype(np.float64)
        self.init_candidates_ = int(len(cand))
        log.info("k-means|| k=%d: %d candidates, cost %.4g", k, len(cand), phi)
        km = SkKMeans(k, init="k-means++", n_init=self.n_init, max_iter=50, random_state=seed).fit(
            cand, sample_weight=weights
        )
        return km.cluster_centers_.astype(np.float32)


# -- mini-batch K-Means over chunks computed on demand ----------------------------------
def _lazy_rows(X):
    """A Dask array (one column chunk) for Dask input, None for anything else."""
    if type(X).__module__.split(".")[0] not in ("dask", "dask_expr"):
        return None
    if hasattr(X, "to_dask_array"):  # dataframe: partitions stay lazy, lengths unknown
        X = X.to_dask_array()
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got {X.ndim}-D")
    return X.rechunk({1: -1}) if X.numblocks[1] != 1 else X


def _chunk_stats(chunk, centers: np.ndarray, device: str, moments: bool = False):
    """:func:`_block_stats` of one chunk, plus the per-feature sums of squares when
    ``moments`` (for the feature variance); only ``k x d`` numbers come back."""
    sums, counts, inertia = _block_stats(chunk, centers, device)
    if not moments:
        return sums, counts, inertia, None
    be = resolve(device)
    X = be.asarray(chunk)
    return sums, counts, inertia, be.to_numpy((X * X).sum(axis=0, dtype=be.xp.float64))


def _chunk_sample(chunk, index: int, rows: int, seed: int) -> np.ndarray:
    """At most ``rows`` rows of one chunk, drawn reproducibly (:func:`sample_block`)."""
    n = chunk.shape[0]
    return sample_block(chunk, index, min(1.0, rows / max(n, 1)), seed)


def _windowed(submit, indices: list[int], window: int) -> list:
    """``submit(i)`` (a Future) for every index with at most ``window`` in flight;
    results in the order of ``indices``."""
    from distributed import as_completed

    results: dict[int, object] = {}
    todo = iter(range(len(indices)))
    where: dict[str, int] = {}
    pending = as_completed()

    def push():
        j = next(todo, None)
        if j is not None:
            f = submit(indices[j])
            where[f.key] = j
            pending.add(f)

    for _ in range(window):
        push()
    for f in pending:
        results[where.pop(f.key)] = f.result()
        push()
    return [results[j] for j in range(len(indices))]


class _Chunks:
    """The row chunks of an input, each materialised only when a call asks for it.

    ``kind`` is ``"local"`` (arrays in this process), ``"futures"`` (blocks resident on
    workers, a :class:`Blocks` with a client) or ``"lazy"`` (the delayed chunks of a Dask
    collection: every call computes its chunks from their graph on a worker of the
    current client, and only the function's result comes back)."""

    def __init__(self, X, block_rows: int):
        self.client = None
        lazy = None if isinstance(X, Blocks) else _lazy_rows(X)
        if lazy is not None:
            from distributed import get_client

            self.kind, self.client = "lazy", get_client()
            self.parts = list(lazy.to_delayed().ravel())
            self.n_features = int(lazy.shape[1])
            self.n_rows = None
            return
        blocks = X if isinstance(X, Blocks) else as_blocks(X, block_rows)[0]
        self.parts, self.client = list(blocks.parts), blocks.client
        self.kind = "local" if blocks.client is None else "futures"
        shapes = blocks.map(block_shape) if self.parts else [(0, 0)]
        self.n_features = shapes[0][1]
        self.n_rows = sum(s[0] for s in shapes)

    def __len__(self) -> int:
        return len(self.parts)

    def run(self, fn, indices, *args, window: int = 1, indexed: bool = False) -> list:
        """``[fn(chunk_i, *args) for i in indices]`` (``fn(chunk_i, i, *args)`` when
        ``indexed``), with at most ``window`` chunks being computed at a time."""
        idx = [int(i) for i in indices]

        def call(i):
            return (self.parts[i], i, *args) if indexed else (self.parts[i], *args)

        if self.kind == "local":
            return [fn(*call(i)) for i in idx]
        if self.kind == "futures":

            def submit(i):
                return self.client.submit(fn, *call(i), pure=False)
        else:
            import dask

            def submit(i):
                return self.client.compute(dask.delayed(fn, pure=False)(*call(i)))

        return _windowed(submit, idx, max(1, int(window)))


class MiniBatchKMeans(_CentersModel):
    """K-Means by mini-batches of chunks, for data that does not fit in cluster memory.

    Each step draws ``batch_blocks`` chunks of the input (reproducibly: the draw depends
    only on ``random_state`` and the step number), computes only those chunks on the
    cluster from their graph (a Dask array or dataframe given here is never persisted: a
    Parquet-backed frame is re-read chunk by chunk) and brings back their per-cluster
    sums ``S_j`` and counts ``c_j``. Each centre then moves with its own learning rate
    (Sculley 2010, in batch form)::

        C_j <- (n_j * C_j + S_j) / (n_j + c_j),    n_j <- n_j + c_j

    where ``n_j`` counts the rows assigned to centre ``j`` over all steps so far (a centre
    that gets no rows stays where it is). The statistics of a step are added up in chunk
    order, so the result does not depend on the number of workers. ``inertia_`` takes one
    more streaming pass over all the chunks with the final centres.

    Memory: a fit materialises at most ``batch_blocks`` chunks at a time (on the workers;
    only ``k x d`` statistics reach the client), plus the initialisation sample of at
    most ``sample_size`` rows on the client. In-memory NumPy input and resident
    :class:`Blocks` are accepted too (then the data is already in memory, and a step
    touches ``batch_blocks`` blocks).

    Parameters
    ----------
    n_clusters : int, default 8
    init : "k-means++" or array (n_clusters, n_features), default "k-means++"
        "k-means++": k-means++ (best of ``n_init``, refined by Lloyd) on a sample of at
        most ``sample_size`` rows drawn from ``init_blocks`` chunks.
    batch_blocks : int, default 4
        Chunks per step; bounds the memory a step needs.
    max_iter : int, default 100
        Steps (mini-batches), not passes over the data.
    tol : float, default 0.0
        Stop early once the squared centre shift of a step is at most ``tol`` times the
        mean feature variance (estimated from the initialisation sample, or from the
        first batch when ``init`` is an array). The per-centre rates shrink as the counts
        grow, so shifts fall even away from a fixed point; 0 (the default, as in
        scikit-learn) runs all ``max_iter`` steps.
    n_init : int, default 3
        k-means++ runs on the initialisation sample; the best is kept.
    init_blocks : int or None, default None
        Chunks the initialisation sample is drawn from; None means ``3 * batch_blocks``.
    sample_size : int, default 100_000
    block_rows : int, default 65_536
        Rows per block when in-memory input is split into blocks.
    random_state : int, default 0
    device : {"auto", "cpu", "gpu"}, default "auto"

    Attributes
    ----------
    cluster_centers_ : ndarray (n_clusters, n_features)
    inertia_ : float, over all the rows, for the final centres
    n_iter_ : int, steps run
    counts_ : ndarray (n_clusters,), rows assigned to each centre over all steps
    n_features_in_ : int
    labels_ : ndarray, only after ``fit`` on in-memory input

    Examples
    --------
    >>> import numpy as np
    >>> X = np.r_[np.zeros((50, 2)), np.ones((50, 2)) * 10].astype("float32")
    >>> km = MiniBatchKMeans(2, batch_blocks=2, block_rows=10, device="cpu").fit(X)
    >>> sorted(np.bincount(km.labels_).tolist())
    [50, 50]
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="k-means++",
        batch_blocks: int = 4,
        max_iter: int = 100,
        tol: float = 0.0,
        n_init: int = 3,
        init_blocks: int | None = None,
        sample_size: int = 100_000,
        block_rows: int = 65_536,
        random_state: int = 0,
        device: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.batch_blocks = batch_blocks
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.init_blocks = init_blocks
        self.sample_size = sample_size
        self.block_rows = block_rows
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None) -> MiniBatchKMeans:
        """Run ``max_iter`` mini-batch steps (fewer with ``tol``), then one streaming pass
        for ``inertia_``."""
        _check_init_name(self.init, MINIBATCH_INITS)
        if self.batch_blocks < 1:
            raise ValueError(f"batch_blocks must be >= 1; got {self.batch_blocks!r}")
        src = _Chunks(X, self.block_rows)
        if not len(src):
            raise ValueError("no data: the input has no chunks")
        be = resolve(self.device)
        k, d, seed = self.n_clusters, src.n_features, self.random_state
        if src.n_rows is not None and src.n_rows < k:
            raise ValueError(f"n_samples={src.n_rows} should be >= n_clusters={k}.")
        self.n_features_in_ = d
        window = min(self.batch_blocks, len(src))
        if isinstance(self.init, str):
            C, mean_var = self._init_sample(src, window)
        else:
            C, mean_var = _init_array(self.init, k, d), None
        C = C.astype(np.float64)
        seen = np.zeros(k, dtype=np.float64)
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007 - n_iter_ below
            rng = np.random.default_rng([seed, 1, it])
            idx = np.sort(rng.choice(len(src), size=window, replace=False))
            stats = src.run(
                _chunk_stats, idx, C.astype(np.float32), be.name, mean_var is None, window=window
            )
            sums = np.sum([s[0] for s in stats], axis=0)
            counts = np.sum([s[1] for s in stats], axis=0).astype(np.float64)
            if mean_var is None:
                rows = max(counts.sum(), 1.0)
                sq = np.sum([s[3] for s in stats], axis=0)
                mean_var = float(np.mean(sq / rows - (sums.sum(axis=0) / rows) ** 2))
            nz = counts > 0
            new = C.copy()
            new[nz] = (seen[nz, None] * C[nz] + sums[nz]) / (seen[nz] + counts[nz])[:, None]
            seen += counts
            shift = float(((new - C) ** 2).sum())
            C = new
            if self.tol > 0 and shift <= self.tol * max(mean_var, 1e-12):
                break
        C32 = C.astype(np.float32)
        self.cluster_centers_ = C32
        self.n_iter_ = it
        self.counts_ = seen.astype(np.int64)
        stats = src.run(_chunk_stats, range(len(src)), C32, be.name, window=window)
        self.inertia_ = float(sum(s[2] for s in stats))
        if src.kind == "local":
            self.labels_ = np.concatenate(src.run(_block_labels, range(len(src)), C32, be.name))
        log.info(
            "mini-batch kmeans k=%d: %d steps of %d chunks, inertia %.4g",
            k,
            it,
            window,
            self.inertia_,
        )
        return self

    def _init_sample(self, src: _Chunks, window: int) -> tuple[np.ndarray, float]:
        """k-means++ on at most ``sample_size`` rows from ``init_blocks`` chunks; also the
        mean feature variance of that sample."""
        from sklearn.cluster import KMeans as SkKMeans

        m = min(len(src), self.init_blocks or 3 * self.batch_blocks)
        idx = np.sort(
            np.random.default_rng([self.random_state, 0]).choice(len(src), m, replace=False)
        )
        per = -(-self.sample_size // m)
        parts = src.run(_chunk_sample, idx, per, self.random_state, window=window, indexed=True)
        sample = np.concatenate(parts).astype(np.float32, copy=False)
        if len(sample) < self.n_clusters:
            raise ValueError(
                f"the initialisation sample has {len(sample)} rows, fewer than "
                f"n_clusters={self.n_clusters}; raise init_blocks or sample_size"
            )
        km = SkKMeans(
            self.n_clusters,
            init="k-means++",
            n_init=self.n_init,
            max_iter=50,
            random_state=self.random_state,
        ).fit(sample)
        mean_var = float(sample.astype(np.float64).var(axis=0).mean())
        return km.cluster_centers_.astype(np.float32), mean_var

    # -- using a fitted model: Dask input stays lazy ----------------------------------
    def predict(self, X):
        """Nearest centre of each row: NumPy labels for in-memory input; for Dask input a
        lazy Dask array of labels, one chunk per input chunk (nothing is computed here)."""
        check_fitted(self, "cluster_centers_")
        lazy = _lazy_rows(X)
        if lazy is None:
            return super().predict(X)
        return lazy.map_blocks(
            _block_labels,
            centers=self.cluster_centers_,
            device=resolve(self.device).name,
            drop_axis=1,
            dtype=np.int32,
        )

    def transform(self, X):
        """Distances of each row to every centre (a lazy Dask array for Dask input)."""
        check_fitted(self, "cluster_centers_")
        lazy = _lazy_rows(X)
        if lazy is None:
            return super().transform(X)
        k = self.cluster_centers_.shape[0]
        return lazy.map_blocks(
            _block_distances,
            centers=self.cluster_centers_,
            device=resolve(self.device).name,
            chunks=(lazy.chunks[0], (k,)),
            dtype=np.result_type(lazy.dtype, np.float32),
        )

    def score(self, X, y=None) -> float:
        """Opposite of the inertia of ``X``, by one streaming pass of at most
        ``batch_blocks`` chunks at a time."""
        check_fitted(self, "cluster_centers_")
        src = _Chunks(X, self.block_rows)
        stats = src.run(
            _chunk_stats,
            range(len(src)),
            self.cluster_centers_,
            resolve(self.device).name,
            window=self.batch_blocks,
        )
        return -float(sum(s[2] for s in stats))
