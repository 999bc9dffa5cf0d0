"""The backtest's one-sort rank metrics give scikit-learn's and SciPy's numbers."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from bigseg.predict import ranking
from bigseg.predict.ranking import (
    average_precision,
    mean_ranks,
    roc_auc,
    spearman,
    top_share,
)


@pytest.mark.parametrize("n", [2, 7, 100, 20_000])
@pytest.mark.parametrize("levels", [0, 2, 9])  # 0: continuous scores; else that many values
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_metrics_match_sklearn_and_scipy(n, levels, dtype):
    rng = np.random.default_rng(n * 31 + levels)
    y = rng.random(n) < 0.3
    y[0], y[1] = True, False  # both classes
    p = rng.random(n)
    if levels:
        p = np.round(p * (levels - 1)) / (levels - 1)  # heavy ties
    p = p.astype(dtype)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    v = np.round(rng.gamma(1.0, 3.0, n)) if levels else rng.gamma(1.0, 3.0, n)
    assert spearman(v, p) == pytest.approx(spearmanr(v, p).statistic, abs=1e-12, nan_ok=True)


def test_mean_ranks_share_ties_and_reject_one_class():
    assert mean_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert roc_auc([1, 0, 1], [0.5, 0.5, 0.5]) == 0.5
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="positive"):
        average_precision([0, 0], [0.1, 0.2])


@pytest.mark.parametrize("n", [1, 3, 10, 1001])
def test_top_share_is_the_stable_sorts_head(n):
    rng = np.random.default_rng(n)
    for p in (rng.random(n), np.round(rng.random(n) * 3), np.zeros(n)):
        k = max(1, int(np.ceil(0.1 * n)))
        want = np.sort(np.argsort(-p, kind="stable")[:k])
        assert top_share(p, 0.1).tolist() == want.tolist()


def test_module_examples():
    assert doctest.testmod(ranking).failed == 0
