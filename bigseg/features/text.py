"""Review sentiment features with VADER, per bucket, no Dask inside.

VADER (``vaderSentiment``) is a lexicon and rule based sentiment model that ships its
lexicon, so it runs fully offline. It is pure Python, so :func:`sentiment_scores` keeps
one analyzer per process and scores each distinct text once (review texts repeat a lot).

Review text may hold personal data: nothing here logs or returns any text, only scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.features.behaviour import _bool_of, _frame, _group_max, _select
from bigseg.features.rfm import days_since
from bigseg.sentiment import sentiment_scores

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
