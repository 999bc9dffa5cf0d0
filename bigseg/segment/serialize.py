"""Fitted segmenters as safe files (JSON + NumPy arrays), and segment assignment from them.

Every method reduces to arrays a worker can apply to one bucket's scaled matrix ``Z``:

===============  ============================================================
kmeans           ``centers``: nearest centre
hierarchical     ``prototypes`` (micro-centroids) + ``prototype_segment``
som              ``prototypes`` (unit weights) + ``prototype_segment``
gmm              ``weights``, ``means``, ``precisions_cholesky``: most probable
                 component
hdbscan          ``points`` (core sample points), ``point_segment``, ``radius``:
                 nearest core point within its radius, else the "Unusual
                 customers" segment (index ``n_segments - 1``)
===============  ============================================================

Segment indices run ``0..n_segments-1``; ``centres`` (one per segment, in the scaled
space) serve naming and matching across re-runs. Arrays are saved with ``np.savez`` and
loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import numpy as np

from bigseg.segment.kmeans import assign_accumulate

METHODS = ("kmeans", "gmm", "hierarchical", "hdbscan", "som")
UNUSUAL = "Unusual customers"


def export(method: str, est) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a fitted estimator, enough to assign segments later."""
    a: dict[str, np.ndarray] = {}
    meta = {"method": method}
    if method == "kmeans":
        a["centers"] = est.cluster_centers_
        centres = est.cluster_centers_
    elif method in ("hierarchical", "som"):
        protos = est.micro_centers_ if method == "hierarchical" else est.weights_
        seg = est.micro_labels_ if method == "hierarchical" else est.unit_labels_
        a["prototypes"], a["prototype_segment"] = protos, np.asarray(seg, np.int32)
        centres = est.cluster_centers_
    elif method == "gmm":
        a["weights"], a["means"] = est.weights_, est.means_
        a["precisions_cholesky"] = est.precisions_cholesky_
        meta["covariance_type"] = est.covariance_type
        centres = est.means_
    elif method == "hdbscan":
        S = est.sample_.astype(np.float64)
        core = est.core_sample_indices_
        a["points"] = S[core].astype(np.float32)
        a["point_segment"] = est.sample_labels_[core].astype(np.int32)
        a["radius"] = est.core_radius_.astype(np.float64)
        noise = S[est.sample_labels_ < 0]
        noise_centre = noise.mean(0) if len(noise) else np.zeros(S.shape[1])
        centres = np.vstack([est.cluster_centers_, noise_centre[None, :]])
        meta["noise_segment"] = int(len(est.cluster_centers_))
    else:
        raise ValueError(f"unknown segmentation method {method!r} (known: {', '.join(METHODS)})")
    a["centres"] = np.asarray(centres, dtype=np.float32)
    meta["n_segments"] = int(len(centres))
    return meta, {k: np.asarray(v) for k, v in a.items()}


def assign(meta: dict, a: dict[str, np.ndarray], Z: np.ndarray) -> np.ndarray:
    """Segment index (int32) of each row of the scaled matrix ``Z`` (NumPy)."""
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    m = meta["method"]
    if len(Z) == 0:
        return np.zeros(0, np.int32)
    if m == "kmeans":
        return assign_accumulate(Z, a["centers"], np, with_labels=True)[3]
    if m in ("hierarchical", "som"):
        near = assign_accumulate(Z, a["prototypes"], np, with_labels=True)[3]
        return a["prototype_segment"][near].astype(np.int32)
    if m == "gmm":
        from bigseg.segment.gmm import GaussianMixture

        g = GaussianMixture(
            len(a["weights"]), covariance_type=meta["covariance_type"], device="cpu"
        )
        g.weights_, g.means_ = a["weights"], a["means"]
        g.precisions_cholesky_ = a["precisions_cholesky"]
        return g.predict(Z).astype(np.int32)
    if m == "hdbscan":
        from bigseg.segment.density import _Assigner

        lab = _Assigner(a["points"].astype(np.float64), a["point_segment"], a["radius"])(
            Z.astype(np.float64)
        )
        return np.where(lab < 0, meta["noise_segment"], lab).astype(np.int32)
    raise ValueError(f"unknown segmentation method {m!r}")


def save(path_npz, arrays: dict[str, np.ndarray]) -> None:
    np.savez(path_npz, **arrays)


def load_arrays(path_npz) -> dict[str, np.ndarray]:
    with np.load(path_npz, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def segment_counts(block, meta: dict, a: dict[str, np.ndarray], k: int) -> np.ndarray:
    """Customers per segment in one block of the scaled matrix (NumPy or CuPy)."""
    get = getattr(block, "get", None)
    Z = np.asarray(get() if callable(get) else block)
    return np.bincount(assign(meta, a, Z), minlength=k)[:k]
