"""What a run leaves behind besides its datasets: ``metrics.json`` (the stages' reports
merged over the previous file) and the run record ``runs/<UTC time>.json``."""

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
from bigseg.io.commit import read_json, write_json_atomic
from bigseg.io.layout import Layout, latest_version
from bigseg.io.storage import local
from bigseg.machine import hardware_info, library_versions
from bigseg.store import open_store

log = logging.getLogger(__name__)


class Recorder:
    """Collects the stages' reports and timings of one run and writes them out."""

    def __init__(self, cfg: RunConfig, backend: Backend, model_version: str | None = None):
        self.cfg = cfg
        self.backend = backend
        self.model_version = model_version
        self.layout = Layout(cfg.output_dir)
        self.out = self.layout.root
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
        """Merge this run's reports and timings over ``metrics.json`` and write it
        atomically; returns the merged metrics."""
        path = self.layout.metrics
        old = read_json(path) if local.is_file(path) else {}
        merged = {**old, **self.metrics, "timings": {**old.get("timings", {}), **self.timings}}
        # strict JSON: a value that is undefined (NaN, an infinite threshold) is null
        write_json_atomic(path, merged, strict=True)
        self.metrics = merged
        return merged

    def write_run_record(self, stages) -> Path:
        """``output/runs/<UTC time>.json``: enough to reproduce or audit what this run
        published: stages, as_of, the whole config, seed, a fingerprint of the ingested
        inputs (path, size, mtime of every file and the store's mapping hash), the model
        version, library versions, hardware, timings and a summary (customers, segments,
        drift verdict)."""
        man = open_store(self.out).manifest if local.is_dir(self.layout.store) else {}
        fp = hashlib.sha256(
            json.dumps(
                {k: man.get(k) for k in ("inputs", "mapping_hash", "key_fingerprint")},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        version = self.model_version or latest_version(self.layout)
        now = dt.datetime.now(dt.UTC)
        m = self.metrics
        rec = {
            "finished": now.isoformat(timespec="seconds"),
            "stages": list(stages),
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
        path = self.layout.runs / f"{now.strftime('%Y%m%dT%H%M%S%fZ')}.json"
        write_json_atomic(path, rec, strict=True)
        return path

    def report(self) -> None:
        """The ``report`` stage: the HTML report rendered from the metrics written."""
        from bigseg.report import write_report

        with self.timed("report"):
            path = write_report(self.out, self.metrics, self.cfg.privacy.min_segment_size)
        self.metrics["report"] = str(path)
