"""Mini-batch K-Means over chunks computed on demand, for data that does not fit in
cluster memory: each step computes only ``batch_blocks`` chunks of a lazy (not persisted)
Dask collection from their graph, e.g. re-reading Parquet, and gets back only per-cluster
sums and counts; centres move with a per-centre learning rate (Sculley 2010, in batch
form).
"""

from __future__ import annotations

import logging

import numpy as np

from bigseg.backend import resolve
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import Blocks, as_blocks, block_shape, sample_block
from bigseg.segment.centers import _CentersModel
from bigseg.segment.lloyd import (
    MINIBATCH_INITS,
    _block_distances,
    _block_labels,
    _block_stats,
    _check_init_name,
    _init_array,
)

log = logging.getLogger(__name__)


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
