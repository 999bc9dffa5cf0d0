"""Category affinity per segment and next-best offers: pure functions of one bucket or
small reductions on the client (see :mod:`bigseg.predict.offers` for the whole flow)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bigseg.features.behaviour import column_suffixes

__all__ = ["SCORE", "category_affinity", "next_best_offers", "segment_category_sums"]

#: how the offer score is computed (recorded in :func:`category_affinity`'s result)
SCORE = "lift x segment buyer rate"


# --------------------------------------------------------------------------------------
# category affinity per segment
# --------------------------------------------------------------------------------------


def _share_matrix(frame: pd.DataFrame, categories: Sequence[str]) -> np.ndarray:
    """``(n, C)`` float64 spend shares of the top categories; a column the frame lacks
    (a bucket without a ``category`` column) is all NaN."""
    cols = [f"category_share_{s}" for s in column_suffixes(list(categories))]
    return frame.reindex(columns=cols).to_numpy(np.float64, na_value=np.nan)


def _segment_codes(segments, n: int, k: int) -> np.ndarray:
    seg = np.asarray(segments)
    if seg.shape != (n,):
        raise ValueError(f"segments has shape {seg.shape}; expected one id per frame row ({n})")
    if n and not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"segment ids must be integers, got dtype {seg.dtype}")
    seg = seg.astype(np.int64, copy=False)
    if n and (seg.min() < 0 or seg.max() >= k):
        raise ValueError(f"segment ids must lie in [0, {k}); got {seg.min()}..{seg.max()}")
    return seg


def segment_category_sums(
    frame: pd.DataFrame, segments: np.ndarray, k: int, categories: list[str]
) -> dict:
    """Per-segment partial sums of the category mix of one bucket, for
    :func:`category_affinity`.

    Parameters
    ----------
    frame : DataFrame
        Feature frame of one bucket (``res["frames"]["score"]`` of
        :func:`bigseg.features.bucket_frames`), with ``category_share_<suffix>`` columns.
    segments : ndarray of int
        Segment id of each row of ``frame``, in the same order (the ``segment`` column
        of :func:`bigseg.predict.scoring.score_bucket` for the same frame).
    k : int
        Number of segment bins: ids lie in ``[0, k)`` (``max(ids) + 1``).
    categories : list of str
        The top-category vocabulary the features were built with.

    Returns
    -------
    dict
        Plain lists (small, picklable and JSON-serialisable): ``categories``, ``k``,
        ``customers`` (``k`` counts), ``known`` (customers with a known category mix,
        i.e. non-NaN shares: at least one purchase with a known category),
        ``share_sum`` (``k x C`` sums of the shares over known customers) and ``buyers``
        (``k x C`` counts of known customers with a positive share).

    Raises
    ------
    ValueError
        If ``segments`` does not match the frame or holds ids outside ``[0, k)``.
    """
    cats = [str(c) for c in categories]
    S = _share_matrix(frame, cats)
    n, c = S.shape
    seg = _segment_codes(segments, n, k)
    known = ~np.isnan(S).all(axis=1) if c else np.zeros(n, dtype=bool)
    S = np.where(np.isnan(S), 0.0, S)
    flat = (seg[:, None] * c + np.arange(c)[None, :])[known].ravel()
    share_sum = np.bincount(flat, weights=S[known].ravel(), minlength=k * c).reshape(k, c)
    buyers = np.bincount(flat, weights=(S[known] > 0).ravel(), minlength=k * c).reshape(k, c)
    return {
        "categories": cats,
        "k": int(k),
        "customers": np.bincount(seg, minlength=k).tolist(),
        "known": np.bincount(seg[known], minlength=k).tolist(),
        "share_sum": share_sum.tolist(),
        "buyers": buyers.astype(np.int64).tolist(),
    }


def _num(x: float) -> float | None:
    """A float for JSON: NaN / inf -> None."""
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _reduce(parts: list[dict]):
    """Sum the per-bucket parts: ``(categories, k, customers, known, share_sum,
    buyers)``."""
    if not parts:
        raise ValueError("category_affinity needs at least one part")
    cats, k = parts[0]["categories"], int(parts[0]["k"])
    for p in parts[1:]:
        if p["categories"] != cats or int(p["k"]) != k:
            raise ValueError(
                "the parts disagree on the categories or k: built with "
                "different vocabularies or segmenters"
            )
    c = len(cats)
    customers = np.sum([p["customers"] for p in parts], axis=0).astype(np.int64)
    known = np.sum([p["known"] for p in parts], axis=0).astype(np.int64)
    share_sum = np.sum(
        [np.asarray(p["share_sum"], np.float64).reshape(k, c) for p in parts], axis=0
    )
    buyers = np.sum([np.asarray(p["buyers"], np.int64).reshape(k, c) for p in parts], axis=0)
    return cats, k, customers, known, share_sum, buyers


def _ids_and_names(ids, names, customers: np.ndarray, k: int) -> tuple[list[int], dict]:
    """The segment ids to report and their names (see :func:`category_affinity`)."""
    if ids is None:
        ids = [int(i) for i in np.flatnonzero(customers)]
        given = {i: names[i] for i in ids if i < len(names)} if names is not None else {}
    else:
        ids = [int(i) for i in ids]
        if names is not None and len(names) != len(ids):
            raise ValueError(f"{len(names)} names for {len(ids)} segment ids")
        given = dict(zip(ids, names, strict=True)) if names is not None else {}
    bad = [i for i in ids if not 0 <= i < k]
    if bad:
        raise ValueError(f"segment ids {bad} outside [0, {k})")
    return ids, given


def category_affinity(
    parts: list[dict], ids: Sequence[int] | None = None, names: Sequence[str] | None = None
) -> dict:
    """Reduce the per-bucket sums of :func:`segment_category_sums` into category lifts.

    For segment ``s`` and category ``c``, over customers with a known category mix:

    * ``mean_share[s][c]`` = mean spend share of ``c`` in ``s``;
    * ``lift[s][c]`` = ``mean_share[s][c]`` / population mean share of ``c`` (1 = like
      everyone, 2 = twice the population's share); None when either mean is undefined
      or the population share is 0;
    * ``buyer_rate[s][c]`` = share of the segment's known customers who bought in ``c``.

    Parameters
    ----------
    parts : list of dict
        One result of :func:`segment_category_sums` per bucket (same categories and
        ``k`` in all).
    ids : sequence of int, optional
        Segment ids to report, in this order (the segmenter's ``ids``). If None: every
        id with at least one customer.
    names : sequence of str, optional
        Segment names aligned with ``ids`` (or, with ``ids`` None, indexed by id).

    Returns
    -------
    dict
        JSON-serialisable: ``categories``, ``score`` (how offers are scored),
        ``population`` (``customers``, ``known``, ``mean_share``, ``buyer_rate``) and
        ``segments``: a list of ``{"id", "name", "customers", "known", "mean_share",
        "lift", "buyer_rate"}``; the per-category values are dicts keyed by category
        name, floats or None.

    Raises
    ------
    ValueError
        If ``parts`` is empty, the parts disagree on categories or ``k``, an id is out
        of range, or ``names`` does not match ``ids``.
    """
    cats, k, customers, known, share_sum, buyers = _reduce(parts)
    c = len(cats)
    seg_mean = _ratio(share_sum, known[:, None])
    seg_rate = _ratio(buyers, known[:, None])
    pop_known = int(known.sum())
    pop_mean = _ratio(share_sum.sum(axis=0), np.full(c, pop_known))
    pop_rate = _ratio(buyers.sum(axis=0), np.full(c, pop_known))
    lift = _ratio(seg_mean, np.broadcast_to(pop_mean, seg_mean.shape))
    lift = np.where(np.isnan(seg_mean), np.nan, lift)
    ids, given = _ids_and_names(ids, names, customers, k)

    def per_cat(row: np.ndarray) -> dict[str, float | None]:
        return {cat: _num(v) for cat, v in zip(cats, row, strict=True)}

    return {
        "categories": list(cats),
        "score": SCORE,
        "population": {
            "customers": int(customers.sum()),
            "known": pop_known,
            "mean_share": per_cat(pop_mean),
            "buyer_rate": per_cat(pop_rate),
        },
        "segments": [
            {
                "id": i,
                "name": None if i not in given else str(given[i]),
                "customers": int(customers[i]),
                "known": int(known[i]),
                "mean_share": per_cat(seg_mean[i]),
                "lift": per_cat(lift[i]),
                "buyer_rate": per_cat(seg_rate[i]),
            }
            for i in ids
        ],
    }


# --------------------------------------------------------------------------------------
# next-best offers
# --------------------------------------------------------------------------------------


def _segment_scores(affinity: dict, min_lift: float) -> tuple[np.ndarray, np.ndarray]:
    """``(ids -> row map, (rows + 1) x C score table)``: the score of each category per
    segment, NaN where the category is not offered (lift below ``min_lift`` or
    undefined). The last row is all NaN, for customers of unknown segments."""
    cats = affinity["categories"]
    segs = affinity["segments"]
    top = max([int(s["id"]) for s in segs], default=-1)
    row = np.full(top + 1, len(segs), dtype=np.int64)
    table = np.full((len(segs) + 1, len(cats)), np.nan)
    for r, s in enumerate(segs):
        row[int(s["id"])] = r
        lift = np.array([np.nan if s["lift"][c] is None else s["lift"][c] for c in cats], float)
        rate = np.array(
            [np.nan if s["buyer_rate"][c] is None else s["buyer_rate"][c] for c in cats], float
        )
        with np.errstate(invalid="ignore"):
            ok = lift >= min_lift
        table[r] = np.where(ok, lift * rate, np.nan)
    return row, table


def next_best_offers(
    frame: pd.DataFrame, segments: np.ndarray, affinity: dict, n: int = 3, min_lift: float = 1.2
) -> pd.DataFrame:
    """Per customer, the ``n`` best categories to offer.

    A category is a candidate for a customer when their segment buys it markedly more
    than the population (``lift >= min_lift``, see :func:`category_affinity`) and the
    customer has not bought it yet (share 0, or NaN: no purchase with a known category
    at all). Candidates are ranked by

        score = lift x segment buyer rate

    i.e. how much the segment over-indexes on the category, weighted by how common
    buying it is among the customer's peers (a category with a high lift that only a
    handful of the segment buys ranks below one most of the segment buys). Ties keep
    the vocabulary order (most purchased category first). Vectorised: one ``(rows x C)``
    score matrix and a row-wise sort, no per-row Python loop.

    Parameters
    ----------
    frame : DataFrame
        Feature frame of one bucket with ``customer_id`` and the
        ``category_share_<suffix>`` columns.
    segments : ndarray of int
        Segment id of each row of ``frame``, same order. An id absent from
        ``affinity`` gets no offer.
    affinity : dict
        Result of :func:`category_affinity` (it holds the category vocabulary).
    n : int
        Number of offers per customer.
    min_lift : float
        Smallest lift a category needs in the customer's segment to be offered.

    Returns
    -------
    DataFrame
        ``customer_id``, ``offer_1`` .. ``offer_n`` (category name or None, object
        dtype) and ``offer_1_score`` .. ``offer_n_score`` (float64, NaN where no
        offer), one row per row of ``frame`` in its order.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``segments`` does not match the frame.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    cats = list(affinity["categories"])
    S = _share_matrix(frame, cats)
    rows, c = S.shape
    seg = np.asarray(segments)
    if seg.shape != (rows,):
        raise ValueError(f"segments has shape {seg.shape}; expected one id per frame row ({rows})")
    seg = seg.astype(np.int64, copy=False) if rows else np.zeros(0, np.int64)
    id_row, table = _segment_scores(affinity, min_lift)
    inside = (seg >= 0) & (seg < len(id_row))
    r = np.append(id_row, len(table) - 1)[np.where(inside, seg, len(id_row))]
    score = table[r]  # (rows, C)
    with np.errstate(invalid="ignore"):
        score[S > 0] = np.nan  # bought already (NaN shares compare False: not bought)
    order = np.argsort(np.where(np.isnan(score), np.inf, -score), axis=1, kind="stable")
    names = np.append(np.asarray(cats, dtype=object), None)
    out = {"customer_id": frame["customer_id"].to_numpy()}
    offers, scores = {}, {}
    idx = np.arange(rows)
    for j in range(n):
        if j < c:
            col = order[:, j]
            s = score[idx, col]
            offers[f"offer_{j + 1}"] = pd.Series(names[np.where(np.isnan(s), c, col)], dtype=object)
            scores[f"offer_{j + 1}_score"] = s
        else:
            offers[f"offer_{j + 1}"] = pd.Series(np.full(rows, None, dtype=object), dtype=object)
            scores[f"offer_{j + 1}_score"] = np.full(rows, np.nan)
    return pd.DataFrame({**out, **offers, **scores})
