"""The output layout: every name bigseg writes under ``output:``, spelled once.

::

    output/
      _bigseg/commits/<n>.json     the commit log: each commit lists every dataset's files
      _bigseg/lease/<epoch>.json   one writer per output (bigseg.io.lease)
      _bigseg/erasure/*.json       the erasure log, one object per request
      _bigseg/records/*.json       run records
      runs/<run_id>/               what one run wrote, named as below:
        store/<table>/bucket=NNNNN/part-*.parquet, store/_manifest.json
        quarantine/<table>/*.parquet
        features/  segments/  scores/as_of=YYYY-MM-DD/  audiences/segment=<id>.parquet
        models/<version>/...  metrics.json  report.html
        .staging/                  (work in progress of that run)
      cache/features/bucket=NNNNN/<key>/   (the feature cache, shared by runs)

A :class:`Layout` rooted at ``runs/<run_id>`` names the paths a run writes
(:attr:`bigseg.io.output.Output.layout`); readers find datasets through the commit
(:class:`bigseg.io.output.Output`), never by these paths. An output written before the
commit log had the run's names directly under ``output/`` (plus ``models/LATEST`` and
``erasure_log.jsonl``): :mod:`bigseg.store.adopt` adopts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bigseg.io.storage import as_path

STORE = "store"
QUARANTINE = "quarantine"
FEATURES = "features"
SEGMENTS = "segments"
SCORES = "scores"
AUDIENCES = "audiences"
MODELS = "models"
#: names of the layout before the commit log (adopted by bigseg.store.adopt)
LATEST = "LATEST"
STAGING = ".staging"
LOCK = ".lock"  # (before the commit log)
METRICS = "metrics.json"
REPORT = "report.html"
RUNS = "runs"
ERASURE_LOG = "erasure_log.jsonl"
FEATURE_CACHE = ("cache", "features")
#: the store's manifest, inside ``store/``
STORE_MANIFEST = "_manifest.json"
#: a model version's manifest, inside ``models/<version>/``
MODEL_MANIFEST = "manifest.json"

#: the directories bigseg owns under ``output:``: what runs, gc and erase write and delete
#: in (``runs/``, ``_bigseg/``, ``cache/``), and the folders of the layout before the
#: commit log, which adoption deletes
MANAGED = (RUNS, "_bigseg", FEATURE_CACHE[0], STORE, FEATURES, SEGMENTS, SCORES, MODELS,
           QUARANTINE, AUDIENCES, STAGING)  # fmt: skip


def scores_dirname(as_of) -> str:
    """``as_of=YYYY-MM-DD``: the directory of the scores at one date."""
    return f"as_of={as_of}"


@dataclass(frozen=True)
class Layout:
    """The paths of one output directory. Cheap to pickle."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", as_path(self.root))

    @property
    def store(self) -> Path:
        return self.root / STORE

    @property
    def quarantine(self) -> Path:
        return self.root / QUARANTINE

    @property
    def features(self) -> Path:
        return self.root / FEATURES

    @property
    def segments(self) -> Path:
        return self.root / SEGMENTS

    @property
    def scores_root(self) -> Path:
        return self.root / SCORES

    def scores(self, as_of) -> Path:
        """``scores/as_of=DATE``."""
        return self.scores_root / scores_dirname(as_of)

    @property
    def audiences(self) -> Path:
        return self.root / AUDIENCES

    @property
    def models(self) -> Path:
        return self.root / MODELS

    def model(self, version: str) -> Path:
        """``models/<version>``."""
        return self.models / version

    def model_manifest(self, version: str) -> Path:
        return self.model(version) / MODEL_MANIFEST

    @property
    def feature_cache(self) -> Path:
        return self.root.joinpath(*FEATURE_CACHE)

    @property
    def runs(self) -> Path:
        return self.root / RUNS

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def erasure_log(self) -> Path:
        return self.root / ERASURE_LOG

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    def managed(self) -> list[Path]:
        """The directories bigseg replaces when it publishes (:data:`MANAGED`)."""
        return [self.root / n for n in MANAGED]


def as_layout(output: str | Path | Layout) -> Layout:
    """``output`` as a :class:`Layout` (a Layout is returned as it is)."""
    return output if isinstance(output, Layout) else Layout(Path(output))
