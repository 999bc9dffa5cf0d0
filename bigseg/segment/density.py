"""Density-based segmentation: HDBSCAN on a sample, every row assigned on the workers.

HDBSCAN needs all pairwise structure of its input, so it runs on a reproducible sample
(``sample_block`` on every block with the same fraction, seeded by ``random_state`` and
the block index). Every row (the sample included) is then labelled block-wise where it
lives by a nearest-neighbour rule against the clustered sample points:

    a row takes the cluster of its nearest *core point* - a sample point that HDBSCAN put
    in a cluster - when it lies within that point's radius, else it is noise (-1). The
    radius of a core point is its core distance in the sample (distance to its
    ``min_samples``-th nearest sample point, itself included, as HDBSCAN computes it),
    or ``cluster_selection_epsilon`` when that is larger.

So a sample core point keeps its own label, and a row is in a cluster exactly when it
falls inside the dense ball of some clustered sample point. In the pipeline, noise
becomes an "Unusual customers" segment.

DBSCAN: ``algorithm="dbscan"`` with ``cluster_selection_epsilon=eps`` labels the sample
by DBSCAN* (DBSCAN without border points) at radius ``eps`` with ``min_samples`` points,
cut from the same HDBSCAN tree (components smaller than ``min_cluster_size`` are noise);
its core points are exactly DBSCAN's. Rows are then assigned by the rule above, which
for DBSCAN reduces to "within ``eps`` of a core point".

Known limitation: scikit-learn's HDBSCAN (1.9, NumPy 2) crashes with
``cluster_selection_epsilon > 0`` whenever the epsilon merge has to climb the tree
(scikit-learn issue #33219); that case raises a ``ValueError`` saying so.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from bigseg.backend import cuml_cluster, resolve
from bigseg.segment.assign import _Assigner
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import as_blocks, block_shape, sample_block

log = logging.getLogger(__name__)


def _assign_block(block, assigner: _Assigner, device: str, n_labels: int, with_labels: bool):
    lab = assigner(resolve(device).to_numpy(block))
    counts = np.bincount(lab + 1, minlength=n_labels + 1)  # [noise, cluster 0, ...]
    return counts, (lab if with_labels else None)


def _cluster_sample(S: np.ndarray, params: dict, algorithm: str, gpu: bool) -> np.ndarray:
    """Labels of the sample: cuML when on a GPU and installed, else scikit-learn."""
    eps = params["cluster_selection_epsilon"]
    cu = cuml_cluster("DBSCAN" if algorithm == "dbscan" else "HDBSCAN") if gpu else None
    if cu is not None:
        if algorithm == "dbscan":
            model = cu(eps=eps, min_samples=params["min_samples"])
        else:
            model = cu(**params)
        labels = model.fit(S.astype(np.float32)).labels_
        get = getattr(labels, "get", None) or getattr(labels, "to_numpy", None)
        return np.asarray(get() if callable(get) else labels)
    from sklearn.cluster import HDBSCAN as SkHDBSCAN

    if algorithm == "dbscan":  # DBSCAN* = the mutual-reachability tree cut at eps
        tree = SkHDBSCAN(**{**params, "cluster_selection_epsilon": 0.0}, copy=True, n_jobs=-1).fit(
            S
        )
        return tree.dbscan_clustering(eps, min_cluster_size=params["min_cluster_size"])
    try:
        return SkHDBSCAN(**params, copy=True, n_jobs=-1).fit(S).labels_
    except TypeError as e:
        if eps > 0 and "0-dimensional" in str(e):
            raise ValueError(
                f"scikit-learn's HDBSCAN failed with cluster_selection_epsilon={eps} (its "
                "bug #33219 under NumPy 2); use cluster_selection_epsilon=0 or "
                'algorithm="dbscan"'
            ) from e
        raise


class HDBSCAN(ClusterMixin, BaseEstimator):
    """HDBSCAN segmentation with the scikit-learn contract, over local or Dask data.

    Parameters
    ----------
    min_cluster_size : int, optional
        Smallest cluster; default ``max(25, 0.5% of the sample)``.
    min_samples : int, optional
        Neighbours defining a core distance; default ``min_cluster_size``.
    sample_size : int, default 50_000
        Rows HDBSCAN itself sees (drawn evenly from all blocks).
    cluster_selection_epsilon : float, default 0.0
        Clusters closer than this are not split; also the smallest assignment radius.
        With ``algorithm="dbscan"`` it is DBSCAN's ``eps``.
    cluster_selection_method : {"eom", "leaf"}, default "eom"
    algorithm : {"hdbscan", "dbscan"}, default "hdbscan"
        "dbscan": DBSCAN* at radius ``cluster_selection_epsilon`` (see the module notes).
    random_state : int, default 0
    device : {"auto", "cpu", "gpu"}, default "auto"
        On a GPU with cuML installed the sample is clustered by cuML.

    Attributes
    ----------
    labels_ : ndarray, only after ``fit`` on in-memory input; -1 = noise
    n_clusters_ : int
    cluster_centers_ : ndarray (n_clusters_, n_features), mean of each cluster's sample
        points
    cluster_sizes_ : ndarray (n_clusters_,), rows of all data in each cluster
    noise_share_ : float, share of all rows labelled noise
    sample_ : ndarray, the sample HDBSCAN was fitted on
    sample_labels_ : ndarray, HDBSCAN's labels of the sample (-1 = noise)
    core_sample_indices_ : ndarray, sample points in a cluster (the assignment anchors)
    core_radius_ : ndarray, assignment radius of each of them
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 0.3, (500, 2)), rng.normal(8, 0.3, (500, 2))]
    >>> h = HDBSCAN(device="cpu").fit(X.astype("float32"))
    >>> h.n_clusters_, h.noise_share_ < 0.1
    (2, True)
    """

    def __init__(
        self,
        *,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        sample_size: int = 50_000,
        cluster_selection_epsilon: float = 0.0,
        cluster_selection_method: str = "eom",
        algorithm: str = "hdbscan",
        random_state: int = 0,
        device: str = "auto",
    ):
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.sample_size = sample_size
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.algorithm = algorithm
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None) -> HDBSCAN:
        from scipy.spatial import cKDTree

        t0 = time.perf_counter()
        blocks, kind = as_blocks(X)
        be = resolve(self.device)
        shapes = blocks.map(block_shape)
        n = sum(s[0] for s in shapes)
        if n < 2:
            raise ValueError(f"n_samples={n}; HDBSCAN needs at least 2 rows")
        if self.algorithm not in ("hdbscan", "dbscan"):
            raise ValueError(f'algorithm must be "hdbscan" or "dbscan", got {self.algorithm!r}')
        if self.algorithm == "dbscan" and not self.cluster_selection_epsilon > 0:
            raise ValueError('algorithm="dbscan" needs cluster_selection_epsilon > 0 (the radius)')
        frac = min(1.0, self.sample_size / n)
        S = np.concatenate(blocks.map_indexed(sample_block, frac, self.random_state))
        S64 = S.astype(np.float64)
        mcs = self.min_cluster_size or max(25, int(0.005 * len(S)))
        ms = min(self.min_samples or mcs, len(S))
        params = dict(
            min_cluster_size=mcs,
            min_samples=ms,
            cluster_selection_epsilon=float(self.cluster_selection_epsilon),
            cluster_selection_method=self.cluster_selection_method,
        )
        labels = _cluster_sample(S64, params, self.algorithm, be.is_gpu).astype(np.int32)
        labels[labels < 0] = -1  # scikit-learn marks infinite/missing rows -2/-3
        t1 = time.perf_counter()
        core = np.flatnonzero(labels >= 0)
        core_dist = np.zeros(0)
        if len(core):  # distance to the ms-th nearest sample point, itself included
            core_dist = cKDTree(S64).query(S64[core], k=[ms], workers=-1)[0][:, 0]
        radius = np.maximum(core_dist, float(self.cluster_selection_epsilon))
        self.n_clusters_ = int(labels.max()) + 1 if len(core) else 0
        self.sample_, self.sample_labels_ = S, labels
        self.core_sample_indices_, self.core_radius_ = core, radius
        self.n_features_in_ = int(shapes[0][1])
        self.cluster_centers_ = np.array(
            [S64[labels == c].mean(0) for c in range(self.n_clusters_)]
        ).reshape(self.n_clusters_, self.n_features_in_)
        self.min_cluster_size_, self.min_samples_ = mcs, ms
        self._assigner = _Assigner(S64[core], labels[core], radius)
        res = self._assign(blocks, with_labels=kind == "local")
        counts = np.sum([r[0] for r in res], axis=0)
        self.cluster_sizes_ = counts[1:].astype(np.int64)
        self.noise_share_ = float(counts[0] / n)
        if kind == "local":
            self.labels_ = np.concatenate([r[1] for r in res])
        log.info(
            "hdbscan: %d clusters on a %d-row sample (%.1fs), noise share %.3f of %d rows, "
            "%.1fs in all",
            self.n_clusters_,
            len(S),
            t1 - t0,
            self.noise_share_,
            n,
            time.perf_counter() - t0,
        )
        return self

    def _assign(self, blocks, with_labels: bool) -> list:
        assigner = self._assigner
        if blocks.client is not None:  # ship the neighbour index once per worker
            assigner = blocks.client.scatter(assigner, broadcast=True, hash=False)
        return blocks.map(
            _assign_block, assigner, resolve(self.device).name, self.n_clusters_, with_labels
        )

    def predict(self, X) -> np.ndarray:
        """Cluster of each row by the nearest-core-point rule; -1 = noise."""
        check_fitted(self, "_assigner")
        blocks, _ = as_blocks(X)
        labs = [r[1] for r in self._assign(blocks, with_labels=True)]
        return np.concatenate(labs) if labs else np.zeros(0, np.int32)

    def fit_predict(self, X, y=None) -> np.ndarray:
        self.fit(X)
        return self.labels_ if hasattr(self, "labels_") else self.predict(X)
