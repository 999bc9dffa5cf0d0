"""The pipeline: ingest -> features -> segment -> train -> score -> report.

This module holds the order of the stages, the output's lease and the retrain policy.
One module per stage does the work (:mod:`~bigseg.pipeline.features`,
:mod:`~bigseg.pipeline.segment`, :mod:`~bigseg.pipeline.train`,
:mod:`~bigseg.pipeline.score`, :mod:`~bigseg.pipeline.record`), in a frozen
:class:`~bigseg.pipeline.context.RunContext`, handing each other the typed products of
:mod:`~bigseg.pipeline.products`; :class:`~bigseg.pipeline.run.Run` makes each product
once per run, so ``bigseg run`` computes features once and every stage maps over the
same buckets without a shuffle. Each stage command (``bigseg features``, ``segment``,
...) starts a fresh run and recomputes what it needs from the published store and
models.
"""

from __future__ import annotations

import hashlib
import json
import logging

from bigseg.backend import Backend
from bigseg.config import RunConfig
from bigseg.errors import ConfigError, ModelError
from bigseg.io.commit import check_paths
from bigseg.io.output import Output
from bigseg.io.storage import local
from bigseg.pipeline.preflight import check_workers_see
from bigseg.pipeline.run import Run
from bigseg.pipeline.segment import SEGMENT_FEATURES
from bigseg.predict.training import VALID_FRACTION
from bigseg.store import plan_inputs
from bigseg.store.lock import begin, open_output, output_lease

__all__ = [
    "SEGMENT_FEATURES",
    "STAGES",
    "VALID_FRACTION",
    "Run",
    "check_model_version",
    "run_pipeline",
    "run_stages",
]

log = logging.getLogger(__name__)

STAGES = ("ingest", "features", "segment", "train", "score", "report")


def check_model_version(output: Output, version: str, stages=("score",)) -> None:
    """Refuse, before anything is written, a model version that the latest commit does
    not hold (:class:`ModelError`, naming the available ones) or one given to stages that
    fit a segmenter or models themselves (:class:`ConfigError`)."""
    fitting = [s for s in stages if s in ("segment", "train")]
    if fitting:
        raise ConfigError(
            f"model version {version!r}: a chosen model version only applies "
            f"to scoring, not to the {'/'.join(fitting)} stage(s)"
        )
    available = output.model_versions()
    if version not in available:
        raise ModelError(
            f"{output.root}: no model version {version!r}; available: "
            f"{', '.join(available) if available else 'none (train one first)'}"
        )


def run_stages(
    cfg: RunConfig, client, backend: Backend, stages=STAGES, model_version: str | None = None
) -> dict:
    """Run the named stages in order on ``client``; returns the metrics written.
    ``model_version`` (score and report only) scores with that published version
    instead of ``output/models/LATEST``.

    With ``drift.retrain: policy``, a whole run (``bigseg run``) over an output that
    already has a published model first ingests and scores with that model; only when
    the drift and model-age rules recommend retraining (``metrics.json`` ``retrain``) does
    it go on to segment, train and score again with the new model. ``metrics.json``
    ``run_policy`` says what it did and why."""
    check_output(cfg, stages)
    with output_lease(cfg, "bigseg " + " ".join(stages)) as held:
        if model_version is not None:
            check_model_version(open_output(cfg), model_version, stages)
        check_workers_see(cfg, client, inputs="ingest" in stages)
        return _locked(cfg, client, backend, stages, model_version, held)


def check_output(cfg: RunConfig, stages=STAGES) -> None:
    """Refuse an ``output:`` that exists and is not a directory (:class:`ConfigError`),
    and, before ingest, one that lies inside an input or holds one (nothing is written,
    not even the lease)."""
    if cfg.is_remote:
        return
    out = cfg.output_dir
    if "ingest" in stages:
        check_paths(out, cfg.local_input_paths())
    if local.exists(out) and not local.is_dir(out):
        raise ConfigError(
            f"output: {out} is an existing file, but bigseg writes a directory there (the "
            f"store, models, scores and metrics.json); set output: to a directory path "
            f"(a new one is created)"
        )


def _locked(cfg, client, backend, stages, model_version, held) -> dict:
    """:func:`run_stages` with the output's lease ``held``."""
    gated = (
        tuple(stages) == STAGES
        and model_version is None
        and cfg.drift.retrain == "policy"
        and open_output(cfg).latest_model() is not None
    )
    if not gated:
        return _run(cfg, client, backend, stages, model_version, held)
    m = _run(cfg, client, backend, ("ingest", "score"), None, held)
    verdict = dict(m.get("retrain") or {})
    retrain = bool(verdict.get("recommended"))
    policy = {
        "mode": "policy",
        "retrained": retrain,
        "model_before": m.get("model_version"),
        "reasons": verdict.get("reasons", []),
    }
    if retrain:
        log.warning("bigseg run: retraining (%s)", "; ".join(policy["reasons"]))
        rest = ("features", "segment", "train", "score", "report")
    else:
        log.info("bigseg run: model %s kept (no retrain rule met)", policy["model_before"])
        rest = ("report",)
    return _run(cfg, client, backend, rest, None, held, run_policy=policy)


def _run(cfg, client, backend, stages, model_version, held, run_policy=None) -> dict:
    """One run of ``stages``: its own prefix ``runs/<run_id>/`` and one commit."""
    score_only = set(stages) <= {"score", "report"} or tuple(stages) == ("ingest", "score")
    inputs = plan_inputs(cfg) if "ingest" in stages else None
    out = begin(
        cfg,
        "bigseg " + " ".join(stages),
        {"model": model_version, "policy": run_policy},
        _fingerprint(inputs),
    )
    r = Run(cfg, client, backend, out, score_only=score_only, model_version=model_version)
    return r.run(stages, run_policy, held=held, inputs=inputs)


def _fingerprint(inputs) -> str:
    """A fingerprint of the planned input files (their paths, sizes, times, ETags)."""
    if inputs is None:
        return ""
    fps = {t: [f.fingerprint() for f in fs] for t, fs in sorted(inputs.items())}
    return hashlib.sha256(json.dumps(fps, sort_keys=True).encode()).hexdigest()


def run_pipeline(
    config,
    *,
    cluster=None,
    device="auto",
    quiet=True,
    stages=STAGES,
    model_version: str | None = None,
) -> dict:
    """Load the config, connect to the cluster and run the pipeline (``bigseg run``).
    ``model_version`` scores with that published version (``bigseg score --model``)."""
    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.engine import connect

    cfg = config if isinstance(config, RunConfig) else load_run_config(config)
    backend = resolve(device)
    check_output(cfg, stages)
    # the lease first: a second run on this output is refused before a cluster starts
    with output_lease(cfg, "bigseg " + " ".join(stages)) as held:
        if model_version is not None:  # before a cluster starts or anything is written
            check_model_version(open_output(cfg), model_version, stages)
        with connect(cluster) as client:
            check_workers_see(cfg, client, inputs="ingest" in stages)
            return _locked(cfg, client, backend, stages, model_version, held)
