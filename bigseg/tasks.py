"""Per-bucket task functions run on the Dask workers by :mod:`bigseg.pipeline`.

Each takes the result of :func:`bigseg.features.bucket_frames` for one bucket (a future
resolved on the worker) and returns something small, or writes its own output file.
Module-level functions only: they are pickled by reference.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bigseg.features import FEATURE_NAMES, feature_columns
from bigseg.segment.preprocess import Preprocessor
from bigseg.store import Store


def max_timestamp(store: Store, k: int) -> int | None:
    t = store.read_bucket("transactions", k, ["timestamp"])
    if t.num_rows == 0:
        return None
    return int(t.column("timestamp").cast("int64").to_numpy().max())


def excluded(res: dict) -> int:
    return int(res["excluded"])


def n_rows(res: dict, name: str) -> int:
    return len(res["frames"][name])


def write_parquet(df: pd.DataFrame, path: str) -> int:
    # the staging dir exists (no mkdir: a task cancelled after a failure must not
    # re-create a staging dir that was cleaned up)
    t = pa.Table.from_pandas(df, preserve_index=False)
    # pandas 3 strings come back as large_string: keep the store's plain string type
    t = t.cast(
        pa.schema(
            [
                pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                for f in t.schema
            ]
        )
    )
    pq.write_table(t, path, compression="zstd")
    return len(df)


def columns(res: dict, name: str) -> list[str]:
    return feature_columns(res["frames"][name])


def matrix(df: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The model matrix: ``features`` in order (a column a bucket lacks is NaN)."""
    return df.reindex(columns=features).to_numpy(np.float32)


def write_features(res: dict, name: str, path: str, features: list[str]) -> int:
    df = res["frames"][name].reindex(columns=["customer_id", *features])
    return write_parquet(df, path)


def moments(res: dict, name: str, features: list[str], log: list[str]) -> tuple:
    return Preprocessor.moments(res["frames"][name], features, set(log))


def sample_rows(res: dict, name: str, k: int, fraction: float, seed: int) -> pd.DataFrame:
    df = res["frames"][name]
    if fraction >= 1:
        return df[FEATURE_NAMES]
    rng = np.random.default_rng([seed, k])
    return df[FEATURE_NAMES][rng.random(len(df)) < fraction]


def x_block(res: dict, name: str, pre: dict, device: str = "cpu"):
    """The scaled segmentation matrix of one bucket, on the device that will cluster it
    (a CuPy array on GPU workers: it stays resident there for every Lloyd iteration)."""
    from bigseg.backend import resolve

    return Preprocessor.from_dict(pre).transform(res["frames"][name], resolve(device).xp)


def segment_reasons(
    Z: np.ndarray, seg: np.ndarray, centres: np.ndarray, features: list[str], top: int = 3
) -> list[np.ndarray]:
    """Why each customer is in its segment: the features that pull it closest to its own
    segment's centre rather than to the next-closest one (largest
    ``(z - c_next)^2 - (z - c_own)^2``), as text like ``"recency_days: low"``."""
    n, k = len(Z), len(centres)
    if n == 0 or k < 2:
        return [np.full(n, None, dtype=object) for _ in range(top)]
    d2 = (Z * Z).sum(1)[:, None] - 2.0 * Z @ centres.T + (centres * centres).sum(1)[None, :]
    d2[np.arange(n), seg] = np.inf
    nxt = np.argmin(d2, axis=1)
    own_c, nxt_c = centres[seg], centres[nxt]
    pull = (Z - nxt_c) ** 2 - (Z - own_c) ** 2
    from bigseg.predict import segmented

    n_top = min(top, Z.shape[1])
    order = segmented.top_order(pull, n_top)
    # every (feature, low/high) text made once, then picked per row
    texts = np.array([f"{f}{lv}" for f in features for lv in (": high", ": low")], dtype=object)
    rows = np.arange(n)
    out = []
    for r in range(n_top):
        j = order[:, r]
        low = own_c[rows, j] < nxt_c[rows, j]
        out.append(texts[2 * j + low])
    return out


def score_bucket(
    res: dict,
    name: str,
    pre: dict,
    meta: dict,
    arrays: dict,
    names: list[str],
    models: dict,
    ids: list[int],
    choice: dict,
    model_features: list[str] | None,
    drivers: str = "approx",
    n_drivers: int = 3,
) -> dict:
    """Scores of one bucket: segment (and why), churn probability and value prediction
    from the model chosen for each segment, and each prediction's top drivers (SHAP).

    Returns ``{"scores": DataFrame, "importance": {target: {segment id: (sum |SHAP| per
    feature, rows)}}}``."""
    from bigseg.predict import segmented
    from bigseg.segment import serialize

    df = res["frames"][name]
    p = Preprocessor.from_dict(pre)
    Z = p.transform(df)
    seg = serialize.assign(meta, arrays, Z)
    seg_ids = np.asarray(ids, dtype=np.int32)
    segs = seg_ids[seg]
    out = pd.DataFrame({"customer_id": df["customer_id"].to_numpy(), "segment": segs})
    out["segment_name"] = np.asarray(names, dtype=object)[seg]
    for r, col in enumerate(segment_reasons(Z, seg, arrays["centres"], p.features), start=1):
        out[f"segment_reason_{r}"] = col
    n = len(df)
    importance = {}
    X = segmented.model_matrix(df, model_features, segs) if models else None
    # churn and value columns always exist (NaN without a model); response only with one
    targets = [
        (t, col) for t, col in segmented.TARGET_COLUMNS.items() if t != "response" or t in models
    ]
    for t, col in targets:
        if t not in models:
            out[col] = np.full(n, np.nan, np.float32)
            continue
        pred, contrib = segmented.predict_explain(X, segs, models[t], choice.get(t, {}), drivers)
        out[col] = np.maximum(pred, 0) if t == "value" else pred
        if contrib is None:  # drivers: off
            continue
        for r, drv in enumerate(segmented.top_drivers(contrib, model_features, n_drivers), 1):
            out[f"{t}_driver_{r}"] = drv
        importance[t] = segmented.importance_sums(contrib, segs, list(ids))
    return {"scores": out, "importance": importance}


def migration(scores: pd.DataFrame, old_path: str) -> dict:
    """Counts of (previous segment, new segment) for one bucket; customers not in the
    previous segments count as coming from "new customer"."""
    import os

    new = scores[["customer_id", "segment"]]
    if os.path.exists(old_path):
        old = pq.read_table(old_path, columns=["customer_id", "segment"]).to_pandas()
        m = new.merge(old, on="customer_id", how="left", suffixes=("", "_old"))
        prev = (
            m["segment_old"]
            .astype("Int64")
            .astype(object)
            .where(m["segment_old"].notna(), "new customer")
        )
    else:
        m, prev = new, pd.Series(["new customer"] * len(new))
    return (
        pd.Series(1, index=pd.MultiIndex.from_arrays([prev.to_numpy(), m["segment"].to_numpy()]))
        .groupby(level=[0, 1])
        .sum()
        .to_dict()
    )


def _sample(v: np.ndarray, k: int, fraction: float, seed: int) -> np.ndarray:
    if fraction >= 1:
        return v
    rng = np.random.default_rng([seed, k])
    return v[rng.random(len(v)) < fraction]


# -- the score stage, in two phases ----------------------------------------------------
# Phase 1 (stage_scores, one task per bucket, resumable): the bucket's scores and the
# small statistics the global steps need, saved in the stage's resumable staging dir.
# Phase 2 (part_value_sample, then write_scores): the global columns (high_value,
# offers) added to every saved part and the Parquet written for publication. Both runs of
# a bucket, fresh or resumed, go through the same saved files, so a resumed run is
# identical to an undisturbed one by construction.

#: feature columns saved beside the scores in phase 1 for the offers of phase 2
OFFER_INPUT_PREFIX = "category_share_"


def _arrow(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table with plain ``string`` columns (as :func:`write_parquet`)."""
    t = pa.Table.from_pandas(df, preserve_index=False)
    return t.cast(
        pa.schema(
            [
                pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                for f in t.schema
            ]
        )
    )


def _write_arrow(t: pa.Table, path: str) -> None:
    """Arrow IPC file (LZ4), written to a unique temp name and renamed into place."""
    import uuid

    tmp = os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    )
    with (
        pa.OSFile(tmp, "wb") as sink,
        pa.ipc.new_file(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w,
    ):
        w.write_table(t)
    os.replace(tmp, path)


def _read_arrow(path: str, columns: list[str] | None = None) -> pa.Table:
    with pa.memory_map(path) as src:
        t = pa.ipc.open_file(src).read_all()
    return t.select(columns) if columns is not None else t


def _floats(t: pa.Table, name: str) -> np.ndarray:
    """A float column as numpy, nulls as NaN."""
    return t.column(name).to_numpy()


def stage_scores(
    res: dict,
    name: str,
    pre: dict,
    meta: dict,
    arrays: dict,
    names: list[str],
    models: dict,
    ids: list[int],
    choice: dict,
    model_features: list[str] | None,
    drivers: str,
    features: list[str],
    categories: list[str],
    drift_reference: dict | None,
    part_path: str,
    stats_path: str,
) -> str:
    """Phase 1 of scoring one bucket: :func:`score_bucket`, then the bucket's part of
    every global step (row count, SHAP importance sums, segment profile sums, category
    sums for the offers, drift bin counts), computed from the features while they are
    in memory. Writes the scores (plus the ``category_share_*`` features the offers
    need) to ``part_path`` and then the statistics to ``stats_path``, each atomically;
    returns the statistics as the JSON text written
    (:func:`bigseg.store.publish.dumps_stats`)."""
    from bigseg.store.publish import dumps_stats, write_text_atomic

    sc = score_bucket(
        res, name, pre, meta, arrays, names, models, ids, choice, model_features, drivers
    )
    scores, frame = sc["scores"], res["frames"][name]
    k = max(ids) + 1  # bins by segment id (ids persist across runs, with gaps)
    stats = {
        "rows": len(scores),
        "importance": sc["importance"],
        "profile": profile(res, name, scores, k, features),
        "categories": category_sums(res, name, scores, k, categories) if categories else None,
        "drift": drift_counts(res, name, scores, drift_reference) if drift_reference else None,
    }
    t = _arrow(scores)
    if categories:
        for c in frame.columns:
            if c.startswith(OFFER_INPUT_PREFIX):
                t = t.append_column(c, pa.array(frame[c].to_numpy(), from_pandas=False))
    _write_arrow(t, part_path)
    text = dumps_stats(stats)
    write_text_atomic(stats_path, text)
    return text


def part_value_sample(part_path: str, k: int, fraction: float, seed: int) -> np.ndarray:
    """Phase 2: the bucket's sample of value predictions for the global thresholds."""
    return _sample(
        _floats(_read_arrow(part_path, ["value_prediction"]), "value_prediction"), k, fraction, seed
    )


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
    is given) and ``high_value`` (value prediction >= ``threshold``), written as Parquet
    to ``path`` (in the publication's staging dir), and the bucket's audience rows
    (:func:`audience`) saved to ``audience_path`` (read back by :func:`read_audience`);
    returns the row count."""
    from bigseg.predict import offers

    t = _read_arrow(part_path)
    share = [c for c in t.column_names if c.startswith(OFFER_INPUT_PREFIX)]
    scores = t.drop_columns(share)
    seg = scores.column("segment").to_numpy()
    aud = scores.select(
        ["customer_id", "segment", "segment_name", "churn_probability", "value_prediction"]
    ).to_pandas()
    if affinity is not None:
        frame = pd.DataFrame(
            {"customer_id": aud["customer_id"].to_numpy(), **{c: _floats(t, c) for c in share}}
        )
        nbo = offers.next_best_offers(frame, seg, affinity)
        extra = _arrow(nbo.drop(columns=["customer_id"]))
        for f, col in zip(extra.schema, extra.columns, strict=True):
            scores = scores.append_column(f, col)
        aud["offer_1"] = nbo["offer_1"].to_numpy()
    high = _floats(scores, "value_prediction") >= threshold
    scores = scores.append_column("high_value", pa.array(high, pa.bool_()))
    _write_arrow(_arrow(audience(store, k, aud, value_cuts)), audience_path)
    pq.write_table(scores, path, compression="zstd")
    return scores.num_rows


def read_audience(path: str) -> pd.DataFrame:
    """The audience rows saved by :func:`write_scores`."""
    return _read_arrow(path).to_pandas()


def write_segments(scores: pd.DataFrame, path: str) -> int:
    cols = [
        "customer_id",
        "segment",
        "segment_name",
        *[c for c in scores.columns if c.startswith("segment_reason_")],
    ]
    return write_parquet(scores[cols], path)


def profile(res: dict, name: str, scores: pd.DataFrame, k: int, features: list[str]) -> dict:
    """Per-segment sums for profiles: counts, feature sums and non-missing counts (a
    feature can be NaN, e.g. days since the last response of someone who never
    responded), prediction sums."""
    X = matrix(res["frames"][name], features).astype(np.float64)
    labels = scores["segment"].to_numpy()
    counts = np.bincount(labels, minlength=k)
    ok = np.isfinite(X)
    sums = np.stack(
        [
            np.bincount(labels, weights=np.where(ok[:, j], X[:, j], 0), minlength=k)
            for j in range(X.shape[1])
        ],
        axis=1,
    )
    present = np.stack(
        [np.bincount(labels, weights=ok[:, j], minlength=k) for j in range(X.shape[1])], axis=1
    )
    sumsq = np.stack(
        [
            np.bincount(labels, weights=np.where(ok[:, j], X[:, j], 0) ** 2, minlength=k)
            for j in range(X.shape[1])
        ],
        axis=1,
    )
    out = {"counts": counts, "sums": sums, "sumsq": sumsq, "present": present}
    for col in ("churn_probability", "value_prediction"):
        v = scores[col].to_numpy(np.float64)
        out[col] = np.bincount(labels, weights=v, minlength=k)  # NaN when the model is absent
    return out


def category_sums(
    res: dict, name: str, scores: pd.DataFrame, k: int, categories: list[str]
) -> dict:
    from bigseg.predict import offers

    return offers.segment_category_sums(
        res["frames"][name], scores["segment"].to_numpy(), k, categories
    )


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


def protected_attributes(
    store: Store, k: int, ids: np.ndarray, protected: list[str]
) -> dict[str, np.ndarray]:
    """The protected attributes of the customers ``ids`` of bucket ``k``, row-aligned
    with them (for the fairness audit only; never model inputs)."""
    out = {a: np.full(len(ids), None, dtype=object) for a in protected}
    cols = [a for a in protected if store.has("customers") and a in store.schema("customers")]
    if not cols:
        return out
    cust = store.read_bucket("customers", k, ["customer_id", *cols]).to_pandas()
    cust = cust.drop_duplicates("customer_id", keep="last").set_index("customer_id")
    pos = cust.index.get_indexer(ids)
    for a in protected:
        if a in cust.columns:
            v = cust[a].to_numpy(dtype=object)
            out[a] = np.where(pos >= 0, v[np.maximum(pos, 0)], None)
    return out


def n_labelled(res: dict, name: str, target: str) -> int:
    """Rows of frame ``name`` with a finite ``target`` label."""
    df = res["frames"][name]
    return int(np.isfinite(df[target].to_numpy(np.float64)).sum()) if target in df else 0


def sample_frame(
    res: dict, name: str, k: int, fraction: float, seed: int, columns: list[str]
) -> pd.DataFrame:
    """About ``fraction`` of the rows of frame ``name`` (reproducible per bucket), only
    ``columns`` (missing ones NaN)."""
    df = res["frames"][name].reindex(columns=columns)
    if fraction >= 1:
        return df
    rng = np.random.default_rng([seed, k, 17])
    return df[rng.random(len(df)) < fraction]


def drift_counts(res: dict, name: str, scores: pd.DataFrame, reference: dict) -> dict:
    """Bin counts of one bucket against the drift reference: features of frame ``name``,
    the scores, and customers per segment."""
    from bigseg.monitor import drift

    feats = reference.get("features")
    out = {
        "features": drift.bucket_counts(
            res["frames"][name].reindex(columns=list(feats["features"])), feats
        )
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
    res: dict,
    name: str,
    k: int,
    fraction: float,
    seed: int,
    seg: dict,
    models: dict,
    choice: dict,
    features: list[str],
) -> pd.DataFrame:
    """The served predictions (each row by its segment's chosen model) for a
    reproducible sample of frame ``name``: the score columns of ``scores/``."""
    from bigseg.predict import segmented

    df = res["frames"][name]
    if fraction < 1:
        rng = np.random.default_rng([seed, k, 23])
        df = df[rng.random(len(df)) < fraction]
    segs = segmented.segment_ids(df, seg)
    X = segmented.model_matrix(df, features, segs)
    out = {}
    for t, m in models.items():
        p = segmented.predict(X, segs, m, choice.get(t, {}))
        out[segmented.TARGET_COLUMNS[t]] = np.maximum(p, 0) if t == "value" else p
    return pd.DataFrame(out)


def segments_of(res: dict, name: str, seg: dict) -> np.ndarray:
    """Segment id of every row of frame ``name`` under the stored segmenter."""
    from bigseg.predict import segmented

    return segmented.segment_ids(res["frames"][name], seg)
