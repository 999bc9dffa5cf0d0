"""Segmentation estimators (scikit-learn contract) over local or Dask data, and the
segmentation methods of the pipeline (:data:`METHODS`).

The names below load on first use: a worker that only assigns customers to fitted
segments (:mod:`bigseg.segment.assign`) imports this package but never the estimators,
nor scikit-learn with them.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Blocks": "bigseg.segment.blocks",
    "GaussianMixture": "bigseg.segment.gmm",
    "HDBSCAN": "bigseg.segment.density",
    "Hierarchical": "bigseg.segment.hierarchical",
    "KMeans": "bigseg.segment.kmeans",
    "METHODS": "bigseg.segment.methods",
    "MiniBatchKMeans": "bigseg.segment.kmeans",
    "SOM": "bigseg.segment.som",
    "Segmenter": "bigseg.segment.base",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
