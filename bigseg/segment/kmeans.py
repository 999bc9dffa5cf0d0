"""Distributed K-Means: Lloyd over blocks resident where they live, one small reduction
per iteration.

Each iteration ships the ``k x d`` centres to every block; the block returns its
per-cluster sums, counts and inertia (a fused assign-and-accumulate kernel written once
against the backend's array module: NumPy on CPU, CuPy on GPU, in
:mod:`bigseg.segment.lloyd`); the client adds them up
in block order and moves the centres. Initialisation is k-means++ on a sample, refined
by Lloyd on the sample, best of ``n_init``; or k-means|| (Bahmani et al. 2012, "Scalable
K-Means++") over all the blocks: a few oversampling passes, then the weighted candidates
are reduced to ``k`` centres locally.

:class:`MiniBatchKMeans` (in :mod:`bigseg.segment.minibatch`, importable from here) is
for data that does not fit in cluster memory: each step
computes only ``batch_blocks`` chunks of a lazy (not persisted) Dask collection from their
graph, e.g. re-reading Parquet, and gets back only per-cluster sums and counts; centres
move with a per-centre learning rate (Sculley 2010, in batch form).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from bigseg.backend import resolve
from bigseg.segment.blocks import Blocks, as_blocks, block_shape, sample_block
from bigseg.segment.centers import _CentersModel
from bigseg.segment.lloyd import (
    _CHUNK,
    _STEP,
    KMEANS_INITS,
    MINIBATCH_INITS,
    _block_distances,
    _block_labels,
    _block_moments,
    _block_stats,
    _check_init_name,
    _init_array,
    _lloyd_pass,
    assign_accumulate,
)
from bigseg.segment.minibatch import MiniBatchKMeans, _Chunks, _lazy_rows, _windowed

#: names moved to :mod:`bigseg.segment.lloyd` and :mod:`bigseg.segment.minibatch`, still
#: importable from here
__all__ = [
    "_CHUNK",
    "_STEP",
    "KMEANS_INITS",
    "MINIBATCH_INITS",
    "KMeans",
    "MiniBatchKMeans",
    "_CentersModel",
    "_Chunks",
    "_block_distances",
    "_block_labels",
    "_block_moments",
    "_block_stats",
    "_check_init_name",
    "_init_array",
    "_lazy_rows",
    "_lloyd_pass",
    "_windowed",
    "assign_accumulate",
]

log = logging.getLogger(__name__)


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
