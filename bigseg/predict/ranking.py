"""Rank metrics of the backtest, one sort each: ROC-AUC, average precision (PR-AUC) and
Spearman correlation.

They give scikit-learn's ``roc_auc_score`` and ``average_precision_score`` and SciPy's
``spearmanr`` (tied scores share their mean rank / form one threshold), but sort once
instead of building full curves: the backtest judges up to a million customers per
target, overall, per segment and for each baseline, on the driver while the final models
train.

Examples
--------
>>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # doctest: +ELLIPSIS
0.833...
>>> spearman([1, 2, 3, 4], [10, 20, 20, 40])  # doctest: +ELLIPSIS
0.948...
"""

from __future__ import annotations

import numpy as np


def _floats(x) -> np.ndarray:
    """``x`` as a float array, float32 kept (it sorts faster and ranks the same)."""
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def mean_ranks(x) -> np.ndarray:
    """1-based ranks of ``x`` (ascending), ties sharing their mean rank (float64)."""
    x = np.asarray(x)
    n = x.size
    # not a stable sort: tied values share their mean rank, so their order is moot,
    # and the default (SIMD) sort is twice as fast
    order = np.argsort(x)
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]  # exclusive
    group_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(n, np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def roc_auc(y, score) -> float:
    """ROC-AUC of ``score`` for the binary labels ``y`` by the rank-sum (Mann-Whitney)
    formula; both classes must be present."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both classes in y")
    r = mean_ranks(_floats(score))
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision(y, score) -> float:
    """Average precision: the sum over distinct score thresholds (highest first) of the
    precision there times the recall gained there; positives must be present."""
    y = np.asarray(y).astype(bool)
    s = _floats(score)
    if not y.any():
        raise ValueError("average_precision needs a positive in y")
    order = np.argsort(-s)  # ties end in one threshold: their order is moot
    ss, ys = s[order], y[order]
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]  # end of each threshold
    tps = np.cumsum(ys, dtype=np.float64)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson correlation of the mean ranks); NaN when
    either side is constant."""
    ra = mean_ranks(_floats(a))
    rb = mean_ranks(_floats(b))
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def top_share(score, share: float = 0.1) -> np.ndarray:
    """Indices of the top ``ceil(share * n)`` (at least 1) scores, the rows
    ``np.argsort(-score, kind="stable")`` puts first (ties at the cut: lowest index
    first), found by a partition instead of a sort; in index order."""
    s = _floats(score)
    n = s.size
    k = max(1, int(np.ceil(share * n)))
    if k >= n:
        return np.arange(n)
    cut = np.partition(s, n - k)[n - k]  # the k-th largest
    above = np.flatnonzero(s > cut)
    at = np.flatnonzero(s == cut)[: k - above.size]
    return np.sort(np.concatenate([above, at]))


def _twice_below(ascending: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per value of ``q``, twice the values of ``ascending`` (sorted) below it, ties
    counting once: half-pair units keep every count an exact integer."""
    return np.searchsorted(ascending, q, "left") + np.searchsorted(ascending, q, "right")


def _below2(ascending: np.ndarray, q: np.ndarray) -> int:
    """Twice the pairs (a value of ``ascending`` and one of ``q``) whose ``q`` value is
    the larger, plus the tied pairs."""
    return int(_twice_below(ascending, q).sum())


def _delong_components(y: np.ndarray, scores: list) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of each score (rows): per positive, the share of
    negatives it outranks (``V10``), per negative the share of positives that outrank it
    (``V01``); ties count half. Each class is sorted once and searched by the other's
    sorted scores, which gives the mean-rank differences of Sun & Xu's fast algorithm
    (the same half-integers) at two half-size sorts instead of three rankings."""
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    n1, n0 = pos.size, neg.size
    v10, v01 = np.empty((len(scores), n1)), np.empty((len(scores), n0))
    for i, s in enumerate(scores):
        s = _floats(s)
        sp, sn = s[pos], s[neg]
        op, on = np.argsort(sp), np.argsort(sn)
        sp, sn = sp[op], sn[on]  # sorted queries: each search starts where the last ended
        v10[i, op] = _twice_below(sn, sp) / 2 / n0
        v01[i, on] = 1.0 - _twice_below(sp, sn) / 2 / n1
    return v10, v01


def auc_interval(y, score, level: float = 0.95) -> dict:
    """ROC-AUC with DeLong's confidence interval (``{"auc", "low", "high", "se"}``).

    >>> r = auc_interval([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(r["auc"], 4), r["low"] <= r["auc"] <= r["high"]
    (0.8889, True)
    """
    return auc_difference(y, score, None, level)


def auc_difference(y, a, b=None, level: float = 0.95) -> dict:
    """AUC of score ``a``, or with ``b`` the paired difference AUC(a) - AUC(b) on the
    same rows, with DeLong's standard error and a normal ``level`` interval. The two
    scores' AUCs are correlated (same customers), so the difference's interval is much
    narrower than either AUC's: a gap is significant when it excludes 0."""
    y = _both_classes(y)
    v10, v01 = _delong_components(y, [a] if b is None else [a, b])
    return _delong(v10, v01, level)


def auc_interval_and_difference(y, a, b, level: float = 0.95) -> tuple[dict, dict]:
    """``(auc_interval(y, a, level), auc_difference(y, a, b, level))`` with ``a``'s
    components computed once (the same numbers)."""
    v10, v01 = _delong_components(_both_classes(y), [a, b])
    return _delong(v10[:1], v01[:1], level), _delong(v10, v01, level)


def _both_classes(y) -> np.ndarray:
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        raise ValueError("auc_interval needs both classes in y")
    return y


def _delong(v10: np.ndarray, v01: np.ndarray, level: float) -> dict:
    """The AUC (one row of components) or the difference of two (two rows), with its
    standard error and normal ``level`` interval."""
    from scipy.stats import norm

    k = v10.shape[0]
    aucs = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10)) if v10.shape[1] > 1 else np.zeros((k, k))
    s01 = np.atleast_2d(np.cov(v01)) if v01.shape[1] > 1 else np.zeros((k, k))
    cov = s10 / v10.shape[1] + s01 / v01.shape[1]
    w = np.array([1.0] if k == 1 else [1.0, -1.0])
    est, se = float(w @ aucs), float(np.sqrt(max(w @ cov @ w, 0.0)))
    z = float(norm.ppf(0.5 + level / 2))
    return {"auc" if k == 1 else "difference": est, "low": est - z * se,
            "high": est + z * se, "se": se}  # fmt: skip


class SwitchedAUC:
    """ROC-AUC over fixed rows whose score is assembled part by part (segments), each
    part taking its values from one of several candidate scores, as one part's
    candidate is switched at a time (a coordinate ascent over the parts).

    The pairs split into those inside the rest of the rows (fixed while a part is
    tried), those inside the part, and the cross pairs; a trial counts the last two
    by searching the part's sorted scores in the sorted scores of all rows and of the
    part's current candidate, O(m log n) for a part of m rows instead of a sort of
    all n. Pairs are counted in halves (ties count one), exact integers, so the AUC is
    the very float :func:`roc_auc` gives for the assembled score."""

    def __init__(self, y, candidates: dict, parts: dict, assign: dict):
        """``candidates``: name -> score over all rows; ``parts``: key -> row indices
        (disjoint); ``assign``: key -> the candidate each part starts from. Rows in no
        part take the first candidate's score."""
        self._y = np.asarray(y).astype(bool)
        self._n1 = int(self._y.sum())
        self._n0 = self._y.size - self._n1
        if self._n1 == 0 or self._n0 == 0:
            raise ValueError("roc_auc needs both classes in y")
        self._cand, self._parts, self._assign = candidates, parts, dict(assign)
        self._sorted: dict = {}
        self.score = np.asarray(next(iter(candidates.values())), np.float64).copy()
        for key, name in self._assign.items():
            self.score[parts[key]] = candidates[name][parts[key]]
        self._resort()

    def _resort(self) -> None:
        self._pos = np.sort(self.score[self._y])
        self._neg = np.sort(self.score[~self._y])
        self._wins = _below2(self._neg, self._pos)

    def _part(self, key, name) -> tuple[np.ndarray, np.ndarray, int]:
        """The part's positive and negative scores under a candidate, sorted, and its
        own pairs (computed once per part and candidate)."""
        if (key, name) not in self._sorted:
            rows = self._parts[key]
            s, yb = np.asarray(self._cand[name][rows], np.float64), self._y[rows]
            pos, neg = np.sort(s[yb]), np.sort(s[~yb])
            self._sorted[key, name] = (pos, neg, _below2(neg, pos))
        return self._sorted[key, name]

    def _with(self, key, name) -> int:
        """The pairs that hold a row of part ``key`` under candidate ``name``, the rest
        as now (half-pair units)."""
        pos, neg, inside = self._part(key, name)
        cpos, cneg, _ = self._part(key, self._assign[key])
        # cross pairs with all rows, less those with the part's current scores
        wins = _below2(self._neg, pos) - _below2(cneg, pos)
        losses = _below2(self._pos, neg) - _below2(cpos, neg)
        rest_pos = self._pos.size - cpos.size
        return inside + wins + 2 * rest_pos * neg.size - losses

    def trials(self, key) -> dict:
        """The AUC with part ``key`` switched to each candidate, the rest as now."""
        rest = self._wins - self._with(key, self._assign[key])
        n = self._n1 * self._n0
        return {name: (rest + self._with(key, name)) / 2 / n for name in self._cand}

    def switch(self, key, name) -> None:
        rows = self._parts[key]
        self._assign[key] = name
        self.score[rows] = self._cand[name][rows]
        self._resort()
