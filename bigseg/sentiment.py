"""Review sentiment with VADER: one compound score per text, no Dask inside.

VADER (``vaderSentiment``) is a lexicon and rule based sentiment model that ships its
lexicon, so it runs fully offline. It is pure Python, so :func:`sentiment_scores` keeps
one analyzer per process and scores each distinct text once (review texts repeat a lot).

Below both ``bigseg.store`` (ingest scores each review once) and ``bigseg.features``
(:mod:`bigseg.features.text` builds the review features from the scores). Review text
may hold personal data: nothing here logs or returns any text, only scores.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["sentiment_scores"]

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
