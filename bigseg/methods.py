"""The names of the segmentation methods (``segmentation.method``), in a leaf module.

The config (:mod:`bigseg.config`) validates ``segmentation.method`` against
:data:`METHOD_NAMES` without importing the estimators behind
:data:`bigseg.segment.methods.METHODS` (numba, scikit-learn: slow to import, and the
store modules import the config on workers) and without the config depending on
:mod:`bigseg.segment`. ``METHODS`` has exactly these keys, in this order (a test checks).
"""

from __future__ import annotations

#: every ``segmentation.method`` name, in the order of :data:`bigseg.segment.methods.METHODS`
METHOD_NAMES: tuple[str, ...] = ("kmeans", "gmm", "hierarchical", "hdbscan", "som")
