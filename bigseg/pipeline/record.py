"""What a run leaves behind besides its datasets: ``metrics.json`` (dataset ``metrics``:
the stages' reports merged over the committed one) and the run record
``_bigseg/records/<UTC time>.json``."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from pathlib import Path

from bigseg import progress
from bigseg.backend import Backend
from bigseg.config import RunConfig
from bigseg.io.commit import write_json_atomic
from bigseg.io.manifest import RECORDS
from bigseg.io.output import Output
from bigseg.machine import hardware_info, library_versions
from bigseg.store import open_store

log = logging.getLogger(__name__)


class Recorder:
    """Collects the stages' reports and timings of one run and writes them out."""

    def __init__(
        self, cfg: RunConfig, backend: Backend, output: Output, model_version: str | None = None
    ):
        self.cfg = cfg
        self.backend = backend
        self.model_version = model_version
        self.output = output
        #: this run's reports, merged in stage order (later keys win)
        self.metrics: dict = {}
        self.timings: dict[str, float] = {}

    def add(self, report: dict) -> None:
        self.metrics.update(report)

    @contextlib.contextmanager
    def timed(self, stage: str):
        t0 = time.perf_counter()
        progress.stage(stage)
        yield
        self.timings[stage] = round(time.perf_counter() - t0, 3)
        progress.stage(stage, self.timings[stage])
        log.info("stage %s: %.2fs", stage, self.timings[stage])

    def write_metrics(self) -> dict:
        """Merge this run's reports and timings over the committed ``metrics.json`` and
        write it as this run's dataset ``metrics``; returns the merged metrics."""
        out = self.output
        old = out.read_json("metrics") if out.has("metrics") else {}
        merged = {**old, **self.metrics, "timings": {**old.get("timings", {}), **self.timings}}
        # strict JSON: a value that is undefined (NaN, an infinite threshold) is null
        path = out.layout.metrics
        write_json_atomic(path, merged, strict=True)
        out.put_file("metrics", path)
        self.metrics = merged
        return merged

    def write_run_record(self, stages, commit: int | None) -> Path:
        """``output/_bigseg/records/<UTC time>.json``: enough to reproduce or audit what this run
        published: stages, as_of, the whole config, seed, a fingerprint of the ingested
        inputs (path, size, mtime of every file and the store's mapping hash), the model
        version, library versions, hardware, timings and a summary (customers, segments,
        drift verdict)."""
        out = self.output
        man = open_store(out).manifest if out.has("store") else {}
        fp = hashlib.sha256(
            json.dumps(
                {k: man.get(k) for k in ("inputs", "mapping_hash", "key_fingerprint")},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        version = self.model_version or out.latest_model()
        now = dt.datetime.now(dt.UTC)
        m = self.metrics
        rec = {
            "finished": now.isoformat(timespec="seconds"),
            "stages": list(stages),
            "commit": commit,
            "run_id": out.run_id,
            "as_of": m.get("as_of"),
            "config": self.cfg.model_dump(mode="json"),
            "seed": self.cfg.seed,
            "input_fingerprint": fp,
            "model_version": version,
            "libraries": library_versions(),
            "hardware": hardware_info(),
            "device": self.backend.name,
            "timings": self.timings,
            "summary": {
                "n_customers": m.get("n_customers"),
                "segments": [
                    {k: s.get(k) for k in ("id", "name", "size")} for s in m.get("segments", [])
                ],
                "retrain": m.get("retrain"),
                "score_resume": m.get("score_resume"),
            },
        }
        path = out.path(f"{RECORDS}/{now.strftime('%Y%m%dT%H%M%S%fZ')}.json")
        write_json_atomic(path, rec, strict=True)
        return path

    def report(self) -> None:
        """The ``report`` stage: the HTML report rendered from the metrics written."""
        from bigseg.report import write_report

        with self.timed("report"):
            path = write_report(self.output, self.metrics, self.cfg.privacy.min_segment_size)
        self.metrics["report"] = str(path)
