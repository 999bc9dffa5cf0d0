"""A 2-D view of the segments for the report: PCA of the standardised segmentation
features of a random sample of customers, with each point's segment.

Only derived, scaled features leave the workers (never a customer id or a raw value);
``metrics.json`` keeps at most :data:`MAX_POINTS` points with rounded coordinates.
"""

from __future__ import annotations

import math

import numpy as np

from bigseg.features.bucket import BucketFeatures
from bigseg.segment.preprocess import Preprocessor

#: customers the principal axes are fitted on (a random sample over all buckets)
FIT_SAMPLE = 5000
#: points kept for the scatter
MAX_POINTS = 2000


def bucket_sample(
    res: BucketFeatures, name: str, scores, pre: dict, k: int, per_bucket: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_bucket`` random rows of one bucket: the scaled segmentation matrix
    and the segment of each row (``scores`` is row-aligned with the bucket's frame)."""
    df = res.frame(name)
    n = len(df)
    rng = np.random.default_rng([seed, k, 2])
    idx = np.sort(rng.choice(n, size=min(n, per_bucket), replace=False)) if n else np.zeros(0, int)
    Z = Preprocessor.from_dict(pre).transform(df.iloc[idx])
    seg = scores["segment"].to_numpy()[idx].astype(np.int32)
    return np.asarray(Z, dtype=np.float32), seg


def pca_2d(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates on the first two principal axes, the axes (2 x d) and the share of
    variance each explains. Axis signs are fixed (largest loading positive) so reruns
    draw the same picture."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] < 2 or Z.shape[1] == 0:
        return np.zeros((len(Z), 2)), np.zeros((2, Z.shape[1] if Z.ndim == 2 else 0)), np.zeros(2)
    C = Z - Z.mean(axis=0)
    _, s, vt = np.linalg.svd(C, full_matrices=False)
    axes = np.zeros((2, Z.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    for i in range(2):
        j = int(np.argmax(np.abs(axes[i])))
        if axes[i, j] < 0:
            axes[i] = -axes[i]
    var = s**2
    ratio = np.zeros(2)
    ratio[: min(2, len(var))] = (var / var.sum())[:2] if var.sum() > 0 else 0.0
    return C @ axes.T, axes, ratio


def summarize(
    Z: np.ndarray, seg: np.ndarray, features: list[str], seed: int, max_points: int = MAX_POINTS
) -> dict:
    """The JSON-ready projection of a sample (``Z`` scaled features, ``seg`` segments)."""
    xy, axes, ratio = pca_2d(Z)
    rng = np.random.default_rng([seed, 3])
    keep = np.sort(rng.permutation(len(xy))[:max_points])
    top = [
        [
            {"feature": features[j], "loading": round(float(a[j]), 3)}
            for j in np.argsort(-np.abs(a), kind="stable")[:3]
        ]
        for a in axes
    ]
    return {
        "method": "pca",
        "features": list(features),
        "n_fit": int(len(Z)),
        "explained_variance_ratio": [round(float(r), 4) for r in ratio],
        "axes_top_features": top,
        "x": [round(float(v), 3) for v in xy[keep, 0]],
        "y": [round(float(v), 3) for v in xy[keep, 1]],
        "segment": [int(s) for s in seg[keep]],
    }


def submit_samples(
    client, frames: list, scores: list, pre: dict, seed: int, fit_sample: int = FIT_SAMPLE
) -> list:
    """Futures of the sample of every bucket (``frames`` and row-aligned ``scores``:
    futures) the projection is fitted on (:func:`from_samples`)."""
    per_bucket = max(1, math.ceil(fit_sample / max(len(frames), 1)))
    return [
        client.submit(bucket_sample, f, "score", s, pre, k, per_bucket, seed, pure=False)
        for k, (f, s) in enumerate(zip(frames, scores, strict=True))
    ]


def from_samples(parts: list, pre: dict, seed: int) -> dict:
    """:func:`summarize`'s dict of the projection fitted on the client on ``parts``
    (the gathered :func:`submit_samples`)."""
    d = len(pre["features"])
    Z = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, d), np.float32)
    seg = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
    return summarize(Z, seg, list(pre["features"]), seed)
