"""Segmentation estimators (scikit-learn contract) over local or Dask data, and the
segmentation methods of the pipeline (:data:`METHODS`)."""

from bigseg.segment.base import Segmenter
from bigseg.segment.blocks import Blocks
from bigseg.segment.density import HDBSCAN
from bigseg.segment.gmm import GaussianMixture
from bigseg.segment.hierarchical import Hierarchical
from bigseg.segment.kmeans import KMeans, MiniBatchKMeans
from bigseg.segment.methods import METHODS
from bigseg.segment.som import SOM

__all__ = [
    "Blocks",
    "GaussianMixture",
    "HDBSCAN",
    "Hierarchical",
    "KMeans",
    "METHODS",
    "MiniBatchKMeans",
    "SOM",
    "Segmenter",
]
