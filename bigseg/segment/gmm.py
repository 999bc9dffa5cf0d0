"""Distributed Gaussian mixture: EM over blocks resident where they live.

Every EM iteration ships the current parameters (a few ``k x d`` or ``k x d x d`` arrays)
to every block; the block runs the E-step (log-probabilities with the Cholesky factor of
the precision, log-sum-exp responsibilities) and returns only the M-step's sufficient
statistics: ``N_k = sum r``, ``sum r x``, ``sum r x^2`` (diag) or ``sum r x x^T`` (full)
and its log-likelihood sum. The client adds them up in float64 in block order (so the
answer does not depend on the number of workers) and runs the M-step. Blocks are
shifted by a fixed reference point (the mean of the initial means); the E-step runs in
float32 and the statistics are summed in float64 (see ``_accumulate``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClusterMixin

from bigseg.backend import resolve
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import Blocks, as_blocks, block_shape

log = logging.getLogger(__name__)

_COV_TYPES = ("diag", "full")
_LOG_2PI = float(np.log(2 * np.pi))


def _chunk_rows(k: int, d: int) -> int:
    """Rows per chunk: the ``(rows, k, d)`` float64 temporaries stay below ~64 MB."""
    return int(max(1024, min(1 << 16, (1 << 23) // max(k * d, 1))))


def _weighted_log_prob(x, p: dict, cov_type: str, xp):
    """``log w_k + log N(x | mu_k, Sigma_k)`` for a chunk ``x`` (m, d) of shifted rows."""
    if cov_type == "diag":  # -0.5 sum (x - mu)^2 prec = x.(mu prec) - 0.5 x^2.prec - 0.5 mu^2.prec
        return p["c"][None, :] + x @ p["a"].T - 0.5 * ((x * x) @ p["prec"].T)
    k, d = p["b"].shape
    y = (x @ p["pc"]).reshape(x.shape[0], k, d) - p["b"][None]  # (x - mu_k) @ P_k, all k
    return p["c"][None, :] - 0.5 * (y * y).sum(axis=2)


def _lse(lp, xp):
    """Per-row log-sum-exp and the responsibilities (softmax of ``lp``)."""
    mx = lp.max(axis=1, keepdims=True)
    e = xp.exp(lp - mx)
    s = e.sum(axis=1, keepdims=True)
    return (mx + xp.log(s))[:, 0], e / s


def _device_params(p: dict, xp) -> dict:
    return {name: xp.asarray(v, dtype=xp.float32) for name, v in p.items()}


def _accumulate(x, r, cov_type, xp, acc):
    """Add the sufficient statistics of rows ``x`` with responsibilities ``r``.

    The products are formed and summed in float64. The second moments are taken about one
    fixed shift, not each component's mean, so the M-step's ``E[x^2] - mu^2`` cancels about
    ``(|mu - shift| / sigma)^2`` of their digits: summed in float32, a tight component far
    from the shift got covariances that moved at the 1e-3 level with the BLAS kernel's
    summation order (AVX2 against AVX-512).
    """
    m, d = x.shape
    k = r.shape[1]
    x, r = x.astype(xp.float64), r.astype(xp.float64)
    acc[0] += r.sum(axis=0)
    acc[1] += r.T @ x
    if cov_type == "diag":
        acc[2] += r.T @ (x * x)
    else:  # one GEMM for all k: (k*d, m) @ (m, d)
        rx = (r[:, :, None] * x[:, None, :]).reshape(m, k * d)
        acc[2] += (rx.T @ x).reshape(k, d, d)


def _new_acc(k, d, cov_type, xp):
    shape2 = (k, d) if cov_type == "diag" else (k, d, d)
    return [xp.zeros(k, xp.float64), xp.zeros((k, d), xp.float64), xp.zeros(shape2, xp.float64)]


def _chunks(block, shift, step, xp):
    s32 = xp.asarray(shift, dtype=xp.float32)
    for s in range(0, block.shape[0], step):
        yield xp.asarray(block[s : s + step], dtype=xp.float32) - s32


def _block_em(block, p: dict, shift, cov_type: str, device: str):
    """E-step on one block: sufficient statistics and the log-likelihood sum."""
    be = resolve(device)
    xp, P = be.xp, _device_params(p, be.xp)
    k, d = P["c"].shape[0], block.shape[1]
    acc, ll = _new_acc(k, d, cov_type, xp), 0.0
    for x in _chunks(be.asarray(block), shift, _chunk_rows(k, d), xp):
        lnorm, r = _lse(_weighted_log_prob(x, P, cov_type, xp), xp)
        ll += float(lnorm.sum(dtype=xp.float64))
        _accumulate(x, r, cov_type, xp, acc)
    return (*(be.to_numpy(a) for a in acc), ll)


def _block_hard(block, means, shift, cov_type: str, device: str):
    """Sufficient statistics with hard assignments to the nearest of ``means`` (init)."""
    be = resolve(device)
    xp = be.xp
    M = xp.asarray(means, dtype=xp.float32)
    k, d = M.shape
    m2, eye = (M * M).sum(axis=1), xp.eye(k, dtype=xp.float32)
    acc = _new_acc(k, d, cov_type, xp)
    for x in _chunks(be.asarray(block), shift, _chunk_rows(k, d), xp):
        _accumulate(x, eye[xp.argmin(m2[None, :] - 2.0 * (x @ M.T), axis=1)], cov_type, xp, acc)
    return tuple(be.to_numpy(a) for a in acc)


def _block_predict(block, p: dict, shift, cov_type: str, device: str, what: str):
    """Labels, responsibilities or (log-likelihood sum, rows) of one block."""
    be = resolve(device)
    xp, P = be.xp, _device_params(p, be.xp)
    k, d = P["c"].shape[0], block.shape[1]
    out = []
    for x in _chunks(be.asarray(block), shift, _chunk_rows(k, d), xp):
        lp = _weighted_log_prob(x, P, cov_type, xp)
        if what == "labels":
            out.append(xp.argmax(lp, axis=1).astype(xp.int32))
        else:
            lnorm, r = _lse(lp, xp)
            out.append(r if what == "proba" else lnorm)
    if not out:  # an empty block
        out = [
            xp.zeros((0, k) if what == "proba" else 0, xp.int32 if what == "labels" else xp.float32)
        ]
    res = xp.concatenate(out)
    if what == "score":
        return float(res.sum(dtype=xp.float64)), int(res.shape[0])
    return be.to_numpy(res)


def _m_step(stats, n: int, cov_type: str, reg: float):
    """Weights, (shifted) means and covariances from the summed statistics (float64)."""
    nk, sx, sxx = stats
    N = nk + 10 * np.finfo(np.float64).eps  # as scikit-learn: no empty component
    weights = N / n
    mu = sx / N[:, None]
    if cov_type == "diag":
        cov = np.maximum(sxx / N[:, None] - mu * mu, 0.0) + reg
    else:
        cov = sxx / N[:, None, None] - mu[:, :, None] * mu[:, None, :]
        cov = 0.5 * (cov + cov.transpose(0, 2, 1)) + reg * np.eye(mu.shape[1])
    return weights / weights.sum(), mu, cov


def _precisions_cholesky(cov: np.ndarray, cov_type: str) -> np.ndarray:
    msg = (
        "Fitting the mixture model failed because some components have ill-defined "
        "empirical covariance (for instance caused by singleton or collapsed samples). "
        "Try to decrease the number of components, or increase reg_covar."
    )
    if cov_type == "diag":
        if np.any(cov <= 0.0):
            raise ValueError(msg)
        return 1.0 / np.sqrt(cov)
    pc = np.empty_like(cov)
    for j, c in enumerate(cov):
        try:
            L = linalg.cholesky(c, lower=True)
        except linalg.LinAlgError:
            raise ValueError(msg) from None
        pc[j] = linalg.solve_triangular(L, np.eye(c.shape[0]), lower=True).T
    return pc


def _block_params(weights, mu, pc, cov_type: str) -> dict:
    """What the blocks need, precomputed in float64 (``mu`` in shifted coordinates)."""
    d = mu.shape[1]
    with np.errstate(divide="ignore"):
        c = np.log(weights) - 0.5 * d * _LOG_2PI
    if cov_type == "diag":
        prec = pc * pc
        c = c + np.log(pc).sum(axis=1) - 0.5 * (mu * mu * prec).sum(axis=1)
        return {"c": c, "a": mu * prec, "prec": prec}
    c = c + np.log(np.diagonal(pc, axis1=1, axis2=2)).sum(axis=1)
    b = np.einsum("kd,kde->ke", mu, pc)
    return {"c": c, "b": b, "pc": pc.transpose(1, 0, 2).reshape(d, -1)}  # (d, k*d)


def _sum_stats(stats: list) -> tuple:
    """Add per-block statistics in block order, in float64."""
    out = [np.zeros_like(np.asarray(v, dtype=np.float64)) for v in stats[0]]
    for s in stats:
        for a, v in zip(out, s, strict=True):
            a += v
    return tuple(out)


class GaussianMixture(ClusterMixin, BaseEstimator):
    """Gaussian mixture fitted by EM, with the scikit-learn contract, over local or Dask data.

    Parameters
    ----------
    n_components : int, default 8
    covariance_type : {"diag", "full"}, default "diag"
    max_iter : int, default 100
    tol : float, default 1e-3
        EM stops when the mean log-likelihood per sample changes by less than ``tol``.
    reg_covar : float, default 1e-6
        Added to the diagonal of every covariance.
    init : "kmeans" or array (n_components, n_features), default "kmeans"
        ``"kmeans"`` runs :class:`bigseg.segment.KMeans` (same ``random_state``) for the
        means; given means are used as they are. Weights and covariances then come from
        one pass with hard assignments to the nearest mean (scikit-learn's kmeans init).
    random_state : int, default 0
    sample_size : int, default 100_000
        Rows of the K-Means initialisation sample.
    device : {"auto", "cpu", "gpu"}, default "auto"

    Attributes
    ----------
    weights_ : ndarray (n_components,)
    means_ : ndarray (n_components, n_features)
    covariances_ : ndarray (n_components, n_features) for diag, (n_components, n_features,
        n_features) for full
    precisions_cholesky_ : ndarray, same shape as ``covariances_``
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float, mean log-likelihood per sample at the last E-step
    n_features_in_ : int
    labels_ : ndarray, only after ``fit`` on in-memory input
    iter_seconds_ : list of float, wall time of each EM iteration (for benchmarks)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (200, 2)), rng.normal(10, 1, (200, 2))].astype("float32")
    >>> gm = GaussianMixture(2, device="cpu").fit(X)
    >>> sorted(np.bincount(gm.predict(X)).tolist())
    [200, 200]
    >>> bool(np.allclose(gm.predict_proba(X).sum(axis=1), 1.0))
    True
    """

    def __init__(
        self,
        n_components: int = 8,
        *,
        covariance_type: str = "diag",
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        init="kmeans",
        random_state: int = 0,
        sample_size: int = 100_000,
        device: str = "auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init = init
        self.random_state = random_state
        self.sample_size = sample_size
        self.device = device

    # -- fitting --------------------------------------------------------------------
    def fit(self, X, y=None) -> GaussianMixture:
        ct, k = self.covariance_type, self.n_components
        if ct not in _COV_TYPES:
            raise ValueError(f"covariance_type must be one of {_COV_TYPES}; got {ct!r}")
        if k < 1:
            raise ValueError(f"n_components must be >= 1; got {k}")
        blocks, kind = as_blocks(X)
        be = resolve(self.device)
        shapes = blocks.map(block_shape)
        n = sum(s[0] for s in shapes)
        d = shapes[0][1] if shapes else 0
        if n < k:
            raise ValueError(f"n_samples={n} should be >= n_components={k}.")
        self.n_features_in_ = d
        means0 = self._init_means(blocks, d, be.name)
        shift = means0.mean(axis=0)
        hard = blocks.map(_block_hard, (means0 - shift).astype(np.float32), shift, ct, be.name)
        w, mu, cov = _m_step(_sum_stats(hard), n, ct, self.reg_covar)
        pc = _precisions_cholesky(cov, ct)
        self.iter_seconds_, self.converged_, lower = [], False, -np.inf
        it = 0
        for it in range(1, self.max_iter + 1):  # noqa: B007 - n_iter_ below
            t0 = time.perf_counter()
            stats = _sum_stats(
                blocks.map(_block_em, _block_params(w, mu, pc, ct), shift, ct, be.name)
            )
            prev, lower = lower, float(stats[3]) / n
            w, mu, cov = _m_step(stats[:3], n, ct, self.reg_covar)
            pc = _precisions_cholesky(cov, ct)
            self.iter_seconds_.append(time.perf_counter() - t0)
            if abs(lower - prev) < self.tol:
                self.converged_ = True
                break
        if not self.converged_:
            log.warning(
                "gmm k=%d: not converged after %d iterations (lower bound %.6g); "
                "try a larger max_iter or tol",
                k,
                it,
                lower,
            )
        self.weights_, self.means_, self.covariances_ = w, mu + shift, cov
        self.precisions_cholesky_, self.n_iter_, self.lower_bound_ = pc, it, lower
        if kind == "local":
            self.labels_ = self.predict(blocks)
        log.info("gmm k=%d %s: %d iterations, mean log-likelihood %.6g", k, ct, it, lower)
        return self

    def _init_means(self, blocks: Blocks, d: int, device: str) -> np.ndarray:
        k = self.n_components
        if isinstance(self.init, str):
            if self.init != "kmeans":
                raise ValueError(f"init must be 'kmeans' or an array of means; got {self.init!r}")
            from bigseg.segment.kmeans import KMeans

            km = KMeans(
                k, random_state=self.random_state, sample_size=self.sample_size, device=device
            ).fit(blocks)
            return km.cluster_centers_.astype(np.float64)
        means = np.asarray(self.init, dtype=np.float64)
        if means.shape != (k, d):
            raise ValueError(f"init has shape {means.shape}; expected ({k}, {d})")
        return means

    # -- using a fitted model -------------------------------------------------------
    def _map(self, X, what: str) -> list:
        check_fitted(self, "means_")
        blocks, _ = as_blocks(X)
        shift = self.means_.mean(axis=0)
        p = _block_params(
            self.weights_, self.means_ - shift, self.precisions_cholesky_, self.covariance_type
        )
        return blocks.map(
            _block_predict, p, shift, self.covariance_type, resolve(self.device).name, what
        )

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row (NumPy int32, all rows, block order)."""
        parts = self._map(X, "labels")
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component for each row, shape (n, n_components)."""
        parts = self._map(X, "proba")
        return np.concatenate(parts) if parts else np.zeros((0, self.n_components), np.float32)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).predict(X)

    def _loglik(self, X) -> tuple[float, int]:
        parts = self._map(X, "score")
        return float(sum(p[0] for p in parts)), int(sum(p[1] for p in parts))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample of ``X``."""
        ll, n = self._loglik(X)
        return ll / max(n, 1)

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        cov = k * d if self.covariance_type == "diag" else k * d * (d + 1) // 2
        return int(cov + k * d + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion of the model on ``X`` (lower is better)."""
        ll, n = self._loglik(X)
        return -2.0 * ll + self._n_parameters() * np.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion of the model on ``X`` (lower is better)."""
        ll, _ = self._loglik(X)
        return -2.0 * ll + 2.0 * self._n_parameters()
