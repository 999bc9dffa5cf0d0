"""Segmentation estimators (scikit-learn contract) over local or Dask data."""

from bigseg.segment.blocks import Blocks
from bigseg.segment.kmeans import KMeans

__all__ = ["Blocks", "KMeans"]
