"""Segmentation: fit (or load) the segmenter, name its segments, publish ``segments/``."""

from __future__ import annotations

import logging
import operator

import pandas as pd

from bigseg.errors import ModelError
from bigseg.features import SKEWED
from bigseg.io.commit import read_json, staged_dir
from bigseg.pipeline.context import RunContext
from bigseg.pipeline.products import FeatureSet, FittedSegmenter, ServingModels
from bigseg.predict import scoring
from bigseg.registry import VersionWriter, load_version
from bigseg.report import projection
from bigseg.segment import serialize
from bigseg.segment import tasks as stasks
from bigseg.segment.blocks import Blocks
from bigseg.segment.facts import NAMING_ROWS, fact_rows, segment_facts
from bigseg.segment.fit import fit_method
from bigseg.segment.naming import holds, name_segments
from bigseg.segment.preprocess import Preprocessor
from bigseg.segment.stability import match_segments, migration_matrix

#: features the segmentation clusters on (all features are shown in the profiles): the
#: RFM-T quartet of BG/NBD-style models, as rates so that tenure does not inflate counts.
#: Chosen by measurement on generated data with planted personas (benchmarks/HISTORY.md,
#: "segment recovery"): adding counts over fixed windows, trends, channel or campaign
#: shares added within-persona noise and lowered the agreement with the personas.
SEGMENT_FEATURES = ["recency_days", "purchase_rate", "monetary_mean", "tenure_days"]
#: a sample this large scores the candidate k
SAMPLE_ROWS = 20_000

log = logging.getLogger(__name__)


def previous(ctx: RunContext) -> FittedSegmenter | None:
    """The published segmenter of the run's model version (``LATEST`` unless one was
    chosen), if any that clusters on :data:`SEGMENT_FEATURES`."""
    try:
        d, _ = load_version(ctx.output, ctx.model_version)
    except ModelError:
        return None
    seg = read_json(d / "segmenter.json")
    if seg.get("features") != SEGMENT_FEATURES or not (d / "segmenter.npz").is_file():
        return None
    return FittedSegmenter(
        pre=read_json(d / "preprocess.json"),
        meta={k: v for k, v in seg.items() if k not in ("names", "segment_ids")},
        arrays=serialize.load_arrays(d / "segmenter.npz"),
        names=tuple(seg["names"]),
        ids=tuple(seg["segment_ids"]),
        source=d,
    )


def load(ctx: RunContext) -> FittedSegmenter:
    seg = previous(ctx)
    if seg is None:
        raise ModelError(f"{ctx.out}: no segmenter yet; run `bigseg segment`")
    return seg


def at_most_customers(scfg, n: int):
    """The ``segmentation`` config with no more segments than customers (``n``)."""
    top = scfg.k if scfg.k != "auto" else scfg.k_max
    if top <= n:
        return scfg
    log.warning(
        "segmentation: only %d customers, so at most %d segments (segmentation.k: %s)",
        n,
        n,
        scfg.k,
    )
    if scfg.k != "auto":
        return scfg.model_copy(update={"k": n})
    return scfg.model_copy(update={"k_min": min(scfg.k_min, n), "k_max": n})


def fit(
    ctx: RunContext, fs: FeatureSet, prev: FittedSegmenter | None, writer: VersionWriter
) -> tuple[FittedSegmenter, dict]:
    """Fit ``segmentation.method`` on every customer at ``as_of``, name the segments by
    the facts of their customers, and keep ids and names of the segments that continue ``prev``.
    Writes the segmenter into the pending model version ``writer``; returns it and the
    ``segmentation`` report."""
    cfg, seed, units = ctx.cfg, ctx.cfg.seed, _units(fs)
    feats = SEGMENT_FEATURES
    log_feats = sorted(SKEWED & set(feats))
    parts = [ctx.submit(stasks.moments, f, "score", feats, log_feats, e) for f, e in units]
    frac = min(1.0, SAMPLE_ROWS / max(fs.n_score, 1))
    # both submitted before either is awaited: one round trip, not two
    pop = [
        ctx.submit(stasks.sample_rows, f, "score", k, frac, seed, e)
        for k, (f, e) in enumerate(units)
    ]
    pre = Preprocessor.fit_moments(feats, log_feats, ctx.gather(parts, "preprocess"))
    pop = pd.concat(ctx.gather(pop, "sample"), ignore_index=True)
    scale = pre.to_dict()
    blocks = Blocks(
        [ctx.submit(stasks.x_block, f, "score", scale, ctx.backend.name, e) for f, e in units],
        ctx.client,
    )
    old_z = None
    if prev is not None:  # its segment centres in this run's scaled space
        old_centres = prev.preprocessor().inverse_transform(prev.arrays["centres"])
        old_z = pre.transform(pd.DataFrame(old_centres, columns=feats))
    seg, scores, rule, merged = fit_method(
        at_most_customers(cfg.segmentation, fs.n_score),
        seed,
        ctx.backend,
        blocks,
        pre.transform(pop),
        None if prev is None else prev.meta,
        old_z,
        cfg.privacy.min_segment_size,
    )
    meta, arrays = seg.export()
    naming = _name(
        ctx, fs, FittedSegmenter(pre.to_dict(), meta, arrays, (), ()), len(arrays["centres"])
    )
    ids, continues, naming = _continuity(prev, old_z, arrays["centres"], naming)
    names = [n["name"] for n in naming]
    report = {
        "method": seg.name,
        "k": len(names),
        "k_rule": rule,
        "candidates": scores,
        "continues_previous": dict(zip(ids, continues, strict=True)),
        "merged_small_segments": merged,
        **seg.fit_metrics(),
    }
    writer.write_json("preprocess.json", pre.to_dict())
    writer.write_json(
        "segmenter.json",
        {**meta, "features": feats, "names": names, "segment_ids": ids, "naming": naming},
    )
    serialize.save(writer.dir / "segmenter.npz", arrays)
    meta = {**meta, "naming": naming}
    fitted = FittedSegmenter(pre.to_dict(), meta, arrays, tuple(names), tuple(ids))
    return fitted, {"segmentation": report}


def _units(fs: FeatureSet) -> list:
    """``(bucket's features, eighth)`` of each unit of :mod:`bigseg.segment.tasks`."""
    return [(fs.buckets[b], e) for b, e in stasks.units(len(fs.buckets))]


def _name(ctx: RunContext, fs: FeatureSet, seg: FittedSegmenter, k: int) -> list[dict]:
    """Name each of the ``k`` segments of ``seg`` (fitted, not yet named) from its facts,
    measured on a sample of every bucket (:mod:`bigseg.segment.facts`). Returns per
    segment ``{"name", "name_rule", "facts"}``; the noise segment of a density method is
    "Unusual customers" whatever its facts."""
    frac = min(1.0, NAMING_ROWS / max(fs.n_score, 1))
    futs = [
        ctx.submit(fact_rows, f, seg, k, frac, ctx.cfg.seed, e)
        for k, (f, e) in enumerate(_units(fs))
    ]
    facts = segment_facts(pd.concat(ctx.gather(futs, "segment facts")), k, ctx.cfg.horizon_days)
    names, rules = name_segments(facts)
    if "noise_segment" in seg.meta:
        names[seg.meta["noise_segment"]] = serialize.UNUSUAL
        rules[seg.meta["noise_segment"]] = "noise"
    return [
        {"name": n, "name_rule": r, "facts": f} for n, r, f in zip(names, rules, facts, strict=True)
    ]


def _continuity(prev: FittedSegmenter | None, old_z, centers_z, naming: list[dict]):
    """Stable ids and names: a segment that continues one of ``prev`` keeps its id, and
    its name while the name is still true of its facts (names state facts, so one that
    stopped being true is replaced); a new one gets a fresh id, and "(new)" when its name
    is already taken. Returns ``(ids, previous id or None per segment, naming)``."""
    k = len(naming)
    if prev is None:
        return list(range(k)), [None] * k, naming
    ids, continues = match_segments(old_z, centers_z, list(prev.ids))
    by_id = dict(zip(prev.ids, prev.names, strict=True))
    keep = [
        c is not None and (n["name_rule"] == "noise" or holds(by_id[c], n["facts"]))
        for c, n in zip(continues, naming, strict=True)
    ]
    kept = {by_id[c] for c, ok in zip(continues, keep, strict=True) if ok}
    out = []
    for c, ok, n in zip(continues, keep, naming, strict=True):
        name = by_id[c] if ok else (n["name"] if n["name"] not in kept else f"{n['name']} (new)")
        out.append({**n, "name": name})
    return ids, continues, out


def write(ctx: RunContext, fs: FeatureSet, seg: FittedSegmenter) -> dict:
    """The rest of the ``segment`` stage, every task submitted before any is awaited:
    every customer assigned, ``segments/`` written (checksummed by its tasks), the
    migration from the published ``segments/`` and the 2-D projection computed,
    ``segments/`` published. Returns the report."""
    scored = ctx.map_buckets(
        scoring.score_bucket,
        list(fs.buckets),
        "score",
        seg,
        ServingModels(),
        ctx.cfg.prediction.drivers,
    )
    # operator's, not a function of this module: a worker unpickling one would import
    # the pipeline, and with it the estimators and scikit-learn (bigseg.segment.assign)
    new = ctx.map_buckets(operator.getitem, scored, "scores")
    moved = _migration(ctx, new)
    sample = projection.submit_samples(ctx.client, list(fs.buckets), new, seg.pre, ctx.cfg.seed)
    with staged_dir(ctx.layout, ctx.layout.segments) as d:
        futs = [
            ctx.submit(stasks.write_segments, s, d / f"part-{k:05d}.parquet")
            for k, s in enumerate(new)
        ]
        written = ctx.gather(futs, "write segments", bar=True)
    report = {  # the migration from the committed segments, before they are replaced
        "segment_migration": None
        if moved is None
        else migration_matrix(ctx.gather(moved, "migration")),
        "projection": projection.from_samples(
            ctx.gather(sample, "projection sample"), seg.pre, ctx.cfg.seed
        ),
    }
    ctx.output.put("segments", ctx.layout.segments, (w[1] for w in written))
    return report


def _migration(ctx: RunContext, new_scores: list) -> list | None:
    """Futures of the customers per (previous segment -> new segment) per bucket, from
    the committed ``segments`` of the last run (same bucketing); None without them."""
    if not ctx.output.has("segments"):
        return None
    old = ctx.output.members("segments")
    names = [f"part-{k:05d}.parquet" for k in range(len(new_scores))]
    if not all(n in old for n in names):
        return None
    return [ctx.submit(stasks.migration, s, old[n]) for n, s in zip(names, new_scores, strict=True)]
