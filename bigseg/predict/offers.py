"""Personalisation: next-best offer per customer and per-segment audience files.

Everything here is a pure function of one bucket (pandas / NumPy, no Dask inside) or a
reduction of small per-bucket results on the client, so the pipeline runs it like the
other per-bucket tasks:

1. :func:`segment_category_sums` on each bucket (the feature frame of the scoring cutoff
   and the ``segment`` ids of its scores) -> small dicts of partial sums;
2. :func:`category_affinity` on the client reduces them into, per segment and category,
   the **lift** (segment mean spend share / population mean spend share) and the
   segment's **buyer rate** (share of its customers who bought in the category);
   the result is JSON-serialisable (for metrics and the report);
3. :func:`next_best_offers` on each bucket: per customer, the categories their segment
   over-indexes on (``lift >= min_lift``) that the customer has not bought yet, best
   first;
4. :func:`audience_frame` on each bucket: consenting customers with their segment,
   churn-risk tier, value tier (global cut points from :func:`value_cut_points`) and
   first offer;
5. :func:`write_audiences` on the client: ``audiences/segment=<id>.parquet``, one file per
   segment, published atomically through :func:`bigseg.store.publish.staged_dir`.

Categories are the top-category vocabulary the features were built with (the values
passed as ``categories`` to :func:`bigseg.features.behaviour.category_features`); their
share columns are ``category_share_<suffix>`` with the suffixes of
:func:`bigseg.features.behaviour.column_suffixes`. Offers name the category itself (e.g.
``"Home & Garden"``), not the column. Only the top categories can be offered: spend in
other categories (``category_other_share``) is one undifferentiated bucket.

Segment ids are the persistent ids of the ``segment`` column of the scores (they can
have gaps); ``k`` is one more than the largest id, as in :func:`bigseg.predict.scoring.profile`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bigseg.features.behaviour import column_suffixes
from bigseg.store.publish import staged_dir

__all__ = [
    "AUDIENCE_COLUMNS",
    "CHURN_CUTS",
    "VALUE_QUANTILES",
    "audience_frame",
    "bucket_audience",
    "category_affinity",
    "marketing_consent",
    "next_best_offers",
    "segment_category_sums",
    "value_cut_points",
    "write_audiences",
]

#: churn probability cut points ``(medium_from, high_from)``: ``p >= 0.6`` is "high" risk,
#: ``0.3 <= p < 0.6`` "medium", below 0.3 "low"
CHURN_CUTS: tuple[float, float] = (0.3, 0.6)
#: population quantiles of the value prediction that start the "medium" and "high" value
#: tiers: the top 20 % of customers are "high", the next 30 % "medium", the rest "low"
VALUE_QUANTILES: tuple[float, float] = (0.5, 0.8)
#: columns of an audience frame / file, in order
AUDIENCE_COLUMNS = [
    "customer_id",
    "segment",
    "segment_name",
    "churn_risk_tier",
    "value_tier",
    "offer",
]
#: how the offer score is computed (recorded in :func:`category_affinity`'s result)
SCORE = "lift x segment buyer rate"
_TIERS = np.array(["low", "medium", "high", None], dtype=object)


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
    seg_mean = _ratio(share_sum, known[:, None])
    seg_rate = _ratio(buyers, known[:, None])
    pop_known = int(known.sum())
    pop_mean = _ratio(share_sum.sum(axis=0), np.full(c, pop_known))
    pop_rate = _ratio(buyers.sum(axis=0), np.full(c, pop_known))
    lift = _ratio(seg_mean, np.broadcast_to(pop_mean, seg_mean.shape))
    lift = np.where(np.isnan(seg_mean), np.nan, lift)

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


# --------------------------------------------------------------------------------------
# audiences
# --------------------------------------------------------------------------------------


def value_cut_points(
    values: np.ndarray, quantiles: tuple[float, float] = VALUE_QUANTILES
) -> tuple[float, float]:
    """Global value-tier cut points from a population sample of value predictions.

    Pass a sample pooled over all buckets (e.g. the concatenated
    :func:`bigseg.predict.scoring.part_value_sample` results the pipeline already gathers for the
    high-value threshold) so that the tiers mean the same in every bucket.

    Parameters
    ----------
    values : array of float
        Value predictions; NaN ignored.
    quantiles : (float, float)
        Quantiles where the "medium" and "high" tiers start.

    Returns
    -------
    (float, float)
        ``(medium_from, high_from)``; ``(nan, nan)`` without a finite value (no value
        model: every value tier is then None).
    """
    lo, hi = quantiles
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"quantiles must satisfy 0 <= lo <= hi <= 1, got {quantiles}")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return (math.nan, math.nan)
    a, b = np.quantile(v, [lo, hi])
    return (float(a), float(b))


def _tier(x: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    """Tier of each value: "high" when ``x >= cuts[1]``, else "medium" when
    ``x >= cuts[0]``, else "low"; None for NaN values or NaN cut points."""
    lo, hi = (float(v) for v in cuts)
    x = np.asarray(x, dtype=np.float64)
    if math.isnan(lo) or math.isnan(hi):
        return np.full(len(x), None, dtype=object)
    if lo > hi:
        raise ValueError(f"cut points must be ascending, got {cuts}")
    code = (x >= lo).astype(np.int64) + (x >= hi)
    return _TIERS[np.where(np.isnan(x), 3, code)]


def marketing_consent(customers: pa.Table | pd.DataFrame) -> pd.Series | None:
    """Marketing consent per customer id from one bucket of the ``customers`` table.

    Returns a boolean Series indexed by ``customer_id`` (null consent -> False; a
    customer with several rows consents only if every row says so), or None when the
    table has no ``consent_marketing`` column (then :func:`audience_frame` excludes
    everyone).
    """
    if isinstance(customers, pa.Table):
        if "consent_marketing" not in customers.column_names:
            return None
        customers = customers.select(["customer_id", "consent_marketing"]).to_pandas()
    elif "consent_marketing" not in customers.columns:
        return None
    ok = pd.array(customers["consent_marketing"], dtype="boolean").fillna(False)
    s = pd.Series(ok.to_numpy(bool), index=pd.Index(customers["customer_id"]), dtype=bool)
    return s if s.index.is_unique else s.groupby(level=0).all()


def _lookup(index: pd.Index, ids: np.ndarray, what: str) -> np.ndarray:
    if not index.is_unique:
        raise ValueError(f"{what} has repeated customer ids")
    return index.get_indexer(ids)


def audience_frame(
    scores: pd.DataFrame,
    offers: pd.DataFrame | None,
    consent: pd.Series | None,
    value_cuts: tuple[float, float],
    churn_cuts: tuple[float, float] = CHURN_CUTS,
) -> pd.DataFrame:
    """The marketing audience of one bucket: consenting customers only.

    Parameters
    ----------
    scores : DataFrame
        Scores of the bucket (:func:`bigseg.predict.scoring.score_bucket`): ``customer_id``,
        ``segment``, ``segment_name``, ``churn_probability``, ``value_prediction``.
    offers : DataFrame or None
        :func:`next_best_offers` for the bucket (``customer_id``, ``offer_1``); matched
        by customer id. None: no offers (``offer`` all None).
    consent : Series of bool or None
        Marketing consent indexed by customer id (:func:`marketing_consent`). Only
        customers whose consent is True are kept: a customer missing from the Series,
        or with a null consent, is excluded; with ``consent=None`` (no
        ``consent_marketing`` column in the store) **everyone is excluded** — marketing
        needs an explicit opt-in, so the privacy-safe default is an empty audience.
    value_cuts : (float, float)
        Global ``(medium_from, high_from)`` value cut points from
        :func:`value_cut_points` over the whole population (not this bucket).
    churn_cuts : (float, float)
        ``(medium_from, high_from)`` churn probability cut points; default
        :data:`CHURN_CUTS` (``>= 0.6`` high, ``>= 0.3`` medium, else low).

    Returns
    -------
    DataFrame
        :data:`AUDIENCE_COLUMNS`: ``customer_id``, ``segment``, ``segment_name``,
        ``churn_risk_tier`` and ``value_tier`` ("low" / "medium" / "high"; None when the
        model is absent, i.e. the prediction is NaN) and ``offer`` (best category or
        None), in the order of ``scores``.
    """
    ids = scores["customer_id"].to_numpy()
    if consent is None:
        keep = np.zeros(len(ids), dtype=bool)
    else:
        pos = _lookup(consent.index, ids, "consent")
        ok = pd.array(consent, dtype="boolean").fillna(False).to_numpy(bool)
        keep = np.where(pos >= 0, np.append(ok, False)[pos], False)
    s = scores[keep]
    kept = ids[keep]
    if offers is None or "offer_1" not in offers.columns:
        offer = np.full(len(s), None, dtype=object)
    else:
        pos = _lookup(pd.Index(offers["customer_id"]), kept, "offers")
        vals = np.append(offers["offer_1"].to_numpy(dtype=object), None)
        offer = vals[np.where(pos >= 0, pos, len(offers))]
        offer = np.where(pd.isna(offer), None, offer)
    return pd.DataFrame(
        {
            "customer_id": kept,
            "segment": s["segment"].to_numpy(),
            "segment_name": pd.Series(s["segment_name"].to_numpy(dtype=object), dtype=object),
            "churn_risk_tier": pd.Series(_tier(s["churn_probability"], churn_cuts), dtype=object),
            "value_tier": pd.Series(_tier(s["value_prediction"], value_cuts), dtype=object),
            "offer": pd.Series(offer, dtype=object),
        }
    )


def bucket_audience(
    frame: pd.DataFrame,
    scores: pd.DataFrame,
    affinity: dict,
    consent: pd.Series | None,
    value_cuts: tuple[float, float],
    min_lift: float = 1.2,
    churn_cuts: tuple[float, float] = CHURN_CUTS,
) -> pd.DataFrame:
    """:func:`next_best_offers` (first offer) then :func:`audience_frame` for one
    bucket: ``frame`` is the bucket's feature frame, ``scores`` its scores (same rows,
    same order)."""
    offers = next_best_offers(frame, scores["segment"].to_numpy(), affinity, n=1, min_lift=min_lift)
    return audience_frame(scores, offers, consent, value_cuts, churn_cuts)


def _schema(id_type: pa.DataType) -> pa.Schema:
    s = pa.string()
    return pa.schema(
        [
            ("customer_id", id_type),
            ("segment", pa.int32()),
            ("segment_name", s),
            ("churn_risk_tier", s),
            ("value_tier", s),
            ("offer", s),
        ]
    )


def _id_type(df: pd.DataFrame) -> pa.DataType | None:
    t = pa.Table.from_pandas(df[["customer_id"]], preserve_index=False).schema[0].type
    if pa.types.is_null(t):
        return None
    return pa.string() if pa.types.is_large_string(t) else t


def write_audiences(
    frames: Iterable[pd.DataFrame],
    output: str | Path,
    final: str | Path | None = None,
    segment_ids: Iterable[int] | None = None,
    row_group_rows: int = 65_536,
) -> dict[int, int]:
    """Write ``<final>/segment=<id>.parquet``, one file per segment, atomically.

    The audience frames of the buckets (:func:`audience_frame`) are **streamed**: each
    frame is split by segment and appended to that segment's open
    :class:`pyarrow.parquet.ParquetWriter`, buffered up to ``row_group_rows`` rows per
    segment. Client memory is therefore O(one bucket frame + segments x
    row_group_rows), not O(audience size), provided ``frames`` is lazy (e.g. a generator
    that gathers one bucket's future at a time). One file per segment needs a single
    writer per file, so the rows pass through this process; workers writing per-bucket
    part files that are merged later would send the same bytes through one process
    (plus a second read and write), so this is the simpler equivalent.

    Everything is written into a staging directory and published with
    :func:`bigseg.store.publish.staged_dir`: on any error (an invalid frame, a failing
    generator, a full disk) the staging directory is deleted and the previous
    ``final`` directory stays exactly as it was.

    Parameters
    ----------
    frames : iterable of DataFrame
        Audience frames with :data:`AUDIENCE_COLUMNS` (any order, extra columns
        ignored), e.g. one per bucket.
    output : str or Path
        The pipeline's output root (staging happens in ``output/.staging``).
    final : str or Path, optional
        The directory to publish; default ``output/audiences``.
    segment_ids : iterable of int, optional
        Segments that get a file even when no consenting customer is in them (an empty
        file with the schema), so that every segment has its file.
    row_group_rows : int
        Rows buffered per segment before a row group is written.

    Returns
    -------
    dict
        Rows written per segment id (0 for the empty files of ``segment_ids``).

    Raises
    ------
    ValueError
        If a frame lacks a column, has a null segment, or its ``customer_id`` type
        differs from the first frame's (Arrow conversion errors propagate as they are).
    """
    output = Path(output)
    final = Path(final) if final is not None else output / "audiences"
    schema: pa.Schema | None = None
    buf: dict[int, list[pa.Table]] = {}
    pending: dict[int, int] = {}
    counts: dict[int, int] = {}
    with staged_dir(output, final) as d, contextlib.ExitStack() as stack:
        writers: dict[int, pq.ParquetWriter] = {}

        def flush(s: int) -> None:
            if not buf.get(s):
                return
            if s not in writers:
                writers[s] = stack.enter_context(
                    pq.ParquetWriter(d / f"segment={s}.parquet", schema, compression="zstd")
                )
            writers[s].write_table(pa.concat_tables(buf.pop(s)), row_group_size=row_group_rows)
            pending[s] = 0

        for df in frames:
            missing = [c for c in AUDIENCE_COLUMNS if c not in df.columns]
            if missing:
                raise ValueError(f"audience frame lacks columns {missing}")
            if not len(df):
                continue
            if df["segment"].isna().any():
                raise ValueError("audience frame has rows with a null segment")
            if schema is None:
                schema = _schema(_id_type(df) or pa.int64())
            t = pa.Table.from_pandas(df[AUDIENCE_COLUMNS], schema=schema, preserve_index=False)
            seg = t.column("segment").to_numpy()
            order = np.argsort(seg, kind="stable")
            uniq, start = np.unique(seg[order], return_index=True)
            t = t.take(pa.array(order))
            bounds = [*start.tolist(), len(seg)]
            for j, s in enumerate(uniq.tolist()):
                piece = t.slice(bounds[j], bounds[j + 1] - bounds[j])
                buf.setdefault(s, []).append(piece)
                pending[s] = pending.get(s, 0) + piece.num_rows
                counts[s] = counts.get(s, 0) + piece.num_rows
                if pending[s] >= row_group_rows:
                    flush(s)
        for s in list(buf):
            flush(s)
        schema = schema or _schema(pa.int64())
        for s in segment_ids or ():
            s = int(s)
            if s not in counts:
                pq.write_table(schema.empty_table(), d / f"segment={s}.parquet", compression="zstd")
                counts[s] = 0
    return dict(sorted(counts.items()))
