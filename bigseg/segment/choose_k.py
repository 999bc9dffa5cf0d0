"""Automatic choice of the number of segments (``segmentation.k: auto``).

Every candidate k is fitted on all customers; the scores below are computed on a sample
(``X``, already preprocessed) and all of them go to ``metrics.json`` and the report:

* **silhouette** (higher is better), on up to 4,000 rows;
* **Calinski-Harabasz** (higher is better);
* **Davies-Bouldin** (lower is better);
* **stability** (higher is better): the estimator is refitted on ``n_boot`` bootstrap
  resamples of the sample and the labels those fits give the sample are compared pair by
  pair with the adjusted Rand index; a k that splits the data differently from one
  resample to the next is not a structure of the data;
* **BIC** for Gaussian mixtures (reported; it keeps falling with k on real data, whose
  clusters are not Gaussian, so it is not part of the vote).

**Rule**: each score ranks the candidates; the k with the best mean rank wins, ties going
to the smaller k. No single index is reliable alone (silhouette favours few, large
segments; Calinski-Harabasz favours many), while a consensus of indices that fail in
different ways is: on generated data with seven planted personas it picks 7, where
silhouette alone picks 4 (BENCHMARKS.md, "segment recovery").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

#: score -> True when higher is better (the scores that vote)
VOTERS = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False, "stability": True}
RULE = (
    "best mean rank over silhouette, Calinski-Harabasz, Davies-Bouldin and bootstrap "
    "stability (ties: smaller k)"
)


def cluster_scores(X: np.ndarray, labels: np.ndarray) -> dict:
    """Silhouette (on the first 4,000 rows), Calinski-Harabasz and Davies-Bouldin."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return {"silhouette": -1.0, "calinski_harabasz": 0.0, "davies_bouldin": float("inf")}
    m = min(len(X), 4_000)
    sil = silhouette_score(X[:m], labels[:m]) if len(np.unique(labels[:m])) > 1 else -1.0
    return {
        "silhouette": float(sil),
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
    }


def bootstrap_stability(
    fit_predict: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    X: np.ndarray,
    n_boot: int = 3,
    seed: int = 0,
) -> float:
    """Mean pairwise adjusted Rand index between the labels that fits on ``n_boot``
    bootstrap resamples of ``X`` give to ``X`` itself.

    ``fit_predict(train, X, i)`` fits a fresh estimator on ``train`` (with seed ``i``)
    and returns its labels for ``X``. A fit that fails (``ValueError``, e.g. a Gaussian
    component collapsing on repeated rows) agrees with nothing: its pairs score 0."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng([seed, 7919])
    labs = []
    for i in range(n_boot):
        try:
            labs.append(fit_predict(X[rng.integers(0, len(X), len(X))], X, i))
        except ValueError as e:  # e.g. a mixture component collapsed on repeated rows
            log.info("bootstrap fit %d failed (%s); counted as disagreement", i, e)
            labs.append(None)
    pairs = [
        0.0 if labs[i] is None or labs[j] is None else adjusted_rand_score(labs[i], labs[j])
        for i in range(n_boot)
        for j in range(i + 1, n_boot)
    ]
    return float(np.mean(pairs)) if pairs else 1.0


def pick(candidates: list[dict]) -> int:
    """Index of the winning candidate (each a dict with ``k`` and the scores of
    :data:`VOTERS`) by the documented rule.

    Examples
    --------
    >>> pick([{"k": 3, "silhouette": .5, "calinski_harabasz": 10, "davies_bouldin": .9,
    ...        "stability": .99},
    ...       {"k": 4, "silhouette": .4, "calinski_harabasz": 12, "davies_bouldin": .8,
    ...        "stability": .98}])
    1
    """
    if len(candidates) == 1:
        return 0
    ranks = np.zeros(len(candidates))
    for name, higher in VOTERS.items():
        v = np.array([c.get(name, np.nan) for c in candidates], dtype=np.float64)
        v = np.where(np.isfinite(v), v, -np.inf if higher else np.inf)
        order = np.argsort(-v if higher else v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        ranks += r
    ks = [c["k"] for c in candidates]
    return int(min(range(len(candidates)), key=lambda i: (ranks[i], ks[i])))
