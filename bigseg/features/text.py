"""Review sentiment features with VADER, per bucket, no Dask inside.

VADER (``vaderSentiment``) is a lexicon and rule based sentiment model that ships its
lexicon, so it runs fully offline. It is pure Python, so :func:`sentiment_scores` keeps
one analyzer per process and scores each distinct text once (review texts repeat a lot).

Review text may hold personal data: nothing here logs or returns any text, only scores.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.features.behaviour import _bool_of, _frame, _group_max, _select
from bigseg.features.rfm import days_since

__all__ = ["FEATURES", "NEGATIVE", "review_features", "sentiment_scores"]

#: a compound score at or below this is a negative review (VADER's usual threshold)
NEGATIVE = -0.05

#: feature name -> description, for the report and docs
FEATURES: dict[str, str] = {
    "review_count": "reviews written up to the cutoff",
    "review_sentiment_mean": "mean VADER compound sentiment of those reviews (-1 .. 1; "
    "empty texts left out; NaN if none has text)",
    "review_negative_share": f"share of reviews with text whose sentiment is <= {NEGATIVE}",
    "days_since_last_negative": "days since the last negative review; NaN if none",
    "review_rating_mean": "mean star rating (only with a rating column)",
}

_analyzer = None
_lock = threading.Lock()


def _get_analyzer():
    """The process-wide VADER analyzer (loading the lexicon takes ~0.1 s)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

                _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


def _as_series(texts) -> pd.Series:
    if isinstance(texts, pa.ChunkedArray | pa.Array):
        return texts.to_pandas(types_mapper=None).astype(object)
    if isinstance(texts, pd.Series):
        return texts.astype(object)
    return pd.Series(list(texts) if not isinstance(texts, np.ndarray) else texts, dtype=object)


def sentiment_scores(texts, dedup: bool = True) -> np.ndarray:
    """VADER compound sentiment per text, in ``[-1, 1]`` (float64).

    Parameters
    ----------
    texts : sequence of str, ndarray, pandas Series or pyarrow array
        None, NaN, empty or blank texts score NaN.
    dedup : bool, default True
        Score each distinct text once (``pd.factorize``) and broadcast; the result is
        identical to scoring every text. False scores every text (for benchmarks).

    Examples
    --------
    >>> s = sentiment_scores(["I love it, excellent!", "Awful, broken.", None, "love it"])
    >>> bool(s[0] > 0.5), bool(s[1] < -0.5), bool(np.isnan(s[2]))
    (True, True, True)
    """
    s = _as_series(texts)
    if len(s) == 0:
        return np.zeros(0, dtype=np.float64)
    score = _get_analyzer().polarity_scores

    def one(t) -> float:
        if not isinstance(t, str) or not t.strip():
            return np.nan
        return score(t)["compound"]

    if not dedup:
        return np.fromiter((one(t) for t in s), dtype=np.float64, count=len(s))
    codes, uniq = pd.factorize(s, use_na_sentinel=True)
    u = np.fromiter((_remembered(t, one) for t in uniq), dtype=np.float64, count=len(uniq))
    return np.where(codes >= 0, np.append(u, np.nan)[codes], np.nan)


#: texts already scored in this process -> compound score, kept across calls (ingest
#: scores one file per task; short and templated reviews repeat across files). VADER is
#: deterministic, so a remembered score is the score; bounded, emptied when full.
_SCORED: dict[str, float] = {}
SCORED_MAX = 200_000


def _remembered(text, one) -> float:
    if not isinstance(text, str):
        return one(text)
    v = _SCORED.get(text)
    if v is None:
        v = one(text)
        if len(_SCORED) >= SCORED_MAX:
            _SCORED.clear()
        _SCORED[text] = v
    return v


def review_features(
    reviews: pa.Table, cutoff_us: int, scores: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-customer review features at ``cutoff_us``.

    Parameters
    ----------
    reviews : pyarrow.Table
        One bucket of reviews: ``customer_id``, ``timestamp``, ``text``, optional
        ``rating``.
    cutoff_us : int
        Only reviews with ``timestamp <= cutoff_us`` are used (and scored).
    scores : ndarray, optional
        :func:`sentiment_scores` of ``reviews["text"]``, aligned with the rows of
        ``reviews``, to reuse across cutoffs; computed here when None (rows at or before
        the cutoff only).

    Returns
    -------
    DataFrame with ``customer_id``, ``review_count``, ``review_sentiment_mean``,
    ``review_negative_share`` (compound <= :data:`NEGATIVE`, among reviews with text),
    ``days_since_last_negative`` (NaN without a negative review) and, with a ``rating``
    column, ``review_rating_mean`` (NaN when all ratings are null). One row per customer
    with a review at or before the cutoff.
    """
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != reviews.num_rows:
            raise ValueError(f"scores has {len(scores)} values for {reviews.num_rows} reviews")
    t, codes, uniq, ts, keep = _select(reviews, cutoff_us, "timestamp")
    n = len(uniq)
    sc = sentiment_scores(t.column("text")) if scores is None else scores[keep]
    scored = ~np.isnan(sc)
    n_scored = np.bincount(codes[scored], minlength=n).astype(np.float64)
    total = np.bincount(codes[scored], weights=sc[scored], minlength=n)
    neg = scored & (sc <= NEGATIVE)
    n_neg = np.bincount(codes[neg], minlength=n).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols: dict[str, np.ndarray] = {
            "review_count": np.bincount(codes, minlength=n),
            "review_sentiment_mean": np.where(n_scored > 0, total / n_scored, np.nan),
            "review_negative_share": np.where(n_scored > 0, n_neg / n_scored, np.nan),
        }
    never = np.iinfo(np.int64).min
    last = _group_max(codes[neg], ts[neg], n, never)
    cols["days_since_last_negative"] = np.where(
        last > never, days_since(cutoff_us, last.astype(np.float64)), np.nan
    )
    if "rating" in t.column_names:
        r = t.column("rating").cast(pa.float64())
        ok = _bool_of(pc.is_valid(r))
        rv = pc.fill_null(r, 0.0).to_numpy()
        cnt = np.bincount(codes[ok], minlength=n)
        tot = np.bincount(codes[ok], weights=rv[ok], minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            cols["review_rating_mean"] = np.where(cnt > 0, tot / cnt, np.nan)
    return _frame(uniq, cols)
