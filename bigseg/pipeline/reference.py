"""The drift reference a model version keeps: what scoring compares each later run
against (:mod:`bigseg.monitor.drift`), drawn at the training cutoff."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bigseg.features import tasks as ftasks
from bigseg.monitor import drift
from bigseg.pipeline.context import RunContext
from bigseg.pipeline.products import FeatureSet, FittedSegmenter, ServingModels
from bigseg.predict import scoring

#: features not monitored for drift (they move with calendar time for every customer)
DRIFT_EXEMPT = ("tenure_days",)

#: the drift reference's tasks that need no model run whenever a worker has nothing else
SAMPLE_PRIORITY = -10


@dataclass(frozen=True)
class DriftSample:
    """The model-free part of the drift reference, submitted and not yet awaited: the
    share ``frac`` of the training cutoff's rows sampled, the feature ``columns``, and
    per bucket the futures of the feature ``sample`` and of every customer's
    ``segments``."""

    frac: float
    columns: list
    sample: list
    segments: list


def drift_sample(
    ctx: RunContext, fs: FeatureSet, seg: FittedSegmenter, n_train: int
) -> DriftSample:
    """The :class:`DriftSample`, submitted when the train stage starts: a sample of the
    training cutoff's features (about 50k customers) and every customer's segment
    there."""
    buckets, seed = list(fs.buckets), ctx.cfg.seed
    # drawn within the frames, which may hold a share of the customers
    frac = min(1.0, 50_000 / max(n_train, 1) / fs.rate("train"))
    cols = [f for f in fs.names if f not in DRIFT_EXEMPT]
    at = {"priority": SAMPLE_PRIORITY}
    return DriftSample(
        frac,
        cols,
        [
            ctx.submit(ftasks.sample_frame, f, "train", k, frac, seed, cols, **at)
            for k, f in enumerate(buckets)
        ],
        [ctx.submit(scoring.segments_of, f, "train", seg, **at) for f in buckets],
    )


def drift_reference(
    ctx: RunContext,
    fs: FeatureSet,
    seg: FittedSegmenter,
    serving: ServingModels,
    part: DriftSample,
) -> dict:
    """What scoring compares against, on the sample of :func:`drift_sample` (``part``):
    bins of every model feature, bins of the final models' predictions (as served),
    and the segment shares. ``tenure_days`` is left out: it grows with calendar time
    for every customer, so it shifts between any two cutoffs by construction."""
    buckets, seed, frac, cols = list(fs.buckets), ctx.cfg.seed, part.frac, part.columns
    where = ctx.placed(buckets)
    preds = [
        ctx.submit(scoring.predict_sample, f, "train", k, frac, seed, seg, serving, **at)
        for k, (f, at) in enumerate(zip(buckets, where, strict=True))
    ]
    n = len(buckets)
    got = ctx.gather([*part.sample, *preds, *part.segments], "drift reference")
    sample = pd.concat(got[:n], ignore_index=True)
    preds = pd.concat(got[n : 2 * n], ignore_index=True)
    ids, counts = np.unique(np.concatenate(got[2 * n :]), return_counts=True)
    return {
        "features": drift.reference_bins({c: sample[c].to_numpy() for c in cols}),
        "scores": drift.reference_bins({c: preds[c].to_numpy() for c in preds.columns})
        if len(preds.columns)
        else None,
        "segment_shares": {
            str(int(i)): float(c / max(counts.sum(), 1)) for i, c in zip(ids, counts, strict=True)
        },
        "as_of": str(ctx.as_of),
        "sample_rows": int(len(sample)),
    }
