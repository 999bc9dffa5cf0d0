"""Features: computed once per run for every cutoff, resident on the workers."""

from __future__ import annotations

import logging

from bigseg import features as feats_mod
from bigseg.errors import DataError
from bigseg.features import tasks as ftasks
from bigseg.io.commit import staged_dir
from bigseg.pipeline import sampling
from bigseg.pipeline.context import RunContext
from bigseg.pipeline.products import FeatureSet
from bigseg.predict import fairness

log = logging.getLogger(__name__)

#: customers a run that segments and trains needs at least
MIN_CUSTOMERS = 2


def compute(ctx: RunContext) -> FeatureSet:
    """Vocabularies of the categorical columns first (so every bucket has the same
    columns), then the per-bucket features through the feature cache, then CLV (fitted
    on a sample of all buckets, the cutoffs side by side, applied per bucket)."""
    store, n = ctx.store, ctx.n_buckets
    cuts = ctx.cutoffs()
    if ctx.score_only:  # a scheduled `bigseg score`: features at as_of only
        cuts = {"score": cuts["score"]}
    cfg = ctx.cfg
    # both submitted before either is awaited: one round trip, not two
    vocab = [ctx.submit(feats_mod.vocab_counts, store, k) for k in range(n)]
    known = None if ctx.score_only else _known(ctx, cuts)
    vocab = feats_mod.merge_vocab(ctx.gather(vocab, "vocabularies"))
    thin = (
        {} if known is None else _thin_rates(ctx, cuts, ctx.gather(known, "customers per cutoff"))
    )
    futs = [
        ctx.submit(
            feats_mod.cached_bucket_frames,
            ctx.output.path(),
            store,
            k,
            cuts,
            tuple(c for c in cuts if c != "score"),
            cfg.horizon_days,
            cfg.privacy.require_consent,
            vocab,
            thin,
            cfg.seed,
        )
        for k in range(n)
    ]
    sizes = ctx.map_buckets(ftasks.n_rows, futs, "score", desc="features", bar=True)
    if ctx.score_only and sum(sizes) == 0:
        # nothing to score: refused before anything is written, as the features stage
        # of a run refuses it (a scores dataset of no file reads back as no table)
        raise DataError(
            f"no customer has a purchase on or before as_of={ctx.as_of} in "
            f"{cfg.data.transactions.path} (or every one was erased): nothing to score. "
            "Score a date on or after the first purchase (--as-of), or ingest the data first"
        )
    if not ctx.score_only and sum(sizes) < MIN_CUSTOMERS:
        raise DataError(
            f"{sum(sizes)} customer(s) with a purchase on or before as_of={ctx.as_of} in "
            f"{cfg.data.transactions.path}: segmenting and training need at least "
            f"{MIN_CUSTOMERS}. Check as_of, the consent flags (privacy.require_consent) and "
            f"data.transactions; with fewer customers, score them with a model trained on "
            f"more (`bigseg score`)"
        )
    hits = ctx.map_buckets(ftasks.cached, futs, desc="feature cache")
    reused = int(sum(hits))
    frac = min(1.0, feats_mod.CLV_SAMPLE / max(sum(sizes), 1))
    samples = [ctx.submit(feats_mod.clv_sample, f, k, frac, cfg.seed) for k, f in enumerate(futs)]
    names = list(cuts)
    fits = ctx.gather(  # the cutoffs fit side by side
        [ctx.submit(feats_mod.fit_clv_cutoff, name, *samples) for name in names],
        "clv fit",
    )
    clv = dict(zip(names, fits, strict=True))
    _state_clv(clv)
    # each bucket where its frames lie (:func:`~bigseg.pipeline.context.placements`): a
    # worker left idle by the CLV fits took the short tasks, and the buckets with them
    futs = [
        ctx.submit(feats_mod.add_clv, f, clv, cfg.horizon_days, **at)
        for f, at in zip(futs, ctx.placed(futs), strict=True)
    ]
    cols = ctx.map_buckets(ftasks.columns, futs, "score", desc="feature columns")
    fc = cfg.fairness
    model_features = fairness.model_features(
        list(dict.fromkeys(x for cs in cols for x in cs)),
        fc.protected,
        allow=fc.allow_protected_features,
    )
    report = {
        "features_cache": {"buckets": n, "reused": reused, "recomputed": n - reused},
        # the training cutoffs whose frames hold a sample of their customers: the share
        "sampled_frames": {c: round(q, 6) for c, q in thin.items()},
        "clv": clv,
    }
    return FeatureSet(tuple(futs), tuple(model_features), vocab, clv, int(sum(sizes)), report, thin)


def _known(ctx: RunContext, cuts: dict[str, int]) -> list | None:
    """Futures of the customers each cutoff holds, per bucket; None where no cutoff's
    frames are ever thinned (:func:`_thin_rates`)."""
    if not any(c in sampling.THINNED or c in sampling.POOLED for c in cuts):
        return None
    return [
        ctx.submit(ftasks.known_customers, ctx.store, k, cuts, ctx.cfg.privacy.require_consent)
        for k in range(ctx.n_buckets)
    ]


def _thin_rates(ctx: RunContext, cuts: dict[str, int], counts: list) -> dict[str, float]:
    """The share of each training cutoff's customers whose features are computed
    (:func:`bigseg.pipeline.sampling.thin_rates`), from the customers each cutoff
    holds (``counts``: :func:`_known`'s): only they can be drawn into a training sample
    or the backtest, so the frames stay bounded by the samples, not by customers times
    windows."""
    pcfg = ctx.cfg.prediction
    sizes = {c: sum(x[c] for x in counts) for c in cuts}
    return sampling.thin_rates(
        sizes, pcfg.max_train_rows, pcfg.training_windows, pcfg.max_backtest_rows
    )


def _state_clv(clv: dict) -> None:
    """Say once per run (INFO) what the CLV fits of the cutoffs mean for the CLV
    features. The fits (``converged``, Gamma-Gamma ``q``) are in ``metrics.json``
    ``clv``; the features feed the models, which learn how far to trust them, so a
    heavy spend tail or an imprecise optimum is stated, not warned about on every run."""
    fits = {k: v for k, v in clv.items() if v}
    loose = [
        k
        for k, v in fits.items()
        if not all(m.get("converged", True) for m in v.values() if isinstance(m, dict))
    ]
    heavy = [k for k, v in fits.items() if v["gamma_gamma"]["q"] <= 1.0]
    if loose:
        log.info(
            "CLV: the fit at cutoff(s) %s stopped short of a precise optimum; the CLV "
            "features there are approximate",
            ", ".join(loose),
        )
    if heavy:
        log.info(
            "CLV: spend has an infinite-mean tail at cutoff(s) %s (Gamma-Gamma q <= 1); "
            "expected order values lean on each customer's own mean",
            ", ".join(heavy),
        )


def write(ctx: RunContext, fs: FeatureSet) -> dict:
    """The ``features`` stage: ``features/`` published (the model features at ``as_of``,
    one part per bucket, checksummed by the tasks that write them); returns its report."""
    buckets = list(fs.buckets)
    excluded = ctx.map_buckets(ftasks.excluded, buckets)  # awaited with the writes
    with staged_dir(ctx.layout, ctx.layout.features) as d:
        futs = [
            ctx.submit(
                ftasks.write_features, f, "score", d / f"part-{k:05d}.parquet", list(fs.names)
            )
            for k, f in enumerate(buckets)
        ]
        written = ctx.gather(futs, "write features", bar=True)
    n = sum(w[0] for w in written)
    ctx.output.put("features", ctx.layout.features, (w[1] for w in written))
    if n == 0:
        raise DataError(f"no customer has a purchase on or before as_of={ctx.as_of}")
    return {
        "as_of": str(ctx.as_of),
        "horizon_days": ctx.cfg.horizon_days,
        "n_customers": n,
        "excluded_no_consent": sum(ctx.gather(excluded, "consent")),
        "features": feats_mod.describe(list(fs.names)),
    }
