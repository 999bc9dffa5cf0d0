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
    share ``frac`` of the training cutoff's rows sampled, the future of the features'
    reference bins and the sample's rows (:func:`~bigseg.monitor.bins.sample_reference`,
    on a worker), and per bucket the futures of every customer's ``segments``."""

    frac: float
    features: object
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
    sample = [
        ctx.submit(ftasks.sample_frame, f, "train", k, frac, seed, cols, **at)
        for k, f in enumerate(buckets)
    ]
    return DriftSample(
        frac,
        # binned on a worker while the models train: the client's last step of the train
        # stage, with both workers idle, was binning ~60 columns (300k: ~0.1-0.2 s)
        ctx.submit(drift.sample_reference, cols, *sample, **at),
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
    buckets, seed, frac = list(fs.buckets), ctx.cfg.seed, part.frac
    where = ctx.placed(buckets)
    preds = [
        ctx.submit(scoring.predict_sample, f, "train", k, frac, seed, seg, serving, **at)
        for k, (f, at) in enumerate(zip(buckets, where, strict=True))
    ]
    n = len(buckets)
    got = ctx.gather([part.features, *preds, *part.segments], "drift reference")
    features, rows = got[0]
    preds = pd.concat(got[1 : n + 1], ignore_index=True)
    ids, counts = np.unique(np.concatenate(got[n + 1 :]), return_counts=True)
    return {
        "features": features,
        "scores": drift.reference_bins({c: preds[c].to_numpy() for c in preds.columns})
        if len(preds.columns)
        else None,
        "segment_shares": {
            str(int(i)): float(c / max(counts.sum(), 1)) for i, c in zip(ids, counts, strict=True)
        },
        "as_of": str(ctx.as_of),
        "sample_rows": int(rows),
    }
