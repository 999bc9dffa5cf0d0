"""Scheduled batch scoring, in two phases, resumable after a kill.

Phase 1 scores every bucket that an earlier, killed run with the same fingerprint
(:func:`fingerprint`) has not finished, and saves each bucket's scores and small
statistics in the stage's resumable staging
(:class:`bigseg.io.resume.ResumableStage`). Phase 2 adds the columns that depend on
all buckets (``high_value``, next-best offers) to every saved part and publishes
``scores/as_of=DATE/`` atomically; audiences, profiles and drift come from the saved
statistics. ``metrics.json`` ``score_resume`` says how many buckets were taken from a
killed run.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from bigseg.errors import ModelError
from bigseg.io.commit import read_bytes, staged_dir
from bigseg.io.layout import MODEL_MANIFEST, scores_dirname
from bigseg.io.output import model_dataset, scores_dataset
from bigseg.io.resume import ResumableStage, loads_stats
from bigseg.machine import library_versions
from bigseg.monitor import drift
from bigseg.pipeline.context import RunContext
from bigseg.pipeline.products import FeatureSet, FittedSegmenter, ServingModels
from bigseg.predict import evaluate, offers, scoring
from bigseg.predict.serving import model_key
from bigseg.registry import latest_version, load_version

log = logging.getLogger(__name__)


def version(ctx: RunContext) -> str:
    """The model version that scores: the chosen one, else ``LATEST``."""
    return ctx.model_version or latest_version(ctx.output)


def load_models(ctx: RunContext, fs: FeatureSet) -> ServingModels:
    """The models, per-segment choice and model features of the published version that
    scores, verified against this run's features."""
    d, manifest = load_version(ctx.output, version(ctx), features=list(fs.names))
    if manifest.get("segmenter_only"):
        raise ModelError(
            f"{d}: model version {manifest.get('version')} holds a segmenter only (from "
            "`bigseg segment`); run `bigseg train` before scoring"
        )
    if "model_features" not in manifest:
        raise ModelError(
            f"{d}: model version predates per-segment models; retrain with "
            f"`bigseg run` or `bigseg train`"
        )
    models: dict = {}
    for t, files in manifest["models"].items():
        for f in files:
            models.setdefault(t, {})[model_key(t, f)] = read_bytes(d / f)
    choice = {t: {int(k): v for k, v in c.items()} for t, c in manifest["model_choice"].items()}
    sources = {t: {int(k): v for k, v in c.items()} for t, c in manifest.get("serve", {}).items()}
    return ServingModels(
        models, choice, tuple(manifest["model_features"]), sources, manifest.get("blend", {})
    )


def _drift_reference(ctx: RunContext) -> dict | None:
    v = ctx.model_version or ctx.output.latest_model()
    if v is None or "drift_reference.json" not in ctx.output.members(model_dataset(v)):
        return None
    return ctx.output.read_json(model_dataset(v), "drift_reference.json")


def score(
    ctx: RunContext,
    fs: FeatureSet,
    seg: FittedSegmenter,
    serving: ServingModels,
    unpublished_model: bool,
    trained_here: bool = False,
) -> dict:
    """The ``score`` stage (module docstring); returns its report. ``unpublished_model``:
    a model fitted in this run is not published yet, so a killed run is never resumed.
    ``trained_here``: this run trained the model, so its drift against its own training
    window is reported but is no reason to retrain."""
    v = version(ctx)
    manifest = ctx.output.read_json(model_dataset(v), MODEL_MANIFEST)
    fp = fingerprint(ctx, v, manifest, unpublished_model)
    stage = ResumableStage(ctx.layout, scores_dirname(ctx.as_of), fp)
    if stage.record is None:
        info = {"as_of": str(ctx.as_of), "model_version": v, "features": list(fs.names)}
        stage.write_record(info, {})
    n = ctx.n_buckets
    done = set(stage.done(n))
    todo = {k: f for k, f in enumerate(fs.buckets) if k not in done}
    ref = _drift_reference(ctx)
    job = scoring.ScoreJob(seg, serving, ctx.cfg.prediction.drivers, fs.names, fs.categories, ref)
    where = ctx.placed(list(todo.values()))
    futs = [
        ctx.submit(scoring.stage_scores, f, "score", job, stage.part(k), stage.stats(k), **at)
        for (k, f), at in zip(todo.items(), where, strict=True)
    ]
    texts = ctx.gather(futs, "score", bar=True)
    stats = {k: loads_stats(t) for k, t in zip(todo, texts, strict=True)}
    resumed = [k for k in range(n) if k not in stats]
    for k in resumed:
        stats[k] = stage.load_stats(k)
    stats = [stats[k] for k in range(n)]
    if resumed:
        log.info("score: %d of %d buckets resumed from %s", len(resumed), n, stage.dir)
    report = {
        "model_version": v,
        "score_resume": {"buckets": n, "resumed": len(resumed), "fingerprint": fp[:16]},
    }
    report.update(_publish(ctx, seg, stage, stats))
    report["segments"] = evaluate.segment_profiles(
        [s["profile"] for s in stats], list(seg.ids), list(seg.names), list(fs.names)
    )
    # why each segment has its name: the rule that fired and the facts it checked
    naming = dict(zip(seg.ids, seg.meta.get("naming") or [], strict=False))
    for s in report["segments"]:
        n = naming.get(s["id"], {})
        s.update({k: n[k] for k in ("name_rule", "facts") if k in n})
    report["drivers"] = evaluate.driver_importance(
        [s["importance"] for s in stats],
        list(serving.models),
        list(seg.ids),
        list(serving.features or []),
    )
    report.update(_drift(ctx, ref, stats, trained_here))
    stage.remove()
    return report


def fingerprint(ctx: RunContext, version: str, manifest: dict, unpublished: bool) -> str:
    """SHA-256 of everything that determines the score stage's output: as_of, the
    model version and its file hashes, the store manifest (inputs, mapping, row
    counts, erasures), the whole config, the device, which cutoffs the features
    are computed at, the bigseg source code and the library versions. A model
    fitted in this run and not yet published makes it unique (never resumed)."""
    doc = {
        "as_of": str(ctx.as_of),
        "model_version": version,
        "model_files": manifest.get("files"),
        "store": ctx.store.manifest,
        "config": ctx.cfg.model_dump(mode="json"),
        "device": ctx.backend.name,
        "score_only": ctx.score_only,
        "code": code_hash(),
        "libraries": library_versions(),
        "unpublished_model": uuid.uuid4().hex if unpublished else None,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """SHA-256 of bigseg's Python sources (the code version in score fingerprints)."""
    root = Path(__file__).parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _publish(ctx: RunContext, seg: FittedSegmenter, stage: ResumableStage, stats: list) -> dict:
    """Phase 2: the global value threshold and category lifts from the saved parts
    and statistics, every part finished with ``high_value`` and offers into one
    staging dir published as ``scores/as_of=DATE/``, then the audiences."""
    n, seed = len(stats), ctx.cfg.seed
    total = sum(s["rows"] for s in stats)
    frac = min(1.0, 200_000 / max(total, 1))
    vals = np.concatenate(
        ctx.gather(
            [ctx.submit(scoring.part_value_sample, stage.part(k), k, frac, seed) for k in range(n)],
            "value threshold",
        )
    )
    share = ctx.cfg.prediction.high_value_share
    ok = len(vals) and np.isfinite(vals).all()
    # no value model (no values at all): no threshold and no high_value column
    thr = float(np.quantile(vals, 1 - share)) if ok else (np.inf if len(vals) else None)
    report: dict = {}
    aff = None
    if stats and all(s["categories"] is not None for s in stats):
        cats = [s["categories"] for s in stats]
        aff = offers.category_affinity(cats, list(seg.ids), list(seg.names))
        report["offers"] = aff
    cuts = offers.value_cut_points(vals)
    aud = [stage.dir / f"audience-{k:05d}.arrow" for k in range(n)]
    with staged_dir(ctx.layout, ctx.layout.scores(ctx.as_of)) as d:
        futs = [
            ctx.submit(
                scoring.write_scores,
                stage.part(k),
                thr,
                aff,
                cuts,
                ctx.store,
                k,
                d / f"part-{k:05d}.parquet",
                aud[k],
            )
            for k in range(n)
        ]
        ctx.gather(futs, "write scores", bar=True)
    where = ctx.layout.scores(ctx.as_of)
    ctx.output.put(scores_dataset(ctx.as_of), where, as_of=str(ctx.as_of))
    report["high_value_threshold"] = thr
    # campaign tools read audiences/segment=<id>.parquet: one file per segment, the
    # segments shared out among the workers, each streaming the buckets' audience rows
    # (saved by the score writes) into its own files
    id_type = pa.string() if ctx.store.manifest.get("id_type") == "string" else pa.int64()
    groups = max(1, min(len(seg.ids), len(ctx.workers())))
    with staged_dir(ctx.layout, ctx.layout.audiences) as d:
        parts = ctx.gather(
            [
                ctx.submit(offers.write_segment_group, aud, g, groups, d, list(seg.ids), id_type)
                for g in range(groups)
            ],
            "write audiences",
        )
    rows = dict(sorted((s, n) for p in parts for s, n in p.items()))
    ctx.output.put("audiences", ctx.layout.audiences)
    report["audiences"] = {str(k): int(v) for k, v in rows.items()}
    st = ctx.store
    if not (st.has("customers") and "consent_marketing" in st.schema("customers")):
        # transactions-only input: not a problem to warn about, but said once here
        report["audiences_skipped"] = (
            "no marketing consent data (data.customers with consent_marketing): nobody "
            "has opted in, so every audience is empty"
        )
    return report


def _drift(ctx: RunContext, ref: dict | None, stats: list, trained_here: bool = False) -> dict:
    """Population stability of the features, scores and segment shares against the
    training reference, and the retrain policy's verdict (``drift``, ``retrain``;
    policy in :mod:`bigseg.monitor.drift`), from the per-bucket bin counts."""
    if ref is None:  # no "drift" in the report: metrics.json keeps what it had
        return {
            "retrain": {"recommended": None, "reasons": ["no drift reference in the model version"]}
        }
    tot = {k: {} for k in ("features", "scores", "segments")}
    for s in stats:
        for k in tot:
            tot[k] = drift.merge_counts(tot[k], s["drift"][k])
    report = {"features": drift.drift_report(ref["features"], tot["features"])}
    if ref.get("scores"):
        report["scores"] = drift.drift_report(ref["scores"], tot["scores"])
    if ref.get("segment_shares"):
        report["segments"] = drift.segment_shift(ref["segment_shares"], tot["segments"])
    trained = dt.date.fromisoformat(ref["as_of"])
    age = max((ctx.as_of - trained).days, 0)  # scoring a date before training: 0
    retrain, reasons = drift.should_retrain(report, age, ctx.cfg.drift.policy())
    verdict = {"recommended": retrain, "reasons": reasons}
    if retrain and trained_here:
        # this run has just trained the model: what differs from its reference is its
        # own training window (as_of - horizon) against as_of, not drift since training
        verdict = {
            "recommended": False,
            "reasons": [],
            "not_judged": "model trained in this run: its reference is its own training "
            "window; drift is judged by a later run that scores with it",
        }
    elif retrain:
        log.warning("retraining recommended: %s", "; ".join(reasons))
    return {
        "drift": {**report, "reference_as_of": ref["as_of"], "model_age_days": age},
        "retrain": verdict,
    }
