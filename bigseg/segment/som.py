"""Batch self-organising map over blocks resident where they live, with segments.

Each epoch ships the ``units x d`` weights to every block; the block finds every row's
best-matching unit (BMU) and returns per-unit counts and sums of ``x`` (the fused
assign-and-accumulate kernel of K-Means). The client adds them up in float64 in block
order and sets every unit to the neighbourhood-weighted mean
``w_u = sum_v h(u, v) S_v / sum_v h(u, v) N_v``, with a Gaussian neighbourhood on the
grid whose width shrinks geometrically from ``sigma`` to ``sigma_end``. Optional
segments group the units by a count-weighted Ward linkage.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from bigseg.backend import resolve
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import as_blocks, block_shape, sample_block
from bigseg.segment.kmeans import assign_accumulate

log = logging.getLogger(__name__)


def _block_bmu_stats(block, weights: np.ndarray, device: str, with_dist: bool = False):
    """Per-unit sums and counts, sum of squared BMU distances (and of BMU distances)."""
    be = resolve(device)
    X = be.asarray(block)
    sums, counts, inertia, lab = assign_accumulate(X, weights, be.xp, with_labels=with_dist)
    if not with_dist:
        return be.to_numpy(sums), be.to_numpy(counts), inertia
    xp = be.xp
    x = xp.asarray(X, dtype=xp.float32)
    diff = x - xp.asarray(weights, dtype=xp.float32)[lab]
    dist = float(xp.sqrt((diff * diff).sum(axis=1)).sum(dtype=xp.float64))
    return be.to_numpy(sums), be.to_numpy(counts), inertia, dist


def _block_bmu(block, weights: np.ndarray, device: str) -> np.ndarray:
    be = resolve(device)
    _, _, _, lab = assign_accumulate(be.asarray(block), weights, be.xp, with_labels=True)
    return be.to_numpy(lab)


def _grid(rows: int, cols: int) -> np.ndarray:
    """Grid coordinates (row, col) of the units, unit ``u = row * cols + col``."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.c_[r, c].astype(np.float64)


def _two_bmus(x: np.ndarray, w: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Indices of the nearest and second nearest unit of every row, shape (n, 2)."""
    out = np.empty((x.shape[0], 2), dtype=np.int64)
    w2 = (w * w).sum(axis=1)
    for s in range(0, x.shape[0], chunk):
        d2 = w2[None, :] - 2.0 * (x[s : s + chunk] @ w.T)
        two = np.argpartition(d2, 1, axis=1)[:, :2]
        swap = np.take_along_axis(d2, two[:, :1], 1) > np.take_along_axis(d2, two[:, 1:], 1)
        out[s : s + chunk] = np.where(swap, two[:, ::-1], two)
    return out


def weighted_ward(points: np.ndarray, weights: np.ndarray, n_clusters: int) -> np.ndarray:
    """Agglomerative Ward clustering of weighted points; labels numbered in order of
    first appearance.

    A point of weight ``n`` stands for ``n`` identical rows: merging clusters ``A`` and
    ``B`` costs the exact increase of the within-cluster sum of squares,
    ``n_A n_B / (n_A + n_B) |c_A - c_B|^2``, and the cheapest merge is done until
    ``n_clusters`` are left. With equal weights this is scipy's ``method="ward"``.
    Points of weight 0 (units no row maps to) get a tiny weight, so they join their
    nearest cluster before any real merge. O(m^2) memory and O(m^3) time: meant for
    the few hundred units of a map.
    """
    c = np.asarray(points, dtype=np.float64).copy()
    w = np.asarray(weights, dtype=np.float64).copy()
    m = c.shape[0]
    w[w <= 0] = 1e-9 * max(float(w.max()), 1.0)
    label = np.arange(m)
    active = np.ones(m, dtype=bool)

    def costs(a: int) -> np.ndarray:
        cst = w[a] * w / (w[a] + w) * ((c - c[a]) ** 2).sum(axis=1)
        cst[~active] = np.inf
        cst[a] = np.inf
        return cst

    D = np.vstack([costs(a) for a in range(m)])
    for _ in range(m - n_clusters):
        a, b = np.unravel_index(int(np.argmin(D)), D.shape)
        a, b = min(a, b), max(a, b)
        c[a] = (w[a] * c[a] + w[b] * c[b]) / (w[a] + w[b])
        w[a] += w[b]
        label[label == b] = a
        active[b] = False
        D[b, :] = D[:, b] = np.inf
        D[a, :] = D[:, a] = costs(a)
    _, first = np.unique(label, return_index=True)
    order = {lab: i for i, lab in enumerate(label[np.sort(first)])}
    return np.array([order[lab] for lab in label], dtype=np.int32)


class SOM(ClusterMixin, BaseEstimator):
    """Batch self-organising map on a ``rows x cols`` grid, over local or Dask data.

    Parameters
    ----------
    rows, cols : int, default 6
    n_segments : int or None, default None
        Group the units into this many segments (count-weighted Ward linkage on the unit
        weights, see :func:`weighted_ward`); ``predict`` then returns segments.
    sigma : float or None, default None
        Initial neighbourhood width in grid units; ``max(rows, cols) / 2`` when None.
    sigma_end : float, default 0.5
        Final width; the width shrinks geometrically over the epochs.
    n_epochs : int, default 20
    random_state : int, default 0
        Seed of the sample (PCA initialisation, topographic error).
    sample_size : int, default 100_000
    device : {"auto", "cpu", "gpu"}, default "auto"

    Attributes
    ----------
    weights_ : ndarray (rows * cols, n_features), unit ``u`` at grid cell
        ``(u // cols, u % cols)``
    unit_counts_ : ndarray (rows * cols,), rows whose BMU is each unit
    n_iter_ : int, epochs run
    quantization_error_ : float, mean distance of a row to its BMU
    topographic_error_ : float, share of sampled rows whose first and second BMU are not
        adjacent on the grid (8-neighbourhood)
    distortion_history_ : list of float, mean squared distance to the BMU of the weights
        entering each epoch, then of the fitted weights (``n_epochs + 1`` values)
    unit_labels_, cluster_centers_ : segment of each unit and mean of each segment's
        rows, only when ``n_segments`` is set
    labels_ : ndarray, only after ``fit`` on in-memory input (what ``predict`` returns)
    iter_seconds_ : list of float, wall time of each epoch
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (300, 3)), rng.normal(8, 1, (300, 3))].astype("float32")
    >>> som = SOM(4, 4, n_segments=2, device="cpu").fit(X)
    >>> som.weights_.shape
    (16, 3)
    >>> sorted(np.bincount(som.predict(X)).tolist())
    [300, 300]
    """

    def __init__(
        self,
        rows: int = 6,
        cols: int = 6,
        *,
        n_segments: int | None = None,
        sigma: float | None = None,
        sigma_end: float = 0.5,
        n_epochs: int = 20,
        random_state: int = 0,
        sample_size: int = 100_000,
        device: str = "auto",
    ):
        self.rows = rows
        self.cols = cols
        self.n_segments = n_segments
        self.sigma = sigma
        self.sigma_end = sigma_end
        self.n_epochs = n_epochs
        self.random_state = random_state
        self.sample_size = sample_size
        self.device = device

    def _sigmas(self) -> np.ndarray:
        s0 = float(self.sigma) if self.sigma is not None else max(self.rows, self.cols) / 2.0
        if s0 <= 0 or self.sigma_end <= 0:
            raise ValueError(f"sigma and sigma_end must be > 0; got {s0}, {self.sigma_end}")
        t = np.arange(self.n_epochs) / max(self.n_epochs - 1, 1)
        return s0 * (self.sigma_end / s0) ** t

    # -- fitting --------------------------------------------------------------------
    def fit(self, X, y=None) -> SOM:
        units = self.rows * self.cols
        if self.rows < 1 or self.cols < 1 or self.n_epochs < 1:
            raise ValueError("rows, cols and n_epochs must be >= 1")
        if self.n_segments is not None and not 1 <= self.n_segments <= units:
            raise ValueError(f"n_segments must be in [1, rows*cols={units}]; got {self.n_segments}")
        sigmas = self._sigmas()
        blocks, kind = as_blocks(X)
        be = resolve(self.device)
        shapes = blocks.map(block_shape)
        n = sum(s[0] for s in shapes)
        if n < 1:
            raise ValueError("SOM needs at least one row")
        self.n_features_in_ = shapes[0][1]
        frac = min(1.0, self.sample_size / n)
        sample = np.concatenate(blocks.map_indexed(sample_block, frac, self.random_state))
        sample = sample.astype(np.float64, copy=False)
        W = self._init_weights(sample)
        g = _grid(self.rows, self.cols)
        grid_d2 = ((g[:, None, :] - g[None, :, :]) ** 2).sum(axis=2)
        self.distortion_history_, self.iter_seconds_ = [], []
        for sigma in sigmas:
            t0 = time.perf_counter()
            stats = blocks.map(_block_bmu_stats, W.astype(np.float32), be.name)
            S, N, inertia = self._reduce(stats, units)
            self.distortion_history_.append(inertia / n)
            h = np.exp(-grid_d2 / (2.0 * sigma * sigma))
            num, den = h @ S, h @ N
            ok = den > 1e-12 * max(float(den.max()), 1.0)
            W[ok] = num[ok] / den[ok, None]  # units out of everyone's reach keep their weights
            self.iter_seconds_.append(time.perf_counter() - t0)
        self.weights_ = W.astype(np.float32)
        self.n_iter_ = len(sigmas)
        final = blocks.map(_block_bmu_stats, self.weights_, be.name, True)
        S, N, inertia = self._reduce(final, units)
        self.distortion_history_.append(inertia / n)
        self.unit_counts_ = N.astype(np.int64)
        self.quantization_error_ = float(sum(f[3] for f in final)) / n
        self.topographic_error_ = self._topographic_error(sample, self.weights_)
        if self.n_segments is not None:
            self.unit_labels_ = weighted_ward(self.weights_, N, self.n_segments)
            self.cluster_centers_ = self._segment_means(S, N)
        if kind == "local":
            self.labels_ = self.predict(blocks)
        log.info(
            "som %dx%d: %d epochs, quantization error %.4g, topographic error %.3f",
            self.rows,
            self.cols,
            self.n_iter_,
            self.quantization_error_,
            self.topographic_error_,
        )
        return self

    @staticmethod
    def _reduce(stats: list, units: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Add per-block (sums, counts, inertia) in block order, in float64."""
        S, N, inertia = np.zeros((units, stats[0][0].shape[1])), np.zeros(units), 0.0
        for s in stats:
            S += s[0]
            N += s[1]
            inertia += s[2]
        return S, N, inertia

    def _init_weights(self, sample: np.ndarray) -> np.ndarray:
        """Units spread over the plane of the first two principal components (±1 standard
        deviation along each), or random sample rows when there is less than 2 features
        or rows."""
        units = self.rows * self.cols
        d = sample.shape[1]
        if d < 2 or sample.shape[0] < 2:
            rng = np.random.default_rng(self.random_state)
            idx = rng.choice(sample.shape[0], units, replace=sample.shape[0] < units)
            return sample[np.sort(idx)].copy()
        mean = sample.mean(axis=0)
        xc = sample - mean
        evals, evecs = np.linalg.eigh(xc.T @ xc / (sample.shape[0] - 1))
        top = evecs[:, ::-1][:, :2]
        top *= np.sign(top[np.abs(top).argmax(axis=0), [0, 1]])  # deterministic sign
        sd = np.sqrt(np.maximum(evals[::-1][:2], 0.0))

        def span(m: int) -> np.ndarray:
            return np.linspace(-1.0, 1.0, m) if m > 1 else np.zeros(1)

        g = _grid(self.rows, self.cols).astype(np.int64)
        a, b = span(self.rows)[g[:, 0]], span(self.cols)[g[:, 1]]
        if self.cols > self.rows:  # the longer side of the grid follows the first component
            a, b = b, a
        return mean + (a * sd[0])[:, None] * top[:, 0] + (b * sd[1])[:, None] * top[:, 1]

    def _topographic_error(self, x: np.ndarray, w: np.ndarray) -> float:
        if w.shape[0] < 2 or x.shape[0] == 0:
            return 0.0
        two = _two_bmus(x, w.astype(np.float64))
        g = _grid(self.rows, self.cols)
        cheb = np.abs(g[two[:, 0]] - g[two[:, 1]]).max(axis=1)
        return float((cheb > 1).mean())

    def _segment_means(self, S: np.ndarray, N: np.ndarray) -> np.ndarray:
        out = np.empty((self.n_segments, S.shape[1]), dtype=np.float64)
        for j in range(self.n_segments):
            m = self.unit_labels_ == j
            out[j] = S[m].sum(0) / N[m].sum() if N[m].sum() > 0 else self.weights_[m].mean(0)
        return out.astype(np.float32)

    # -- using a fitted model -------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """Best-matching unit of each row (NumPy int32, all rows, block order)."""
        check_fitted(self, "weights_")
        blocks, _ = as_blocks(X)
        labs = blocks.map(_block_bmu, self.weights_, resolve(self.device).name)
        return np.concatenate(labs) if labs else np.zeros(0, np.int32)

    def predict(self, X) -> np.ndarray:
        """Segment of each row's BMU when ``n_segments`` is set, else the BMU itself."""
        bmu = self.transform(X)
        return self.unit_labels_[bmu] if self.n_segments is not None else bmu

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).predict(X)

    def quantization_error(self, X) -> float:
        """Mean distance of the rows of ``X`` to their best-matching unit."""
        check_fitted(self, "weights_")
        blocks, _ = as_blocks(X)
        res = blocks.map(_block_bmu_stats, self.weights_, resolve(self.device).name, True)
        return float(sum(r[3] for r in res)) / max(sum(int(r[1].sum()) for r in res), 1)

    def topographic_error(self, X) -> float:
        """Share of the rows of ``X`` (in memory) whose two nearest units are not adjacent."""
        check_fitted(self, "weights_")
        return self._topographic_error(np.asarray(X, dtype=np.float64), self.weights_)
