"""Marketing audiences: consenting customers with their segment, churn-risk and value
tiers and first offer, and the per-segment audience files (see
:mod:`bigseg.predict.offers` for the whole flow)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bigseg.io import tables
from bigseg.io.commit import staged_dir
from bigseg.io.layout import Layout
from bigseg.io.storage import as_path
from bigseg.predict.affinity import next_best_offers

__all__ = [
    "AUDIENCE_COLUMNS",
    "CHURN_CUTS",
    "VALUE_QUANTILES",
    "audience_frame",
    "bucket_audience",
    "marketing_consent",
    "value_cut_points",
    "write_audiences",
    "write_segment_group",
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
_TIERS = np.array(["low", "medium", "high", None], dtype=object)


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
    id_type: pa.DataType | None = None,
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
    :func:`bigseg.io.commit.staged_dir`: on any error (an invalid frame, a failing
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
    id_type : pyarrow.DataType, optional
        The store's customer id type, for the empty files when no frame has a row
        (default ``int64``).

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
    output = as_path(output)
    final = as_path(final) if final is not None else Layout(output).audiences
    with staged_dir(output, final) as d:
        return _write_segment_files(d, frames, segment_ids or (), id_type, row_group_rows)


def _write_segment_files(d, frames, segment_ids, id_type, row_group_rows) -> dict[int, int]:
    with _SegmentFiles(d, row_group_rows) as files:
        for df in frames:
            files.add(df)
        files.finish(segment_ids, id_type)
    return dict(sorted(files.counts.items()))


def write_segment_group(
    paths: list[str],
    group: int,
    groups: int,
    d: str | Path,
    segment_ids: Iterable[int] = (),
    id_type: pa.DataType | None = None,
    row_group_rows: int = 65_536,
) -> dict[int, int]:
    """One worker's share of :func:`write_audiences`: the files of the segments whose
    id modulo ``groups`` is ``group``, written into ``d`` (a staging directory the
    caller publishes) from the buckets' saved audience rows (``paths``, Arrow files, in
    bucket order). Each file has the same rows in the same order as from
    :func:`write_audiences`; the groups share no file, so they are written side by side
    (300k customers: 0.3 s of the score stage on the client, with the workers idle).
    Returns the rows written per segment of the group."""

    def frames():
        for p in paths:
            t = tables.read_arrow(p)
            # a null segment counts as 0: the first group's writer refuses it
            seg = t.column("segment").fill_null(0).to_numpy(zero_copy_only=False)
            yield t.filter(pa.array(seg % groups == group)).to_pandas()

    mine = [s for s in segment_ids if int(s) % groups == group]
    return _write_segment_files(as_path(d), frames(), mine, id_type, row_group_rows)


class _SegmentFiles:
    """One streaming Parquet writer per segment in directory ``d``, with a buffer of up
    to ``row_group_rows`` rows each (see :func:`write_audiences`)."""

    def __init__(self, d: Path, row_group_rows: int):
        self.d, self.row_group_rows = d, row_group_rows
        self.schema: pa.Schema | None = None
        self.buf: dict[int, list[pa.Table]] = {}
        self.pending: dict[int, int] = {}
        self.counts: dict[int, int] = {}
        self.writers: dict = {}
        self.stack = contextlib.ExitStack()

    def __enter__(self):
        self.stack.__enter__()
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)

    def _path(self, s: int) -> Path:
        return self.d / f"segment={s}.parquet"

    def flush(self, s: int) -> None:
        if not self.buf.get(s):
            return
        if s not in self.writers:
            self.writers[s] = self.stack.enter_context(
                tables.parquet_writer(self._path(s), self.schema, compression="zstd")
            )
        self.writers[s].write_table(
            pa.concat_tables(self.buf.pop(s)), row_group_size=self.row_group_rows
        )
        self.pending[s] = 0

    def add(self, df: pd.DataFrame) -> None:
        """Split one audience frame by segment and buffer (or write) its pieces."""
        missing = [c for c in AUDIENCE_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"audience frame lacks columns {missing}")
        if not len(df):
            return
        if df["segment"].isna().any():
            raise ValueError("audience frame has rows with a null segment")
        if self.schema is None:
            self.schema = _schema(_id_type(df) or pa.int64())
        t = pa.Table.from_pandas(df[AUDIENCE_COLUMNS], schema=self.schema, preserve_index=False)
        seg = t.column("segment").to_numpy()
        order = np.argsort(seg, kind="stable")
        uniq, start = np.unique(seg[order], return_index=True)
        t = t.take(pa.array(order))
        bounds = [*start.tolist(), len(seg)]
        for j, s in enumerate(uniq.tolist()):
            piece = t.slice(bounds[j], bounds[j + 1] - bounds[j])
            self.buf.setdefault(s, []).append(piece)
            self.pending[s] = self.pending.get(s, 0) + piece.num_rows
            self.counts[s] = self.counts.get(s, 0) + piece.num_rows
            if self.pending[s] >= self.row_group_rows:
                self.flush(s)

    def finish(self, segment_ids: Iterable[int], id_type: pa.DataType | None = None) -> None:
        """Write what is buffered, and an empty file for each of ``segment_ids`` that
        got no row (ids typed as the rows written, else ``id_type``, else int64)."""
        for s in list(self.buf):
            self.flush(s)
        schema = self.schema or _schema(id_type or pa.int64())
        for s in segment_ids:
            s = int(s)
            if s not in self.counts:
                tables.write_parquet(self._path(s), schema.empty_table(), compression="zstd")
                self.counts[s] = 0
