"""Two-stage hierarchical segmentation that scales to millions of customers.

Stage 1 summarises all rows with distributed :class:`~bigseg.segment.KMeans` into a few
hundred micro-clusters (centre + number of customers). Stage 2 runs *weighted* Ward
linkage on those micro-centroids in NumPy, so the tree is the one Ward would build if
each micro-cluster were its customers collapsed onto the centroid. The tree is cut at
``n_clusters``; every customer takes the segment of its micro-cluster.

The linkage matrix follows SciPy's layout, so ``scipy.cluster.hierarchy.fcluster`` and
``dendrogram`` accept it. Column 3 holds the number of *micro-clusters* under each merge
(SciPy rejects counts above the number of leaves); the number of *customers* under each
merge is in ``linkage_sizes_``.
"""

from __future__ import annotations

import html
import logging
import time

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from bigseg.backend import resolve
from bigseg.segment.base import check_fitted
from bigseg.segment.blocks import as_blocks, block_shape
from bigseg.segment.kmeans import KMeans, _block_labels, assign_accumulate

log = logging.getLogger(__name__)

#: segment colours of the SVG dendrogram (Tableau 10); merges spanning segments are grey
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
MIXED = "#888888"


def ward_linkage(centers, sizes) -> tuple[np.ndarray, np.ndarray]:
    """Ward linkage of weighted points (nearest-neighbour chain, Lance-Williams updates).

    Merging clusters ``a`` and ``b`` costs ``n_a n_b / (n_a + n_b) * |c_a - c_b|^2``
    (the rise in within-cluster sum of squares); the merged centroid is the size-weighted
    mean. Heights are ``sqrt(2 * cost)``, SciPy's Ward distance, so with unit sizes the
    result equals ``scipy.cluster.hierarchy.linkage(centers, "ward")`` (up to tie order).

    Returns
    -------
    Z : ndarray (m - 1, 4), SciPy linkage (column 3 = number of points merged)
    weights : ndarray (m - 1,), total size (sum of ``sizes``) under each merge

    Examples
    --------
    >>> Z, w = ward_linkage([[0.0], [1.0], [10.0]], [1, 1, 2])
    >>> Z[:, :2].tolist(), w.tolist()
    ([[0.0, 1.0], [2.0, 3.0]], [2.0, 4.0])
    """
    C = np.asarray(centers, dtype=np.float64)
    w = np.asarray(sizes, dtype=np.float64).copy()
    m = C.shape[0]
    if m < 2:
        raise ValueError(f"Ward linkage needs at least 2 points, got {m}")
    if np.any(w <= 0):
        raise ValueError("sizes must be positive")
    # squared Ward distances 2 n_a n_b / (n_a + n_b) |c_a - c_b|^2
    sq = (C * C).sum(1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (C @ C.T), 0.0)
    D *= 2.0 * w[:, None] * w[None, :] / (w[:, None] + w[None, :])
    np.fill_diagonal(D, np.inf)
    active = np.ones(m, dtype=bool)
    merges = []  # (slot_a, slot_b, height) in chain order; slot s always holds leaf s
    chain: list[int] = []
    for _ in range(m - 1):
        if not chain:
            chain.append(int(np.flatnonzero(active)[0]))
        while True:
            a = chain[-1]
            row = np.where(active, D[a], np.inf)
            b = int(np.argmin(row))
            if len(chain) > 1 and row[chain[-2]] <= row[b]:
                b = chain[-2]  # ties go back down the chain: guarantees termination
                break
            chain.append(b)
        chain = chain[:-2]
        na, nb = w[a], w[b]
        dab = D[a, b]
        merges.append((a, b, float(np.sqrt(dab))))
        # Lance-Williams for Ward; the merged cluster lives in slot b
        nk = w
        new = ((nk + na) * D[a] + (nk + nb) * D[b] - nk * dab) / (nk + na + nb)
        active[a] = False
        new[~active] = np.inf
        new[b] = np.inf
        D[b, :] = new
        D[:, b] = new
        D[a, :] = np.inf
        D[:, a] = np.inf
        w[b] = na + nb
    # heights in increasing order, then SciPy's labelling (union-find over merges)
    order = np.argsort([h for _, _, h in merges], kind="mergesort")
    sizes0 = np.asarray(sizes, dtype=np.float64)
    parent = np.arange(2 * m - 1)
    count = np.r_[np.ones(m), np.zeros(m - 1)]
    weight = np.r_[sizes0, np.zeros(m - 1)]
    Z = np.empty((m - 1, 4))
    for i, j in enumerate(order):
        a, b, h = merges[j]
        ra, rb = _find(parent, a), _find(parent, b)
        lo, hi = min(ra, rb), max(ra, rb)
        new_id = m + i
        parent[lo] = parent[hi] = new_id
        count[new_id] = count[lo] + count[hi]
        weight[new_id] = weight[lo] + weight[hi]
        Z[i] = (lo, hi, h, count[new_id])
    return Z, weight[m:]


def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = int(parent[root])
    while parent[x] != root:  # path compression
        parent[x], x = root, int(parent[x])
    return root


def _roots_after(Z: np.ndarray, n_merges: int) -> np.ndarray:
    """Node id of the cluster holding each leaf after the first ``n_merges`` merges."""
    m = Z.shape[0] + 1
    parent = np.arange(2 * m - 1)
    for i in range(n_merges):
        parent[int(Z[i, 0])] = parent[int(Z[i, 1])] = m + i
    return np.array([_find(parent, x) for x in range(m)])


def _count_block(block, centers: np.ndarray, device: str, with_labels: bool):
    be = resolve(device)
    _, counts, _, lab = assign_accumulate(be.asarray(block), centers, be.xp, with_labels)
    return be.to_numpy(counts), (be.to_numpy(lab) if with_labels else None)


class Hierarchical(ClusterMixin, BaseEstimator):
    """Ward hierarchical segmentation on distributed K-Means micro-clusters.

    Parameters
    ----------
    n_clusters : int, default 8
        Segments left after cutting the tree.
    n_micro : int, default 300
        Micro-clusters of stage 1 (capped at the number of rows).
    max_iter : int, default 20
        Lloyd iterations of stage 1 (one k-means++ initialisation, refined on a sample
        first); micro-clusters are a summary, full convergence is not needed.
    random_state : int, default 0
    device : {"auto", "cpu", "gpu"}, default "auto"

    Attributes
    ----------
    micro_centers_ : ndarray (m, n_features), non-empty micro-centroids
    micro_sizes_ : ndarray (m,), customers in each micro-cluster
    micro_labels_ : ndarray (m,), segment of each micro-cluster (0 = largest segment)
    linkage_ : ndarray (m - 1, 4), SciPy linkage matrix of the micro-centroids
    linkage_sizes_ : ndarray (m - 1,), customers under each merge of ``linkage_``
    cluster_centers_ : ndarray (n_clusters, n_features), size-weighted segment centres
    labels_ : ndarray, only after ``fit`` on in-memory input
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (500, 2)), rng.normal(20, 1, (500, 2))].astype("float32")
    >>> h = Hierarchical(2, n_micro=20, device="cpu").fit(X)
    >>> sorted(np.bincount(h.labels_).tolist())
    [500, 500]
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        n_micro: int = 300,
        max_iter: int = 20,
        random_state: int = 0,
        device: str = "auto",
    ):
        self.n_clusters = n_clusters
        self.n_micro = n_micro
        self.max_iter = max_iter
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None) -> Hierarchical:
        t0 = time.perf_counter()
        blocks, kind = as_blocks(X)
        be = resolve(self.device)
        n = sum(s[0] for s in blocks.map(block_shape))
        km = KMeans(
            min(self.n_micro, n),
            n_init=1,
            max_iter=self.max_iter,
            random_state=self.random_state,
            device=be.name,
        ).fit(blocks)
        t1 = time.perf_counter()
        C = km.cluster_centers_
        res = blocks.map(_count_block, C, be.name, kind == "local")
        counts = np.sum([r[0] for r in res], axis=0)
        keep = np.flatnonzero(counts > 0)  # an empty micro-cluster is no leaf
        if len(keep) < self.n_clusters:
            raise ValueError(
                f"n_clusters={self.n_clusters} exceeds the {len(keep)} "
                "non-empty micro-clusters; raise n_micro or lower n_clusters"
            )
        self.micro_centers_ = C[keep]
        self.micro_sizes_ = counts[keep].astype(np.int64)
        self.n_features_in_ = C.shape[1]
        m = len(keep)
        if m >= 2:
            self.linkage_, self.linkage_sizes_ = ward_linkage(
                self.micro_centers_, self.micro_sizes_
            )
        else:
            self.linkage_, self.linkage_sizes_ = np.zeros((0, 4)), np.zeros(0)
        roots = _roots_after(self.linkage_, m - self.n_clusters)
        # segments numbered by decreasing customers (ties: lowest node id)
        ids = np.unique(roots)
        tot = np.array([self.micro_sizes_[roots == r].sum() for r in ids])
        rank = np.lexsort((ids, -tot))
        seg_of = {int(ids[j]): s for s, j in enumerate(rank)}
        self.micro_labels_ = np.array([seg_of[int(r)] for r in roots], dtype=np.int32)
        W, lab = self.micro_sizes_.astype(np.float64), self.micro_labels_
        sums = np.zeros((self.n_clusters, C.shape[1]))
        np.add.at(sums, lab, self.micro_centers_ * W[:, None])  # size-weighted centres
        self.cluster_centers_ = (sums / np.bincount(lab, weights=W)[:, None]).astype(np.float32)
        if kind == "local":
            remap = np.full(len(C), -1, dtype=np.int64)
            remap[keep] = np.arange(m)
            micro = remap[np.concatenate([r[1] for r in res])]
            self.labels_ = self.micro_labels_[micro]
        dt = (t1 - t0, time.perf_counter() - t0)
        log.info("hierarchical: %d micro-clusters (k-means %.1fs), %.1fs in all", m, *dt)
        return self

    def predict(self, X) -> np.ndarray:
        """Segment of the nearest micro-centroid of each row (NumPy labels)."""
        check_fitted(self, "micro_labels_")
        blocks, _ = as_blocks(X)
        labs = blocks.map(_block_labels, self.micro_centers_, resolve(self.device).name)
        micro = np.concatenate(labs) if labs else np.zeros(0, np.int32)
        return self.micro_labels_[micro]

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).predict(X)

    # -- the tree, for the report ---------------------------------------------------
    def dendrogram_data(self, max_leaves: int = 30) -> dict:
        """The top of the tree as a JSON-safe dict.

        ``leaves`` are the ``max_leaves`` clusters left before the last merges, in
        drawing order (``size`` = customers, ``height`` = the merge that formed them, 0
        for a micro-cluster, ``segment`` = their segment or -1 when they span several);
        ``merges`` are the last merges, bottom-up (``children`` are leaf or merge ids).
        """
        check_fitted(self, "micro_labels_")
        Z, m = self.linkage_, len(self.micro_sizes_)
        L = max(1, min(int(max_leaves), m))
        first = m - L  # merges below the truncation
        roots = _roots_after(Z, first)
        leaves, merges = {}, []
        for r in np.unique(roots):
            under = roots == r
            segs = np.unique(self.micro_labels_[under])
            leaves[int(r)] = {
                "id": int(r),
                "size": int(self.micro_sizes_[under].sum()),
                "n_micro": int(under.sum()),
                "height": float(Z[r - m, 2]) if r >= m else 0.0,
                "segment": int(segs[0]) if len(segs) == 1 else -1,
            }
        seg = {k: v["segment"] for k, v in leaves.items()}
        for i in range(first, m - 1):
            a, b = int(Z[i, 0]), int(Z[i, 1])
            s = seg[a] if seg[a] == seg[b] else -1
            seg[m + i] = s
            h, nc = float(Z[i, 2]), int(self.linkage_sizes_[i])
            merges.append({"id": m + i, "children": [a, b], "height": h, "size": nc, "segment": s})
        order, stack = [], [2 * m - 2 if m > 1 else 0]
        while stack:  # depth-first, left child first
            node = stack.pop()
            if node in leaves:
                order.append(leaves[node])
            else:
                stack.extend(reversed(merges[node - m - first]["children"]))
        k = self.n_clusters
        cut = 0.0 if k >= m else 1.05 * float(Z[-1, 2])  # k = m: no cut; k = 1: above all
        if 1 < k < m:  # halfway between the last merge made and the first one undone
            cut = 0.5 * float(Z[m - k - 1, 2] + Z[m - k, 2])
        return {
            "n_clusters": int(k),
            "n_micro": int(m),
            "n_customers": int(self.micro_sizes_.sum()),
            "cut_height": cut,
            "leaves": order,
            "merges": merges,
        }

    def dendrogram_svg(self, width: int = 640, height: int = 320, max_leaves: int = 30) -> str:
        """A self-contained inline SVG dendrogram of the top ``max_leaves`` clusters.

        Branches within one segment take its colour, merges across segments are grey;
        the dashed line is the cut at ``n_clusters``; leaf labels are customer counts.
        """
        data = self.dendrogram_data(max_leaves)
        left, right, top, bottom = 48, 12, 24, 40
        pw, ph = width - left - right, height - top - bottom
        hmax = max([mg["height"] for mg in data["merges"]] + [data["cut_height"], 1e-12])

        def y(h: float) -> float:
            return top + ph * (1.0 - h / hmax)

        def colour(s: int) -> str:
            return PALETTE[s % len(PALETTE)] if s >= 0 else MIXED

        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="9">',
            f"<title>Ward dendrogram: {data['n_micro']} micro-clusters, "
            f"{data['n_clusters']} segments</title>",
        ]
        pos: dict[int, tuple[float, float]] = {}
        n_leaves = len(data["leaves"])
        for i, leaf in enumerate(data["leaves"]):
            x, y0 = left + (i + 0.5) * pw / n_leaves, y(0.0)
            pos[leaf["id"]] = (x, y0)
            c = colour(leaf["segment"])
            tip = f"segment {leaf['segment']}: {leaf['size']} customers"
            out.append(
                f'<circle cx="{x:.1f}" cy="{y0:.1f}" r="3" fill="{c}">'
                f"<title>{html.escape(tip)}</title></circle>"
            )
            out.append(
                f'<text x="{x:.1f}" y="{y0 + 8:.1f}" text-anchor="end" '
                f'transform="rotate(-60 {x:.1f} {y0 + 8:.1f})">{_short(leaf["size"])}</text>'
            )
        for mg in data["merges"]:
            (xa, ya), (xb, yb) = pos[mg["children"][0]], pos[mg["children"][1]]
            ym = y(mg["height"])
            pos[mg["id"]] = ((xa + xb) / 2, ym)
            out.append(
                f'<path d="M{xa:.1f},{ya:.1f}V{ym:.1f}H{xb:.1f}V{yb:.1f}" fill="none" '
                f'stroke="{colour(mg["segment"])}" stroke-width="1.5"/>'
            )
        for frac in (0.0, 0.5, 1.0):  # axis: Ward height
            yy = y(frac * hmax)
            out.append(
                f'<line x1="{left - 4}" y1="{yy:.1f}" x2="{left}" y2="{yy:.1f}" stroke="#444"/>'
                f'<text x="{left - 6}" y="{yy + 3:.1f}" text-anchor="end">{_tick(frac * hmax)}</text>'
            )
        out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0.0):.1f}" stroke="#444"/>')
        if 0.0 < data["cut_height"] <= hmax:
            yc = y(data["cut_height"])
            out.append(
                f'<line x1="{left}" y1="{yc:.1f}" x2="{width - right}" y2="{yc:.1f}" '
                f'stroke="#444" stroke-dasharray="4 3"/><text x="{width - right}" '
                f'y="{yc - 3:.1f}" text-anchor="end">cut: {data["n_clusters"]} segments</text>'
            )
        out.append("</svg>")
        return "\n".join(out)


def _short(n: int) -> str:
    """1234 -> '1.2k', 2500000 -> '2.5M'."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _tick(v: float) -> str:
    return f"{v:.3g}" if v < 1000 else _short(round(v))
