"""Per-customer features over the bucketed store (one task per bucket, no shuffle).

Families (each only when its table and columns exist; never zero-filled fakes):

* RFM (:mod:`.rfm`) from transactions: recency, frequency, monetary, tenure, trend, returns;
* channel preference and category mix (:mod:`.behaviour`) from transactions;
* engagement (:mod:`.behaviour`) from events; campaign response from campaigns;
* review sentiment (:mod:`.text`, VADER) from reviews;
* CLV (:mod:`.clv`): BG/NBD probability alive and expected purchases, Gamma-Gamma expected
  order value and expected value over the horizon (fitted once per cutoff on a sample,
  applied per bucket).

Everything at a cutoff uses only rows at or before it.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bigseg.features import behaviour, fused, fused_events, text
from bigseg.features.bucket import BucketFeatures
from bigseg.features.clv import BGNBD, GammaGamma, clv_features, rfm_to_bgnbd_inputs
from bigseg.features.rfm import (
    FEATURE_NAMES,
    FEATURES,
    SKEWED,
    horizon_labels,
    known_with_labels,
    rfm_features,
)
from bigseg.schema import CATEGORICAL, SENTIMENT
from bigseg.store import Store

__all__ = ["FEATURES", "FEATURE_NAMES", "SKEWED", "bucket_frames", "describe", "to_us"]

LABELS = ("churn", "value", "response")
#: count-like features: a customer with no rows in that table truly has zero
_ZERO_WHEN_ABSENT = (
    "active_days_90d",
    "sessions_90d",
    "page_views_90d",
    "app_opens_90d",
    "events_total",
    "campaign_sends",
    "campaign_sends_90d",
    "review_count",
)
TOP_CATEGORIES = 8
CLV_SAMPLE = 50_000
#: repeat buyers the Gamma-Gamma spend model is fitted on (a prefix of the random sample)
GG_SAMPLE = 10_000
MIN_CLV_FIT = 50

log = logging.getLogger(__name__)


def to_us(day) -> int:
    """End of ``day`` (23:59:59.999999) in microseconds since the epoch."""
    d = np.datetime64(str(day), "D") + np.timedelta64(1, "D")
    return int(d.astype("datetime64[us]").astype(np.int64)) - 1


def describe(names: list[str]) -> dict[str, str]:
    """Plain-words description of each feature name (for metrics and the report)."""
    out = {}
    patterns = {**behaviour.FEATURES, **text.FEATURES, **FEATURES, **CLV_FEATURES}
    for n in names:
        if n in patterns:
            out[n] = patterns[n]
            continue
        for pat, d in patterns.items():
            if "<" in pat and n.startswith(pat.split("<")[0]):
                out[n] = d
                break
    return out


CLV_FEATURES = {
    "clv_prob_alive": "BG/NBD probability that the customer is still active",
    "clv_expected_purchases": "BG/NBD expected purchases in the horizon",
    "clv_expected_aov": "Gamma-Gamma expected average order value",
    "clv_expected_value": "expected spend in the horizon (purchases x order value)",
}


def vocab_counts(store: Store, k: int) -> dict[str, Counter]:
    """Value counts of the categorical columns that become per-value features."""
    out = {}
    for table, col in (
        ("transactions", "channel"),
        ("transactions", "category"),
        ("events", "channel"),
    ):
        if store.has(table) and col in store.schema(table):
            v = store.read_bucket(table, k, [col], dictionary=(col,)).column(col)
            if pa.types.is_dictionary(v.type):  # count the codes, not the strings
                v = v.unify_dictionaries().combine_chunks()
                idx = v.indices.drop_null().to_numpy()
                n = np.bincount(idx, minlength=len(v.dictionary))
                words = v.dictionary.to_pylist()
                out[f"{table}.{col}"] = Counter({words[i]: int(n[i]) for i in np.flatnonzero(n)})
                continue
            vc = pc.value_counts(v.drop_null() if hasattr(v, "drop_null") else v)
            out[f"{table}.{col}"] = Counter(
                {d["values"]: d["counts"] for d in vc.to_pylist()} if len(vc) else {}
            )
    return out


def merge_vocab(parts: list[dict]) -> dict[str, list[str]]:
    total: dict[str, Counter] = {}
    for p in parts:
        for key, c in p.items():
            total.setdefault(key, Counter()).update(c)
    top = {"transactions.category": TOP_CATEGORIES}
    return {
        key: [v for v, _ in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0])))][
            : top.get(key, 16)
        ]
        for key, c in total.items()
    }


def _join(base: pd.DataFrame, extra: pd.DataFrame | None) -> pd.DataFrame:
    if extra is None or extra.empty and len(extra.columns) <= 1:
        return base
    return base.merge(extra, on="customer_id", how="left", sort=False)


def _non_consenting(store: Store, k: int) -> np.ndarray | None:
    """Ids in bucket ``k`` whose customers row says no profiling consent (null = no)."""
    if not store.has("customers") or "consent_profiling" not in store.schema("customers"):
        return None
    t = store.read_bucket("customers", k, ["customer_id", "consent_profiling"])
    ok = pc.fill_null(t.column("consent_profiling"), False)
    return t.column("customer_id").filter(pc.invert(ok)).to_numpy(zero_copy_only=False)


def _sentiment(reviews: pa.Table) -> np.ndarray:
    """Sentiment of every review: scored at ingest (the store's ``sentiment`` column);
    reviews stored before that column existed (NaN there, or no column) are scored
    here."""
    if SENTIMENT not in reviews.column_names:
        return text.sentiment_scores(reviews.column("text").to_pandas())
    scores = np.array(reviews.column(SENTIMENT).to_numpy(zero_copy_only=False), dtype=np.float64)
    todo = np.flatnonzero(np.isnan(scores))  # blank texts too: NaN again, cheaply
    if len(todo):
        scores[todo] = text.sentiment_scores(
            reviews.column("text").take(pa.array(todo)).to_pandas()
        )
    return scores


def _read(store: Store, table: str, k: int) -> pa.Table | None:
    if not store.has(table):
        return None
    return store.read_bucket(table, k, dictionary=CATEGORICAL.get(table, ()))


def bucket_frames(
    store: Store,
    k: int,
    cutoffs: dict[str, int],
    labelled: tuple[str, ...],
    horizon_days: int,
    require_consent: bool,
    vocab: dict[str, list[str]] | None = None,
    thin: dict[str, float] | None = None,
    seed: int = 0,
) -> dict:
    """Features of bucket ``k`` at each named cutoff, with labels for ``labelled`` ones.

    Returns ``{"frames": {name: DataFrame}, "excluded": n}``: each DataFrame holds
    ``customer_id``, the features and, for labelled cutoffs, ``churn`` (no purchase in the
    horizon), ``value`` (net spend in the horizon) and, with campaign data, ``response``
    (a campaign sent in the horizon was responded to; NaN when none was sent). Customers without profiling
    consent are dropped and counted in ``excluded`` (at the latest cutoff). CLV columns
    are added later by :func:`add_clv` (they need a model fitted over all buckets).
    ``thin``: cutoffs whose frames keep only the customers whose sampling number
    (:mod:`bigseg.features.sample`, with ``seed``) lies below the given share; the
    labels' counts of all their customers go in ``"thinned"``.
    """
    thin = thin or {}
    vocab = vocab or {}
    tx = _read(store, "transactions", k)
    ids = tx.column("customer_id").to_numpy(zero_copy_only=False)
    ts = tx.column("timestamp").cast("int64").to_numpy()
    amt = tx.column("amount").to_numpy(zero_copy_only=False).astype(np.float64)
    events, campaigns, reviews = (_read(store, t, k) for t in ("events", "campaigns", "reviews"))
    # categorical strings encoded once for all cutoffs (features compare small codes)
    tx = behaviour.encode_strings(tx, CATEGORICAL["transactions"])
    events = behaviour.encode_strings(events, CATEGORICAL["events"])
    scores = None
    if reviews is not None and reviews.num_rows:
        scores = _sentiment(reviews)
    refuse = _non_consenting(store, k) if require_consent else None
    frames, excluded, thinned = {}, 0, {}
    last = max(cutoffs, key=cutoffs.get) if cutoffs else None
    # RFM, channel and category features of every cutoff in one compiled pass a cutoff
    # (the same frames as the three functions below, which serve when it declines)
    fast = fused.transaction_features(
        tx,
        cutoffs,
        vocab.get("transactions.channel"),
        vocab.get("transactions.category", []),
        sample=thin,
        seed=seed,
    )
    fast_events = (
        fused_events.engagement_features(events, cutoffs, vocab.get("events.channel"), thin, seed)
        if events is not None
        else None
    )
    for name, cut in cutoffs.items():
        if fast is not None:
            f = fast[name]
        else:
            f = rfm_features(ids, ts, amt, cut)
            if "channel" in tx.column_names:
                f = _join(f, behaviour.channel_features(tx, cut, vocab.get("transactions.channel")))
            if "category" in tx.column_names:
                f = _join(
                    f, behaviour.category_features(tx, cut, vocab.get("transactions.category", []))
                )
        if name in thin:  # before the other tables are joined: only the sample is
            f, thinned[name] = _thin(f, refuse, (ids, ts, amt), cut, horizon_days, thin[name], seed)
        if events is not None:
            f = _join(
                f,
                fast_events[name]
                if fast_events is not None
                else behaviour.engagement_features(events, cut, vocab.get("events.channel")),
            )
        if campaigns is not None:
            f = _join(f, behaviour.campaign_features(campaigns, cut))
        if reviews is not None:
            f = _join(f, text.review_features(reviews, cut, scores=scores))
        for c in _ZERO_WHEN_ABSENT:
            if c in f.columns:
                f[c] = f[c].fillna(0)
        if refuse is not None and len(refuse):
            drop = f["customer_id"].isin(refuse)
            if name == last:
                excluded = int(drop.sum())
            f = f[~drop].reset_index(drop=True)
        if name in labelled:
            f = _with_labels(f, (ids, ts, amt), cut, horizon_days, campaigns)
        feats = [c for c in f.columns if c not in ("customer_id", *LABELS)]
        f[feats] = f[feats].astype(np.float32)
        frames[name] = f
    return {"frames": frames, "excluded": excluded, "thinned": thinned}


def _with_labels(f, tx: tuple, cut: int, horizon_days: int, campaigns=None) -> pd.DataFrame:
    """``f`` with the labels of the window ``(cut, cut + horizon]``: ``churn`` (no
    purchase in it), ``value`` (net spend in it) and, with campaign responses,
    ``response``; ``tx``: the bucket's transactions as ``(ids, timestamps, amounts)``."""
    bought, spend = horizon_labels(f["customer_id"].to_numpy(), *tx, cut, horizon_days)
    f = f.assign(churn=~bought, value=spend)
    if campaigns is not None and "responded_at" in campaigns.column_names:
        labels = behaviour.response_labels(campaigns, cut, horizon_days)
        f = f.merge(labels, on="customer_id", how="left", sort=False)
    return f


def _thin(f, refuse, tx: tuple, cut: int, horizon_days: int, rate: float, seed: int):
    """The customers of frame ``f`` whose sampling number lies below ``rate`` (``f`` may
    hold only them already), and the labels' counts of every customer known at ``cut``
    (a purchase by then) and not refusing consent: ``[customers, positives]`` per
    target, as :func:`bigseg.features.tasks.label_counts` gives."""
    from bigseg.features.sample import customer_numbers

    ids, ts, amt = tx
    known, bought, spend = known_with_labels(ids, ts, amt, cut, horizon_days, refuse)
    n = len(known)
    counts = {
        "rate": rate,
        "churn": [n, int((~bought).sum())],
        "value": [n, int((spend > 0).sum())],
    }
    keep = customer_numbers(f["customer_id"].to_numpy(), seed) < rate
    return f[keep].reset_index(drop=True), counts


def cached_bucket_frames(
    output: str,
    store: Store,
    k: int,
    cutoffs: dict[str, int],
    labelled: tuple[str, ...],
    horizon_days: int,
    require_consent: bool,
    vocab: dict[str, list[str]] | None = None,
    thin: dict[str, float] | None = None,
    seed: int = 0,
) -> BucketFeatures:
    """:func:`bucket_frames` through the per-bucket cache under ``output/cache/features``
    (:mod:`bigseg.features.cache`): recomputed only when the bucket's store files or what
    is asked changed. The result also says ``"cached"``: True when it came from the
    cache."""
    from bigseg.features import cache

    what = {
        "cutoffs": cutoffs,
        "labelled": sorted(set(labelled) & set(cutoffs)),
        "horizon_days": horizon_days,
        "require_consent": require_consent,
        "vocab": vocab or {},
        **({"thin": thin, "seed": seed} if thin else {}),
    }
    return BucketFeatures.of(
        cache.cached(
            output,
            store,
            k,
            what,
            lambda: bucket_frames(
                store, k, cutoffs, labelled, horizon_days, require_consent, vocab, thin, seed
            ),
        )
    )


def clv_sample(res: BucketFeatures, k: int, fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """A reproducible sample of the RFM columns BG/NBD and Gamma-Gamma are fitted on."""
    rng = np.random.default_rng([seed, k])
    out = {}
    for name, f in res.frames.items():
        cols = f[["purchase_days", "recency_days", "tenure_days", "monetary_mean"]]
        # a thinned frame holds a share of its customers: as many are drawn from it
        share = fraction / res.thinned[name]["rate"] if name in res.thinned else fraction
        out[name] = cols[rng.random(len(cols)) < share] if share < 1 else cols
    return out


def fit_clv_cutoff(name: str, *samples: dict[str, pd.DataFrame]) -> dict | None:
    """BG/NBD + Gamma-Gamma of one cutoff on the pooled per-bucket samples (a task of its
    own, so the cutoffs fit side by side); None (logged) when too few customers or the
    fit fails."""
    from bigseg.features.clv import fit_bgnbd, fit_gamma_gamma

    s = pd.concat([p[name] for p in samples], ignore_index=True)
    x, t_x, T = rfm_to_bgnbd_inputs(
        s["purchase_days"].to_numpy(np.float64),
        s["recency_days"].to_numpy(np.float64),
        s["tenure_days"].to_numpy(np.float64),
    )
    rep = x > 0
    if len(s) < MIN_CLV_FIT or rep.sum() < MIN_CLV_FIT // 2:
        # an older stacked window near the start of the data is expected to be thin:
        # training leaves it out or uses it without CLV, nothing for the user to do
        log.log(
            logging.INFO if name.startswith("back") else logging.WARNING,
            "CLV at cutoff %r: only %d customers (%d repeat buyers); CLV features "
            "are left empty there",
            name,
            len(s),
            int(rep.sum()),
        )
        return None
    try:
        bg = fit_bgnbd(x, t_x, T)
        # Gamma-Gamma has 3 parameters: 10k repeat buyers pin them down, and its
        # likelihood (gammaln over every row) is the slow part of the fit
        idx = np.flatnonzero(rep)[:GG_SAMPLE]
        gg = fit_gamma_gamma(x[idx], s["monetary_mean"].to_numpy(np.float64)[idx])
    except ValueError as e:
        log.warning("CLV at cutoff %r could not be fitted (%s); CLV features left empty", name, e)
        return None
    return {"bgnbd": bg.to_dict(), "gamma_gamma": gg.to_dict(), "n": int(len(s))}


def add_clv(res: BucketFeatures, models: dict[str, dict], horizon_days: int) -> BucketFeatures:
    """``res`` with the CLV columns added to every frame (a new object)."""
    frames = {}
    for name, f in res.frames.items():
        m = models.get(name)
        # shallow: under copy-on-write the new frame shares the columns it does not add
        # (the frames of ``res`` stay as they were, and no bucket is held twice)
        if m is None:  # too few customers at this cutoff to fit: the columns exist, empty
            f = f.copy(deep=False)
            for col in CLV_FEATURES:
                f[col] = np.float32(np.nan)
            frames[name] = f
            continue
        x, t_x, T = rfm_to_bgnbd_inputs(
            f["purchase_days"].to_numpy(np.float64),
            f["recency_days"].to_numpy(np.float64),
            f["tenure_days"].to_numpy(np.float64),
        )
        c = clv_features(
            x,
            t_x,
            T,
            f["monetary_mean"].to_numpy(np.float64),
            BGNBD.from_dict(m["bgnbd"]),
            GammaGamma.from_dict(m["gamma_gamma"]),
            horizon_days / 7.0,
        )
        f = f.copy(deep=False)
        for col, v in c.items():
            f[col] = np.asarray(v, dtype=np.float32)
        frames[name] = f
    return BucketFeatures(frames, res.excluded, res.cached, res.thinned)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("customer_id", *LABELS)]
