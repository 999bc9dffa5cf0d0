"""Segmentation estimators (scikit-learn contract) over local or Dask data."""

from bigseg.segment.blocks import Blocks
from bigseg.segment.density import HDBSCAN
from bigseg.segment.gmm import GaussianMixture
from bigseg.segment.hierarchical import Hierarchical
from bigseg.segment.kmeans import KMeans, MiniBatchKMeans
from bigseg.segment.som import SOM

__all__ = [
    "Blocks",
    "GaussianMixture",
    "HDBSCAN",
    "Hierarchical",
    "KMeans",
    "MiniBatchKMeans",
    "SOM",
]
