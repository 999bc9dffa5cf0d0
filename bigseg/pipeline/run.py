"""One run's wiring: each product made once, when a stage first needs it."""

from __future__ import annotations

import time

from bigseg.backend import Backend
from bigseg.config import RunConfig
from bigseg.io.output import Output
from bigseg.pipeline import features, score, segment, train
from bigseg.pipeline.context import RunContext
from bigseg.pipeline.products import FeatureSet, FittedSegmenter, ServingModels
from bigseg.pipeline.record import Recorder
from bigseg.registry import VersionWriter
from bigseg.store import ingest
from bigseg.store.lock import finish


class Run:
    """The stages of one run over one config on one cluster, sharing their products:
    features are computed once per run, the segmenter and models are those this run
    fitted or else the published ones. Each stage's report goes to the
    :class:`~bigseg.pipeline.record.Recorder`; no stage reads another's report."""

    def __init__(
        self,
        cfg: RunConfig,
        client,
        backend: Backend,
        output: Output,
        *,
        score_only: bool = False,
        model_version: str | None = None,
    ):
        self.cfg, self.client, self.backend = cfg, client, backend
        self.output = output
        self.score_only, self.model_version = score_only, model_version
        self.rec = Recorder(cfg, backend, output, model_version)
        self._ctx: RunContext | None = None
        self._features: FeatureSet | None = None
        self._seg: FittedSegmenter | None = None
        self._serving: ServingModels | None = None
        #: the model version this run publishes, created when a stage first writes to it
        self._writer: VersionWriter | None = None
        #: this run trained the models that score (drift is then no retrain reason)
        self._trained = False

    # -- products, made on first use ---------------------------------------------------
    def context(self) -> RunContext:
        if self._ctx is None:
            self._ctx = RunContext.open(
                self.cfg,
                self.client,
                self.backend,
                self.output,
                score_only=self.score_only,
                model_version=self.model_version,
            )
            if self._ctx.as_of_from_data:
                self.rec.add({"as_of": str(self._ctx.as_of)})
        return self._ctx

    def features(self) -> FeatureSet:
        if self._features is None:
            self._features = features.compute(self.context())
            self.rec.add(dict(self._features.report))
        return self._features

    def segmenter(self) -> FittedSegmenter:
        if self._seg is None:
            self._seg = segment.load(self.context())
            if self._writer is not None:
                self._writer.copy_from(self._seg.source, list(FittedSegmenter.FILES))
        return self._seg

    def serving(self) -> ServingModels:
        if self._serving is None:
            fs = self.features()  # verified against the models' features
            self.segmenter()
            self._serving = score.load_models(self.context(), fs)
        return self._serving

    def writer(self) -> VersionWriter:
        """A loaded segmenter is copied into the new version: it serves its models."""
        if self._writer is None:
            self._writer = VersionWriter(self.output)
            if self._seg is not None and self._seg.source is not None:
                self._writer.copy_from(self._seg.source, list(FittedSegmenter.FILES))
        return self._writer

    # -- stages ------------------------------------------------------------------------
    def ingest(self, inputs=None) -> None:
        with self.rec.timed("ingest"):
            store = ingest(self.cfg, self.client, self.output, inputs)
        m = store.manifest
        self.rec.add(
            {
                "store": {t: v["rows"] for t, v in m["tables"].items()},
                "n_buckets": store.n_buckets,
                "quarantine": m.get("quarantine", {}),
                "last_ingest": m.get("last_ingest", {}),
            }
        )

    def features_stage(self) -> None:
        with self.rec.timed("features"):
            self.rec.add(features.write(self.context(), self.features()))

    def segment(self) -> None:
        with self.rec.timed("segment"):
            ctx, fs = self.context(), self.features()
            prev = segment.previous(ctx)
            self._seg, report = segment.fit(ctx, fs, prev, self.writer())
            self.rec.add({"segmentation": report["segmentation"]})
            self.rec.add(segment.write(ctx, fs, self._seg))

    def train(self) -> None:
        ctx, fs, seg = self.context(), self.features(), self.segmenter()
        with self.rec.timed("train"):
            self._serving, report = train.train(ctx, fs, seg, self.writer())
        self._writer = None  # published
        self._trained = True
        self.rec.add(report)

    def score(self) -> None:
        with self.rec.timed("score"):
            ctx, fs = self.context(), self.features()
            seg, serving = self.segmenter(), self.serving()
            fresh = self._writer is not None
            self.rec.add(score.score(ctx, fs, seg, serving, fresh, self._trained))

    def _publish_segmenter(self) -> None:
        """A run that fitted a segmenter but trained no models (``bigseg segment``)
        publishes it as a version of its own, for ``bigseg train`` to take up."""
        if self._writer is None or not self._writer.has("segmenter.json"):
            return
        ctx = self.context()
        self._writer.publish({"segmenter_only": True, "as_of": str(ctx.as_of)})
        self._writer = None

    def run(self, stages, run_policy: dict | None = None, held=None, inputs=None) -> dict:
        """Run ``stages`` in order, write ``metrics.json``, commit (under the lease
        ``held``) and write the run record."""
        if run_policy is not None:
            self.rec.add({"run_policy": run_policy})
        t0 = time.perf_counter()
        steps = {
            "features": self.features_stage,
            "report": self.rec.report,
            "ingest": lambda: self.ingest(inputs),
        }
        for s in stages:
            if s == "report":
                self.rec.timings["total"] = round(time.perf_counter() - t0, 3)
                self.rec.write_metrics()
            (steps[s] if s in steps else getattr(self, s))()
        if "report" not in stages:
            self.rec.timings["total"] = round(time.perf_counter() - t0, 3)
        self._publish_segmenter()
        metrics = self.rec.write_metrics()
        n = finish(self.output, held)
        self.rec.write_run_record(stages, n)
        return metrics
