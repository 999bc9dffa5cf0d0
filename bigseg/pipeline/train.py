"""Training: global and per-segment models per target, trained one horizon back and
chosen per segment on a backtest one horizon further back
(:mod:`bigseg.predict.segmented`), then published as a model version."""

from __future__ import annotations

import copy
import datetime as dt
import logging
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from bigseg.errors import DataError
from bigseg.features import tasks as ftasks
from bigseg.features.sample import share_within
from bigseg.pipeline import reference, sampling
from bigseg.pipeline.context import RunContext
from bigseg.pipeline.products import FeatureSet, FittedSegmenter, ServingModels
from bigseg.pipeline.segment import SEGMENT_FEATURES
from bigseg.predict import blend, evaluate, fairness, segmented, training
from bigseg.predict.serving import model_file
from bigseg.predict.xgb import _host_threads
from bigseg.registry import VersionWriter, schema_hash

log = logging.getLogger(__name__)

#: a target is learnt only from this many labelled customers of each kind: for churn,
#: churners and customers who bought again; for value, buyers in the label window
MIN_LABELLED = 5


def unlearnable(ctx: RunContext, counts: dict, target: str) -> str | None:
    """Why ``target`` (churn or value) cannot be learnt from the training cutoff's labels
    (the window ``(as_of - horizon, as_of]``; ``counts``: :func:`label_counts`), or
    None when it can."""
    n, pos = counts[("train", target)]
    h = dt.timedelta(days=ctx.cfg.horizon_days)
    window = f"({ctx.as_of - h}, {ctx.as_of}]"
    if target == "churn" and min(pos, n - pos) < MIN_LABELLED:
        few = (
            ("bought again", "the window lies past the data, or customers rarely buy "
             "again: set as_of within the data, or a longer horizon_days")
            if n - pos < pos
            else ("churned", "nearly every customer bought again: a churn this rare is "
                  "not learnt; a shorter horizon_days or more customers may help")
        )  # fmt: skip
        return (
            f"{min(pos, n - pos)} of the {n} customers known at {ctx.as_of - h} {few[0]} "
            f"in the label window {window} (at least {MIN_LABELLED} of each kind needed): "
            f"{few[1]}"
        )
    if target == "value" and pos < MIN_LABELLED:
        return (
            f"{pos} of the {n} customers known at {ctx.as_of - h} bought in the label "
            f"window {window} (at least {MIN_LABELLED} repeat buyers needed): the window "
            f"lies past the data, or customers buy only once: set as_of within the data, "
            f"or a longer horizon_days"
        )
    return None


def label_counts(ctx: RunContext, fs: FeatureSet) -> dict[tuple[str, str], tuple[int, int]]:
    """``(customers with a label, positives)`` summed over the buckets, per ``(cutoff,
    target)``: churn at every training cutoff, value at the final one; one task per
    bucket (one round trip: the train stage's first, with the workers otherwise idle)."""
    pairs = [(c, "churn") for c in ctx.cutoffs() if c != "score"] + [("train", "value")]
    per = ctx.map_buckets(ftasks.label_counts_at, list(fs.buckets), pairs, desc="labels")
    return {p: (sum(b[i][0] for b in per), sum(b[i][1] for b in per)) for i, p in enumerate(pairs)}


def targets(ctx: RunContext, fs: FeatureSet, counts: dict) -> tuple[list[str], dict]:
    """The targets to train, and a report of any skipped (``{target: {"skipped":
    reason}}``, logged as a warning): churn and value need enough labelled customers
    of each kind (:func:`unlearnable`), ``response`` a campaign sent in the label
    window."""
    pcfg = ctx.cfg.prediction
    out, report = [], {}
    for t in (t for t in pcfg.targets if t in ("churn", "value")):
        why = unlearnable(ctx, counts, t)
        if why is None:
            out.append(t)
        else:
            log.warning("target %r skipped, its scores column left out: %s", t, why)
            report[t] = {"skipped": why}
    if "response" not in pcfg.targets:
        return out, report
    st = ctx.store
    if not (st.has("campaigns") and "responded_at" in st.schema("campaigns")):
        # transactions-only input is a first-class case: nothing to warn about
        why = "no campaigns data (data.campaigns with responded_at): nothing to learn from"
        log.info("target 'response' skipped: %s", why)
        return out, {**report, "response": {"skipped": why}}
    labelled = ctx.map_buckets(
        ftasks.n_labelled, list(fs.buckets), "train", "response", desc="response labels"
    )
    if sum(labelled) > 0:
        return [*out, "response"], report
    log.warning("target 'response' skipped: no campaign sent in the label window")
    return out, {**report, "response": {"skipped": "no campaign responses to learn from"}}


def train(
    ctx: RunContext, fs: FeatureSet, seg: FittedSegmenter, writer: VersionWriter
) -> tuple[ServingModels, dict]:
    """The ``train`` stage: models trained, chosen per segment, evaluated on the backtest
    and published with the segmenter in ``writer``. Returns the serving models and the
    report."""
    pcfg = ctx.cfg.prediction
    counts = label_counts(ctx, fs)
    tgts, report = targets(ctx, fs, counts)
    # every customer known at the training cutoff has a churn label: the stacks'
    # counts give the customers there too
    stacks, sizes = _stacks(ctx, counts)
    n_train = sizes["train"]
    if n_train == 0:
        h = dt.timedelta(days=ctx.cfg.horizon_days)
        raise DataError(
            f"not enough history to train: no customer bought on or before "
            f"as_of - horizon = {ctx.as_of - h}"
        )
    if not tgts:  # nothing to learn: the version serves segments only
        serving = ServingModels({}, {}, fs.names)
        ref = reference.drift_reference(
            ctx, fs, seg, serving, reference.drift_sample(ctx, fs, seg, n_train)
        )
        writer.write_json("drift_reference.json", ref)
        report["training_window"] = _window(ctx)
        writer.publish(_manifest(ctx, fs, serving, {}))
        return serving, report
    windows = list(stacks)
    feats = (*fs.names, *segmented.segment_features(list(seg.ids)))
    plan = training.TrainPlan(
        tuple(tgts),
        feats,
        seg.without_names(),
        pcfg,
        ctx.cfg.seed,
        ctx.backend.xgboost_device,
        tuple(pcfg.search_max_depth or [pcfg.max_depth]),
        max(1, _host_threads(ctx.client) // (len(tgts) * len(windows))),
        ctx.workers(),
    )
    drift_part = reference.drift_sample(ctx, fs, plan.seg, n_train)
    submitted, predictions = _submit(ctx, fs, plan, stacks, sizes)
    if "backtest" in windows:
        choice, evaluation, backtest_info, coef = _backtest(ctx, fs, plan, submitted, predictions)
    else:
        choice, evaluation, backtest_info, coef = _unjudged(ctx, plan)
    final = {
        t: training.collect(ctx.client, fits, "models")
        for t, (fits, _) in submitted["train"].fits.items()
    }
    del submitted, predictions  # the matrices are released once their models are done
    extra: dict[str, dict] = {}
    for t, (models, info) in final.items():
        for s, rec in choice[t].items():  # a segment model chosen in the backtest
            if rec["model"] == "segment" and s not in models:  # ... may be too small now
                rec["model"], rec["note"] = "global", "no segment model at the final cutoff"
        for key, model in models.items():
            writer.write_bytes(model_file(t, key), model)
        extra[t] = {"training": info}
        if t in backtest_info:
            extra[t]["backtest_training"] = backtest_info[t]
        extra[t]["per_segment"] = {str(s): r for s, r in choice[t].items()}
        extra[t]["training_windows"] = stacks["train"]
    serving = ServingModels(
        {t: m for t, (m, _) in final.items()},
        {t: {s: r["model"] for s, r in c.items()} for t, c in choice.items()},
        feats,
        {t: {s: r["served"] for s, r in c.items()} for t, c in choice.items()},
        coef,
    )
    ref = reference.drift_reference(ctx, fs, plan.seg, serving, drift_part)
    writer.write_json("drift_reference.json", ref)
    for k, v in evaluation.items():  # the backtest's metrics (futures), then the rest
        report[k] = {**(v.result() if isinstance(v, Future) else v), **extra.get(k, {})}
    report["training_window"] = _window(ctx)
    writer.publish(_manifest(ctx, fs, serving, {t: report.get(t) for t in tgts}))
    return serving, report


def _submit(ctx: RunContext, fs: FeatureSet, plan, stacks: dict, sizes: dict):
    """Every model of every target and both cutoffs, submitted before any is awaited:
    the matrices of both stacks first, then the backtest's global and segment models
    and their predictions on the final cutoff's rows, then the final global models (they
    start on any idle worker and train while the client chooses per segment). Returns the
    windows (:class:`~bigseg.predict.training.Window`) and the backtest predictions'
    futures (None without a backtest)."""
    c, buckets, pcfg = ctx.client, list(fs.buckets), ctx.cfg.prediction
    share = {w: sampling.older_share(stacks[w], sizes, pcfg.max_train_rows) for w in stacks}
    rows, cnt = {}, {}
    for w in stacks:
        rows[w], cnt[w] = training.submit_rows(c, buckets, stacks[w], plan, share[w][0])
    counts = iter(ctx.gather([f for w in stacks for f in cnt[w]], "training rows"))
    cnt = {w: [next(counts) for _ in cnt[w]] for w in stacks}
    submitted, predictions = {}, None
    for w in stacks:  # the backtest's first
        order = training.global_order(plan, submitted.get("backtest"))
        submitted[w] = training.submit_window(
            c, buckets, stacks[w], plan, rows[w], cnt[w], share[w][1],
            1.0 / fs.rate(stacks[w][0]), training.BACKTEST_PRIORITY if w == "backtest" else 0,
            order,
        )  # fmt: skip
        if w != "backtest":
            continue
        fits = {}
        for t, (f, refine) in submitted[w].fits.items():  # every segment's model
            f.update(refine(plan.ids))
            fits[t] = dict(f)
        frac = share_within(sizes["train"], pcfg.max_backtest_rows)
        latest = rows["train"][: len(buckets)]
        # evenly over the workers: where the matrices lie, Dask put 5 of 8 on one (1M)
        where = ctx.placed(latest)
        predictions = training.submit_backtest_rows(c, buckets, latest, "train", fits, frac, where)
    return submitted, predictions


def _backtest(ctx: RunContext, fs: FeatureSet, plan, submitted: dict, predictions: list):
    """Backtest models fitted one window earlier, tested on the final cutoff's matrices
    (``predictions``: their futures): each segment's model chosen (or the global one),
    the final segment models submitted, then what serves each segment chosen (and the
    choice audited for fairness) while they train. Returns ``(choice, evaluation,
    backtest training info, the served maps' coefficients)``; each target's evaluation
    is a future, computed in a thread of its own as the run goes on."""
    c = ctx.client
    cat, backtest_ids = training.gather_backtest(c, predictions)
    info = {}
    for t, (fits, _) in submitted["backtest"].fits.items():
        info[t] = training.collect(c, fits, "backtest models")[1]
    choice = {
        t: segmented.choose(
            t, cat[t], cat["segment"], cat[f"pred_{t}_global"], cat[f"pred_{t}_segment"], plan.ids
        )
        for t in plan.targets
    }
    for t, (fits, refine) in submitted["train"].fits.items():
        # at the final cutoff only the segment models the backtest chose: the others
        # would never serve a customer
        fits.update(refine([s for s, r in choice[t].items() if r["model"] == "segment"]))
    # the targets side by side in threads: the array work releases the GIL (1M: 2.0 s
    # of choosing and evaluating in one thread). Only the choice among model, BG/NBD
    # and blend is waited for; the metrics are computed while the workers draw the drift
    # reference (1M: the client's evaluation outlasted the final segment models by ~1 s)
    with ThreadPoolExecutor(len(plan.targets)) as pool:
        futs = {t: pool.submit(_serve, t, cat, choice[t], plan) for t in plan.targets}
        served = {t: f.result() for t, f in futs.items()}
    frozen = copy.deepcopy(choice)  # as judged: train() may still retire a choice
    later, evaluation = ThreadPoolExecutor(len(plan.targets)), {}
    for t, (_, v) in served.items():
        if v is not None:
            cat[f"served_{t}"] = v
        evaluation[t] = later.submit(evaluate.evaluate, t, dict(cat), frozen[t])
    later.shutdown(wait=False)  # the futures complete; train() waits on them
    if ctx.cfg.fairness.protected:
        evaluation["fairness"] = _fairness(ctx, cat, choice, backtest_ids)
    return choice, evaluation, info, {t: c for t, (c, _) in served.items() if c is not None}


def _serve(t: str, cat: dict, choice: dict, plan) -> tuple:
    """What serves each segment of one target: the model, BG/NBD or their blend,
    whichever served the backtest better (:func:`bigseg.predict.blend.choose`; recorded
    in ``choice``, that target's records). Returns ``(the served map's coefficients or
    None, the served backtest predictions or None)``; ``cat`` is only read (the targets
    are judged side by side)."""
    if t not in blend.BGNBD_COLUMN:
        for rec in choice.values():
            rec["served"] = "model"
        return None, None
    p = evaluate.chosen(cat, t, choice)
    coef, recs, served = blend.choose(
        t, cat[t], cat["segment"], p, cat[blend.BGNBD_COLUMN[t]], cat["u"], plan.ids
    )
    for s, rec in recs.items():
        choice[s].update(rec)
    return coef, served


def _fairness(ctx: RunContext, cat: dict, choice: dict, backtest_ids: list) -> dict:
    """Fairness audit on the backtest (the only window whose outcomes are known), per
    group of every protected attribute (:func:`bigseg.predict.fairness.audit`)."""
    pcfg, fc = ctx.cfg.prediction, ctx.cfg.fairness
    parts = ctx.gather(
        [
            ctx.submit(ftasks.protected_attributes, ctx.store, k, ids, fc.protected)
            for k, ids in enumerate(backtest_ids)
        ],
        "protected attributes",
    )
    groups = {a: np.concatenate([p[a] for p in parts]) for a in fc.protected}
    kw = evaluate.fairness_inputs(cat, choice, pcfg.high_churn_threshold, pcfg.high_value_share)
    return fairness.audit(
        groups, threshold=fc.threshold, min_group_size=ctx.cfg.privacy.min_segment_size, **kw
    )


def _unjudged(ctx: RunContext, plan) -> tuple[dict, dict, dict, dict]:
    """Without a backtest the global model serves every segment; why is stated once
    (INFO) and in ``metrics.json`` (``<target>.served_reason``)."""
    day = ctx.as_of - 2 * dt.timedelta(days=ctx.cfg.horizon_days)
    why = (
        f"no backtest: no customer had bought by as_of - 2 x horizon_days = {day}, so the "
        "model serves every segment without a comparison with BG/NBD; a longer history "
        "(or a shorter horizon_days) gives one"
    )
    log.info("%s", why)
    choice = {
        t: {s: {"model": "global", "served": "model", "note": why} for s in plan.ids}
        for t in plan.targets
    }
    evaluation = {t: {"served": {"model": 1.0}, "served_reason": why} for t in plan.targets}
    return choice, evaluation, {}, {}


def _stacks(ctx: RunContext, counts: dict) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The cutoffs each model stack trains on: the final models on ``train`` and up to
    ``training_windows - 1`` older windows, the backtest's one window further back;
    a window joins while its churn labels hold at least ``MIN_LABELLED`` of each kind
    (older ones lie before the data, or hold too few customers to teach anything).
    Also returns the customers at each cutoff (``counts``: :func:`label_counts`)."""
    names = [c for c in ctx.cutoffs() if c != "score"]
    usable, sizes = ["train"], {}
    for c in names:
        n, pos = counts[(c, "churn")]
        sizes[c] = n
        if c == "train":
            continue
        if min(pos, n - pos) < MIN_LABELLED and not (c == "backtest" and n > 0):
            break
        usable.append(c)
    w = ctx.cfg.prediction.training_windows
    out = {"train": usable[:w]}
    if "backtest" in usable:
        out = {"backtest": usable[1 : w + 1], **out}
    return out, sizes


def _window(ctx: RunContext) -> dict:
    h = dt.timedelta(days=ctx.cfg.horizon_days)
    return {
        "features_at": str(ctx.as_of - h),
        "labels": f"({ctx.as_of - h}, {ctx.as_of}]",
        "backtest_features_at": str(ctx.as_of - 2 * h),
    }


def _manifest(ctx: RunContext, fs: FeatureSet, serving: ServingModels, metrics: dict) -> dict:
    return {
        "features": list(fs.names),
        "schema_hash": schema_hash(list(fs.names)),
        "model_features": list(serving.features),
        "model_choice": serving.choice,
        "serve": serving.sources,
        "blend": serving.blend,
        "models": {t: sorted(model_file(t, k) for k in m) for t, m in serving.models.items()},
        "clv": dict(fs.clv),
        "segment_features": SEGMENT_FEATURES,
        "as_of": str(ctx.as_of),
        "horizon_days": ctx.cfg.horizon_days,
        "training_window": _window(ctx),
        "metrics": metrics,
        "seed": ctx.cfg.seed,
        "device": ctx.backend.name,
    }
