"""Per-bucket scoring tasks, run on the Dask workers.

The score stage runs in two phases. Phase 1 (:func:`stage_scores`, one task per bucket,
resumable) saves the bucket's scores and the small statistics the global steps need in
the stage's resumable staging dir. Phase 2 (:func:`part_value_sample`, then
:func:`write_scores`) adds the global columns (``high_value``, offers) to every saved
part and writes the Parquet for publication. A bucket goes through the same saved files
whether its run was fresh or resumed, so a resumed run equals an undisturbed one by
construction.

Module-level functions only: Dask pickles them by reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import pyarrow as pa

from bigseg.features.bucket import BucketFeatures, Cutoff
from bigseg.features.tasks import matrix
from bigseg.io import tables
from bigseg.io.commit import write_text_atomic
from bigseg.io.resume import dumps_stats
from bigseg.predict import blend, segmented
from bigseg.predict.drivers import driver_codes, importance_sums, text_column, top_order
from bigseg.predict.serving import ServingModels
from bigseg.segment.fitted import FittedSegmenter
from bigseg.store import Store

#: feature columns saved beside the scores in phase 1 for the offers of phase 2
OFFER_INPUT_PREFIX = "category_share_"
#: segment reason columns per customer
N_REASONS = 3


@dataclass(frozen=True)
class ScoreJob:
    """What phase 1 needs besides the bucket: the segmenter and models that score, the
    SHAP driver mode, the profile features, the category vocabulary of the offers and
    the drift reference (None without one)."""

    seg: FittedSegmenter
    serving: ServingModels
    drivers: str
    features: tuple[str, ...]
    categories: tuple[str, ...]
    drift_reference: dict | None


def segment_reasons(
    Z: np.ndarray, seg: np.ndarray, centres: np.ndarray, features: list[str], top: int = N_REASONS
) -> list[np.ndarray]:
    """Why each customer is in its segment: the features that pull it closest to its own
    segment's centre rather than to the next-closest one (largest
    ``(z - c_next)^2 - (z - c_own)^2``), as text like ``"recency_days: low"``."""
    rc = reason_codes(Z, seg, centres, features, top)
    if rc is None:
        return [np.full(len(Z), None, dtype=object) for _ in range(top)]
    texts, codes = rc
    return [texts[c] for c in codes]


def reason_codes(
    Z: np.ndarray, seg: np.ndarray, centres: np.ndarray, features: list[str], top: int = N_REASONS
) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """:func:`segment_reasons` as every (feature, low/high) text once and, per rank, each
    row's position in them; None without rows or without a second segment."""
    n, k = len(Z), len(centres)
    if n == 0 or k < 2:
        return None
    d2 = (Z * Z).sum(1)[:, None] - 2.0 * Z @ centres.T + (centres * centres).sum(1)[None, :]
    d2[np.arange(n), seg] = np.inf
    nxt = np.argmin(d2, axis=1)
    own_c, nxt_c = centres[seg], centres[nxt]
    pull = (Z - nxt_c) ** 2 - (Z - own_c) ** 2
    order = top_order(pull, min(top, Z.shape[1]))
    texts = np.array([f"{f}{lv}" for f in features for lv in (": high", ": low")], dtype=object)
    rows = np.arange(n)
    codes = []
    for r in range(order.shape[1]):
        j = order[:, r]
        codes.append(2 * j + (own_c[rows, j] < nxt_c[rows, j]))
    return texts, codes


def score_bucket(
    res: BucketFeatures,
    cutoff: Cutoff,
    seg: FittedSegmenter,
    serving: ServingModels,
    drivers: str = "approx",
    n_drivers: int = 3,
) -> dict:
    """Scores of one bucket: segment (and why), churn probability and value prediction
    from the model chosen for each segment, and each prediction's top drivers (SHAP).

    Returns ``{"scores": DataFrame, "importance": {target: {segment id: (sum |SHAP| per
    feature, rows)}}}``."""
    df = res.frame(cutoff)
    pre = seg.preprocessor()
    Z, idx = seg.assign(df)
    segs = np.asarray(seg.ids, dtype=np.int32)[idx]
    out = pd.DataFrame({"customer_id": df["customer_id"].to_numpy(), "segment": segs})
    out["segment_name"] = np.asarray(seg.names, dtype=object)[idx]
    rc = reason_codes(Z, idx, seg.arrays["centres"], pre.features)
    if rc is None:  # no second segment to compare with: no reasons
        for r in range(1, N_REASONS + 1):
            out[f"segment_reason_{r}"] = np.full(len(out), None, dtype=object)
    else:
        for r, codes in enumerate(rc[1], start=1):
            out[f"segment_reason_{r}"] = text_column(rc[0], codes)
    models, feats = serving.models, serving.features
    importance = {}
    X = segmented.model_matrix(df, feats, segs) if models else None
    # a target's column only with its model: a target that could not be learnt is
    # absent from the scores (metrics.json says why), never a column of NaN
    targets = [(t, col) for t, col in segmented.TARGET_COLUMNS.items() if t in models]
    for t, col in targets:
        pred, contrib = segmented.predict_explain(
            X, segs, models[t], serving.choice.get(t, {}), drivers
        )
        pred, alone = blend.serve(
            t, pred, segs, df, serving.sources.get(t, {}), serving.blend.get(t, {})
        )
        out[col] = np.maximum(pred, 0) if t == "value" else pred
        if contrib is None:  # drivers: off
            continue
        for r, (texts, codes) in enumerate(driver_codes(contrib, feats, n_drivers), 1):
            if alone.any() and r <= len(blend.BGNBD_DRIVERS):
                texts = np.append(texts, blend.BGNBD_DRIVERS[r - 1])
                codes = np.where(alone, len(texts) - 1, codes)
            out[f"{t}_driver_{r}"] = text_column(texts, codes)
        importance[t] = importance_sums(contrib, segs, list(seg.ids))
    return {"scores": out, "importance": importance}


def _sample(v: np.ndarray, k: int, fraction: float, seed: int) -> np.ndarray:
    if fraction >= 1:
        return v
    rng = np.random.default_rng([seed, k])
    return v[rng.random(len(v)) < fraction]


def _floats(t: pa.Table, name: str) -> np.ndarray:
    """A float column as numpy, nulls as NaN."""
    return t.column(name).to_numpy()


def stage_scores(
    res: BucketFeatures, cutoff: Cutoff, job: ScoreJob, part_path: str, stats_path: str
) -> str:
    """Phase 1 of scoring one bucket: :func:`score_bucket`, then the bucket's part of
    every global step (row count, SHAP importance sums, segment profile sums, category
    sums for the offers, drift bin counts), computed from the features while they are
    in memory. Writes the scores (plus the ``category_share_*`` features the offers
    need) to ``part_path`` and then the statistics to ``stats_path``, each atomically;
    returns the statistics as the JSON text written
    (:func:`bigseg.io.resume.dumps_stats`)."""
    sc = score_bucket(res, cutoff, job.seg, job.serving, job.drivers)
    scores, frame = sc["scores"], res.frame(cutoff)
    k = max(job.seg.ids) + 1  # bins by segment id (ids persist across runs, with gaps)
    cats, ref = list(job.categories), job.drift_reference
    stats = {
        "rows": len(scores),
        "importance": sc["importance"],
        "profile": profile(frame, scores, k, list(job.features)),
        "categories": category_sums(frame, scores, k, cats) if cats else None,
        "drift": drift_counts(frame, scores, ref) if ref else None,
    }
    t = tables.from_pandas(scores)
    if cats:
        for c in frame.columns:
            if c.startswith(OFFER_INPUT_PREFIX):
                t = t.append_column(c, pa.array(frame[c].to_numpy(), from_pandas=False))
    tables.write_arrow_atomic(part_path, t)
    text = dumps_stats(stats)
    write_text_atomic(stats_path, text)
    return text


def part_value_sample(part_path: str, k: int, fraction: float, seed: int) -> np.ndarray:
    """Phase 2: the bucket's sample of value predictions for the global thresholds
    (empty without a value model)."""
    t = tables.read_arrow(part_path)
    if "value_prediction" not in t.column_names:
        return np.zeros(0, np.float32)
    return _sample(_floats(t, "value_prediction"), k, fraction, seed)


def write_scores(
    part_path: str,
    threshold: float,
    affinity: dict | None,
    value_cuts: tuple[float, float],
    store: Store,
    k: int,
    path: str,
    audience_path: str,
) -> int:
    """Phase 2 of one bucket: the saved scores with next-best offers (when ``affinity``
    is given) and ``high_value`` (value prediction >= ``threshold``; None: no value
    model, no column), written as Parquet
    to ``path`` (in the publication's staging dir), and the bucket's audience rows
    (:func:`audience`) saved to ``audience_path`` (read back by
    :func:`bigseg.predict.audiences.write_segment_group`);
    returns the row count."""
    from bigseg.predict import offers

    t = tables.read_arrow(part_path)
    share = [c for c in t.column_names if c.startswith(OFFER_INPUT_PREFIX)]
    scores = t.drop_columns(share)
    seg = scores.column("segment").to_numpy()
    preds = [c for c in ("churn_probability", "value_prediction") if c in scores.column_names]
    aud = scores.select(["customer_id", "segment", "segment_name", *preds]).to_pandas()
    for c in ("churn_probability", "value_prediction"):
        if c not in aud:  # a target not learnt: its audience tier is None
            aud[c] = np.full(len(aud), np.nan)
    if affinity is not None:
        frame = pd.DataFrame(
            {"customer_id": aud["customer_id"].to_numpy(), **{c: _floats(t, c) for c in share}}
        )
        nbo = offers.next_best_offers(frame, seg, affinity)
        extra = tables.from_pandas(nbo.drop(columns=["customer_id"]))
        for f, col in zip(extra.schema, extra.columns, strict=True):
            scores = scores.append_column(f, col)
        aud["offer_1"] = nbo["offer_1"].to_numpy()
    if threshold is not None:  # None: no value model, so no high_value either
        high = _floats(scores, "value_prediction") >= threshold
        scores = scores.append_column("high_value", pa.array(high, pa.bool_()))
    tables.write_arrow_atomic(
        audience_path, tables.from_pandas(audience(store, k, aud, value_cuts))
    )
    if scores.num_rows:  # an empty bucket: no file (see features.tasks.write_parquet)
        tables.write_parquet(path, tables.text_for_null(scores), compression="zstd")
    return scores.num_rows


def profile(frame: pd.DataFrame, scores: pd.DataFrame, k: int, features: list[str]) -> dict:
    """Per-segment sums for profiles: counts, feature sums and non-missing counts (a
    feature can be NaN, e.g. days since the last response of someone who never
    responded), prediction sums."""
    X = np.asfortranarray(matrix(frame, features))
    labels = scores["segment"].to_numpy().astype(np.int64)
    counts = np.bincount(labels, minlength=k)
    sums, sumsq, present = _segment_sums(X, labels, k)
    out = {"counts": counts, "sums": sums, "sumsq": sumsq, "present": present}
    for col in ("churn_probability", "value_prediction"):
        v = scores[col].to_numpy(np.float64) if col in scores else np.full(len(labels), np.nan)
        out[col] = np.bincount(labels, weights=v, minlength=k)  # NaN when the model is absent
    return out


@numba.njit(cache=True, nogil=True)
def _segment_sums(X, labels, k):  # pragma: no cover - compiled
    """Per segment and feature: the sum and the sum of squares of the finite values (in
    float64), and how many there are. One read of ``X`` (a column at a time, rows in
    order: the sums are those np.bincount gives, bit for bit); the NumPy form made six
    passes over a float64 copy."""
    d = X.shape[1]
    sums, sumsq, present = np.zeros((k, d)), np.zeros((k, d)), np.zeros((k, d))
    for j in range(d):
        for i in range(X.shape[0]):
            v = np.float64(X[i, j])
            if np.isfinite(v):
                s = labels[i]
                sums[s, j] += v
                sumsq[s, j] += v * v
                present[s, j] += 1.0
    return sums, sumsq, present


def category_sums(frame: pd.DataFrame, scores: pd.DataFrame, k: int, categories: list) -> dict:
    from bigseg.predict import offers

    return offers.segment_category_sums(frame, scores["segment"].to_numpy(), k, categories)


def audience(
    store: Store, k: int, scores: pd.DataFrame, value_cuts: tuple[float, float]
) -> pd.DataFrame:
    """The bucket's audience rows: consenting customers with tiers and first offer."""
    from bigseg.predict import offers

    consent = None  # no consent column: nobody has opted in to marketing, audiences are empty
    if store.has("customers") and "consent_marketing" in store.schema("customers"):
        consent = offers.marketing_consent(
            store.read_bucket("customers", k, ["customer_id", "consent_marketing"])
        )
    nbo = scores[["customer_id", "offer_1"]] if "offer_1" in scores else None
    return offers.audience_frame(scores, nbo, consent, value_cuts)


def drift_counts(frame: pd.DataFrame, scores: pd.DataFrame, reference: dict) -> dict:
    """Bin counts of one bucket against the drift reference: the features, the scores,
    and customers per segment."""
    from bigseg.monitor import drift

    feats = reference.get("features")
    out = {
        "features": drift.bucket_counts(frame.reindex(columns=list(feats["features"])), feats)
        if feats
        else {}
    }
    sref = reference.get("scores")
    out["scores"] = (
        drift.bucket_counts(scores.reindex(columns=list(sref["features"])), sref) if sref else {}
    )
    seg = scores["segment"].to_numpy()
    ids, counts = np.unique(seg, return_counts=True)
    out["segments"] = {str(int(i)): int(c) for i, c in zip(ids, counts, strict=True)}
    return out


def predict_sample(
    res: BucketFeatures,
    cutoff: Cutoff,
    k: int,
    fraction: float,
    seed: int,
    seg: FittedSegmenter,
    serving: ServingModels,
) -> pd.DataFrame:
    """The served predictions (each row by its segment's chosen model) for a
    reproducible sample of the frame at ``cutoff``: the score columns of ``scores/``."""
    df = res.frame(cutoff)
    if fraction < 1:
        rng = np.random.default_rng([seed, k, 23])
        df = df[rng.random(len(df)) < fraction]
    segs = seg.segment_ids(df)
    X = segmented.model_matrix(df, serving.features, segs)
    out = {}
    for t, m in serving.models.items():
        p = segmented.predict(X, segs, m, serving.choice.get(t, {}))
        p, _ = blend.serve(t, p, segs, df, serving.sources.get(t, {}), serving.blend.get(t, {}))
        out[segmented.TARGET_COLUMNS[t]] = np.maximum(p, 0) if t == "value" else p
    return pd.DataFrame(out)


def segments_of(res: BucketFeatures, cutoff: Cutoff, seg: FittedSegmenter) -> np.ndarray:
    """Segment id of every row at ``cutoff`` under the segmenter ``seg``."""
    return seg.segment_ids(res.frame(cutoff))
