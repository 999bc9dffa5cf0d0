"""The pipeline: ingest -> features -> segment -> train -> score -> report.

Stages are methods of :class:`Run`, which holds the config, the client and the
per-bucket results already computed (futures resident on the workers), so ``bigseg run``
computes features once and every stage maps over the same buckets without a shuffle.
Each stage command (``bigseg features``, ``segment``, ...) starts a fresh ``Run`` and
recomputes what it needs from the published store and models.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import operator
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bigseg import features as feats_mod
from bigseg import progress, tasks
from bigseg.backend import Backend, resolve
from bigseg.config import RunConfig
from bigseg.errors import ConfigError, DataError, ModelError
from bigseg.features import SKEWED, to_us
from bigseg.machine import hardware_info, library_versions
from bigseg.monitor import drift
from bigseg.predict import fairness, offers, segmented
from bigseg.predict.ranking import roc_auc
from bigseg.predict.xgb import (
    _host_threads,
    evaluate_binary,
    evaluate_value,
    params_for,
    train_dask,
    train_task,
)
from bigseg.progress import gather
from bigseg.registry import VersionWriter, latest_version, load_version, schema_hash
from bigseg.report import projection
from bigseg.report.gains import gains_curve
from bigseg.segment import choose_k, serialize
from bigseg.segment.base import Segmenter
from bigseg.segment.blocks import Blocks
from bigseg.segment.methods import METHODS
from bigseg.segment.naming import name_segments, rfm_position
from bigseg.segment.preprocess import Preprocessor
from bigseg.segment.stability import match_segments, migration_matrix
from bigseg.store import ingest, open_store
from bigseg.store.lock import output_lock
from bigseg.store.publish import ResumableStage, loads_stats, staged_dir, write_json_atomic

log = logging.getLogger(__name__)

#: features the segmentation clusters on (all features are shown in the profiles): the
#: RFM-T quartet of BG/NBD-style models, as rates so that tenure does not inflate counts.
#: Chosen by measurement on generated data with planted personas (benchmarks/HISTORY.md,
#: "segment recovery"): adding counts over fixed windows, trends, channel or campaign
#: shares added within-persona noise and lowered the agreement with the personas.
SEGMENT_FEATURES = ["recency_days", "purchase_rate", "monetary_mean", "tenure_days"]
VALID_FRACTION = 0.15
#: features not monitored for drift (they move with calendar time for every customer)
DRIFT_EXEMPT = ("tenure_days",)


class Run:
    """One pipeline run over one config, on one cluster."""

    def __init__(self, cfg: RunConfig, client, backend: Backend, model_version: str | None = None):
        self.cfg = cfg
        #: the published model version a score-only run scores with (None: ``LATEST``)
        self.model_version = model_version
        self.client = client
        self.backend = backend
        self.out = cfg.output_dir
        self.metrics: dict = {}
        self.timings: dict[str, float] = {}
        self._store = None
        self._frames = None
        self._model: VersionWriter | None = None
        self._seg: dict | None = None
        #: target -> {"global": UBJSON bytes, segment id: bytes}
        self._models: dict[str, dict] = {}
        #: target -> {segment id: "segment" | "global"}
        self._choice: dict[str, dict[int, str]] = {}
        self._model_features: list[str] | None = None
        #: only the score cutoff is needed (set by :func:`run_stages` for score/report)
        self.score_only = False
        self._scores = None
        self.clv: dict = {}
        self.feature_names: list[str] = []
        #: cutoff -> per-bucket model_rows futures, held while train needs them
        self._window_rows: dict[str, list] = {}

    # -- plumbing -------------------------------------------------------------------
    @contextlib.contextmanager
    def timed(self, stage: str):
        t0 = time.perf_counter()
        progress.stage(stage)
        yield
        self.timings[stage] = round(time.perf_counter() - t0, 3)
        progress.stage(stage, self.timings[stage])
        log.info("stage %s: %.2fs", stage, self.timings[stage])

    def submit_each(self, fn, *args, over=None) -> list:
        over = self.frames() if over is None else over
        return [self.client.submit(fn, f, *args, pure=False) for f in over]

    @property
    def store(self):
        if self._store is None:
            self._store = open_store(self.out)
        return self._store

    @property
    def as_of(self) -> dt.date:
        if self.cfg.as_of is not None:
            return self.cfg.as_of
        if "as_of" not in self.metrics:
            futs = [
                self.client.submit(tasks.max_timestamp, self.store, k, pure=False)
                for k in range(self.store.n_buckets)
            ]
            m = max(v for v in gather(self.client, futs, "find last date") if v is not None)
            self.metrics["as_of"] = str(np.datetime64(m, "us").astype("datetime64[D]"))
        return dt.date.fromisoformat(self.metrics["as_of"])

    def cutoffs(self) -> dict[str, int]:
        h = dt.timedelta(days=self.cfg.horizon_days)
        return {
            "score": to_us(self.as_of),
            "train": to_us(self.as_of - h),
            "backtest": to_us(self.as_of - 2 * h),
        }

    def frames(self) -> list:
        """Per-bucket futures of features at every cutoff (computed once per run):
        vocabularies of the categorical columns first (so every bucket has the same
        columns), then the per-bucket features, then CLV (fitted on a sample of all
        buckets, applied per bucket)."""
        if self._frames is None:
            c, store, n = self.client, self.store, self.store.n_buckets
            vocab = feats_mod.merge_vocab(
                gather(
                    c,
                    [c.submit(feats_mod.vocab_counts, store, k, pure=False) for k in range(n)],
                    "vocabularies",
                )
            )
            cuts = self.cutoffs()
            if self.score_only:  # a scheduled `bigseg score`: features at as_of only
                cuts = {"score": cuts["score"]}
            futs = [
                c.submit(
                    feats_mod.cached_bucket_frames,
                    str(self.out),
                    store,
                    k,
                    cuts,
                    ("train", "backtest"),
                    self.cfg.horizon_days,
                    self.cfg.privacy.require_consent,
                    vocab,
                    pure=False,
                )
                for k in range(n)
            ]
            sizes = gather(
                c,
                [c.submit(tasks.n_rows, f, "score", pure=False) for f in futs],
                "features",
                bar=True,
            )
            hits = gather(
                c,
                [c.submit(operator.itemgetter("cached"), f, pure=False) for f in futs],
                "feature cache",
            )
            self.metrics["features_cache"] = {
                "buckets": n,
                "reused": int(sum(hits)),
                "recomputed": n - int(sum(hits)),
            }
            frac = min(1.0, feats_mod.CLV_SAMPLE / max(sum(sizes), 1))
            samples = [
                c.submit(feats_mod.clv_sample, f, k, frac, self.cfg.seed, pure=False)
                for k, f in enumerate(futs)
            ]
            names = list(cuts)
            self.clv = dict(
                zip(
                    names,
                    gather(
                        c,
                        [  # the cutoffs fit side by side
                            c.submit(feats_mod.fit_clv_cutoff, name, *samples, pure=False)
                            for name in names
                        ],
                        "clv fit",
                    ),
                    strict=True,
                )
            )
            futs = [
                c.submit(feats_mod.add_clv, f, self.clv, self.cfg.horizon_days, pure=False)
                for f in futs
            ]
            cols = gather(
                c,
                [c.submit(tasks.columns, f, "score", pure=False) for f in futs],
                "feature columns",
            )
            fc = self.cfg.fairness
            self.feature_names = fairness.model_features(
                list(dict.fromkeys(x for cs in cols for x in cs)),
                fc.protected,
                allow=fc.allow_protected_features,
            )
            self._vocab = vocab
            self.metrics["clv"] = self.clv
            self._frames = futs
        return self._frames

    def count(self, name: str) -> int:
        return sum(gather(self.client, self.submit_each(tasks.n_rows, name), f"count {name}"))

    def write_run_record(self, stages) -> Path:
        """``output/runs/<UTC time>.json``: enough to reproduce or audit what this run
        published: stages, as_of, the whole config, seed, a fingerprint of the ingested
        inputs (path, size, mtime of every file and the store's mapping hash), the model
        version, library versions, hardware, timings and a summary (customers, segments,
        drift verdict)."""
        import hashlib

        man = self.store.manifest if (self.out / "store").is_dir() else {}
        fp = hashlib.sha256(
            json.dumps(
                {k: man.get(k) for k in ("inputs", "mapping_hash", "key_fingerprint")},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        latest = self.out / "models" / "LATEST"
        version = self.model_version or (latest.read_text().strip() if latest.is_file() else None)
        now = dt.datetime.now(dt.UTC)
        rec = {
            "finished": now.isoformat(timespec="seconds"),
            "stages": list(stages),
            "as_of": self.metrics.get("as_of"),
            "config": self.cfg.model_dump(mode="json"),
            "seed": self.cfg.seed,
            "input_fingerprint": fp,
            "model_version": version,
            "libraries": library_versions(),
            "hardware": hardware_info(),
            "device": self.backend.name,
            "timings": self.timings,
            "summary": {
                "n_customers": self.metrics.get("n_customers"),
                "segments": [
                    {k: s.get(k) for k in ("id", "name", "size")}
                    for s in self.metrics.get("segments", [])
                ],
                "retrain": self.metrics.get("retrain"),
                "score_resume": self.metrics.get("score_resume"),
            },
        }
        path = self.out / "runs" / f"{now.strftime('%Y%m%dT%H%M%S%fZ')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, rec)
        return path

    def write_metrics(self) -> None:
        path = self.out / "metrics.json"
        old = json.loads(path.read_text()) if path.is_file() else {}
        merged = {**old, **self.metrics, "timings": {**old.get("timings", {}), **self.timings}}
        write_json_atomic(path, merged)
        self.metrics = merged

    # -- stages -----------------------------------------------------------------------
    def ingest(self):
        with self.timed("ingest"):
            self._store = ingest(self.cfg, self.client)
        m = self.store.manifest
        self.metrics["store"] = {t: v["rows"] for t, v in m["tables"].items()}
        self.metrics["n_buckets"] = self.store.n_buckets
        self.metrics["quarantine"] = m.get("quarantine", {})
        self.metrics["last_ingest"] = m.get("last_ingest", {})

    def features(self):
        with self.timed("features"):
            frames = self.frames()
            excluded = sum(gather(self.client, self.submit_each(tasks.excluded), "consent"))
            with staged_dir(self.out, self.out / "features") as d:
                futs = [
                    self.client.submit(
                        tasks.write_features,
                        f,
                        "score",
                        str(d / f"part-{k:05d}.parquet"),
                        self.feature_names,
                        pure=False,
                    )
                    for k, f in enumerate(frames)
                ]
                n = sum(gather(self.client, futs, "write features", bar=True))
        self.metrics.update(
            as_of=str(self.as_of),
            horizon_days=self.cfg.horizon_days,
            n_customers=n,
            excluded_no_consent=excluded,
            features=feats_mod.describe(self.feature_names),
        )
        if n == 0:
            raise DataError(f"no customer has a purchase on or before as_of={self.as_of}")

    def _model_writer(self) -> VersionWriter:
        """The model version this run publishes (created on first use, when a stage
        writes a model: a score-only run never creates one). A segmenter loaded from
        the previous version (:meth:`_load_segmenter`) is copied into it."""
        if self._model is None:
            self._model = VersionWriter(self.out)
            if getattr(self, "_seg_from", None) is not None:
                self._model.copy_from(
                    self._seg_from, ["preprocess.json", "segmenter.json", "segmenter.npz"]
                )
        return self._model

    def segment(self):
        with self.timed("segment"):
            self._fit_segments()
            new = self._segment_frames()
            self.metrics["segment_migration"] = self._migration(new)
            self.metrics["projection"] = projection.compute(
                self.client, self.frames(), new, self._load_segmenter()["pre"], self.cfg.seed
            )
            with staged_dir(self.out, self.out / "segments") as d:
                futs = [
                    self.client.submit(
                        tasks.write_segments, s, str(d / f"part-{k:05d}.parquet"), pure=False
                    )
                    for k, s in enumerate(new)
                ]
                gather(self.client, futs, "write segments", bar=True)

    def _fit_segments(self):
        seed = self.cfg.seed
        frames = self.frames()
        feats = SEGMENT_FEATURES
        log_feats = sorted(SKEWED & set(feats))
        parts = gather(
            self.client, self.submit_each(tasks.moments, "score", feats, log_feats), "preprocess"
        )
        pre = Preprocessor.fit_moments(feats, log_feats, parts)
        n = self.metrics.get("n_customers") or self.count("score")
        frac = min(1.0, 20_000 / max(n, 1))
        pop = [
            self.client.submit(tasks.sample_rows, f, "score", k, frac, seed, pure=False)
            for k, f in enumerate(frames)
        ]
        pop = pd.concat(gather(self.client, pop, "sample"), ignore_index=True)
        blocks = Blocks(
            self.submit_each(tasks.x_block, "score", pre.to_dict(), self.backend.name), self.client
        )
        Xs = pre.transform(pop)
        previous, old_z = self._previous_segmenter(), None
        if previous is not None:  # its segment centres in this run's scaled space
            old_z = pre.transform(
                pd.DataFrame(
                    previous["pre"].inverse_transform(previous["arrays"]["centres"]), columns=feats
                )
            )
        seg, scores, rule, merged = self._fit_method(
            blocks, Xs, None if previous is None else previous["meta"], old_z
        )
        meta, arrays = seg.export()
        centers_z = arrays["centres"]
        centers = pre.inverse_transform(centers_z)
        positions = rfm_position(
            {f: centers[:, i] for i, f in enumerate(feats)},
            {f: pop[f].to_numpy() for f in pop.columns},
        )
        names = name_segments(positions)
        if "noise_segment" in meta:
            names[meta["noise_segment"]] = serialize.UNUSUAL
        k = len(names)
        ids, continues = list(range(k)), [None] * k
        if previous is not None:
            ids, continues = match_segments(old_z, centers_z, previous["ids"])
            by_id = dict(zip(previous["ids"], previous["names"], strict=True))
            kept = {by_id[c] for c in continues if c is not None}
            names = [
                by_id[c] if c is not None else (nm if nm not in kept else f"{nm} (new)")
                for c, nm in zip(continues, names, strict=True)
            ]
        self._seg = {
            "pre": pre.to_dict(),
            "meta": meta,
            "arrays": arrays,
            "names": names,
            "ids": ids,
        }
        seg_metrics = {
            "method": seg.name,
            "k": k,
            "k_rule": rule,
            "candidates": scores,
            "continues_previous": dict(zip(ids, continues, strict=True)),
            "merged_small_segments": merged,
            **seg.fit_metrics(),
        }
        self.metrics["segmentation"] = seg_metrics
        w = self._model_writer()
        w.write_json("preprocess.json", pre.to_dict())
        w.write_json(
            "segmenter.json",
            {
                **meta,
                "features": feats,
                "names": names,
                "segment_ids": ids,
                "rfm_positions": positions,
            },
        )
        serialize.save(w.dir / "segmenter.npz", arrays)

    def _fit_method(self, blocks: Blocks, Xs: np.ndarray, previous_meta: dict | None, old_z):
        """Fit ``segmentation.method``: k chosen (or found by the method itself),
        warm-started from the previous model (``previous_meta``, its centres ``old_z``)
        where the method can, small segments merged. Returns the segmenter, the candidate
        scores, the k rule and the merge rounds."""
        cfg, seed = self.cfg.segmentation, self.cfg.seed
        method = METHODS[cfg.method]
        if method.finds_k:
            seg = method.from_config(0, cfg, seed, self.backend).fit(blocks)
            scores, rule = [], method.finds_k
        else:
            seg, scores, rule = self._choose_k(method, blocks, Xs)
        if previous_meta is not None:
            seg = seg.warm_start(previous_meta, old_z, blocks)
        seg, merged = self._merge_small(seg, blocks)
        return seg, scores, rule, merged

    def _merge_small(self, seg: Segmenter, blocks: Blocks):
        """Refit with fewer segments while any segment has fewer customers than
        ``privacy.min_segment_size`` (``segmentation.merge_small_segments``), as the
        method merges (:meth:`~bigseg.segment.base.Segmenter.without`); methods that do
        not merge are left alone. Returns the segmenter and one record per round."""
        cfg = self.cfg.segmentation
        min_size = self.cfg.privacy.min_segment_size
        merged: list[dict] = []
        if not seg.merges_small or min_size <= 0 or not cfg.merge_small_segments:
            return seg, merged
        while True:
            meta, arrays = seg.export()
            k = len(arrays["centres"])
            counts = np.sum(blocks.map(serialize.segment_counts, meta, arrays, k), axis=0)
            small = np.flatnonzero(counts < min_size)
            if len(small) == 0 or k - len(small) < 2:
                return seg, merged
            merged.append(
                {
                    "k": int(k),
                    "sizes_below_minimum": counts[small].tolist(),
                    "k_after": int(k - len(small)),
                }
            )
            log.info(
                "segments %s have fewer than %d customers; refitting with k=%d",
                small.tolist(),
                min_size,
                k - len(small),
            )
            seg = seg.without(small, blocks)

    def _choose_k(self, method: type[Segmenter], blocks: Blocks, Xs: np.ndarray):
        """Fit every candidate k on all customers and score it on the sample ``Xs``;
        :mod:`bigseg.segment.choose_k` documents the scores and the rule."""
        cfg, seed = self.cfg.segmentation, self.cfg.seed
        ks = [cfg.k] if cfg.k != "auto" else list(range(cfg.k_min, cfg.k_max + 1))
        fitted, scores = [], []
        for k in ks:
            seg = method.from_config(k, cfg, seed, self.backend).fit(blocks)
            fitted.append(seg)
            if len(ks) == 1:
                scores.append({"k": k})
                continue
            meta, arrays = seg.export()
            s = choose_k.cluster_scores(Xs, serialize.assign(meta, arrays, Xs))

            def refit(train, X, i, k=k):
                m, a = method.from_config(k, cfg, seed + 1 + i, resolve("cpu")).fit(train).export()
                return serialize.assign(m, a, X)

            s["stability"] = choose_k.bootstrap_stability(refit, Xs, seed=seed)
            s.update(seg.k_scores(blocks))
            scores.append({"k": k, **s})
            log.info("k=%d: %s", k, {n: round(v, 4) for n, v in s.items()})
        best = choose_k.pick(scores)
        rule = choose_k.RULE if len(ks) > 1 else "fixed k"
        return fitted[best], scores, rule

    def _previous_segmenter(self) -> dict | None:
        """The published segmenter (preprocessing, centres, ids, names) of the run's model
        version (``LATEST`` unless one was chosen), if any."""
        try:
            d, _ = load_version(self.out, self.model_version)
        except ModelError:
            return None
        seg = json.loads((d / "segmenter.json").read_text())
        if seg.get("features") != SEGMENT_FEATURES or not (d / "segmenter.npz").is_file():
            return None
        arrays = serialize.load_arrays(d / "segmenter.npz")
        return {
            "dir": d,
            "pre": Preprocessor.from_dict(json.loads((d / "preprocess.json").read_text())),
            "meta": {k: v for k, v in seg.items() if k not in ("names", "segment_ids")},
            "arrays": arrays,
            "ids": seg["segment_ids"],
            "names": seg["names"],
        }

    def _migration(self, new_scores: list) -> dict | None:
        """Customers per (previous segment -> new segment), from the published
        ``segments/`` of the last run (same bucketing), before it is replaced."""
        old = self.out / "segments"
        if not old.is_dir() or not any(old.glob("part-*.parquet")):
            return None
        futs = [
            self.client.submit(tasks.migration, s, str(old / f"part-{k:05d}.parquet"), pure=False)
            for k, s in enumerate(new_scores)
        ]
        return migration_matrix(gather(self.client, futs, "migration"))

    def _load_segmenter(self):
        if self._seg is None:
            prev = self._previous_segmenter()
            if prev is None:
                raise ModelError(f"{self.out / 'models'}: no segmenter yet; run `bigseg segment`")
            self._seg = {
                "pre": prev["pre"].to_dict(),
                "meta": prev["meta"],
                "arrays": prev["arrays"],
                "names": prev["names"],
                "ids": prev["ids"],
            }
            # copied into a new model version only if this run publishes one
            # (:meth:`_model_writer`): loading alone stages nothing
            self._seg_from = prev["dir"]
            if self._model is not None:
                self._model.copy_from(
                    prev["dir"], ["preprocess.json", "segmenter.json", "segmenter.npz"]
                )
        return self._seg

    def _segment_frames(self) -> list:
        """Per-bucket futures of scores (segments, and predictions when models exist)."""
        seg = self._load_segmenter()
        self.frames()
        out = self.submit_each(
            tasks.score_bucket,
            "score",
            seg["pre"],
            seg["meta"],
            seg["arrays"],
            seg["names"],
            self._models,
            seg["ids"],
            self._choice,
            self._model_features,
            self.cfg.prediction.drivers,
        )
        return [self.client.submit(operator.itemgetter("scores"), o, pure=False) for o in out]

    def train(self):
        """Global and per-segment models per target, trained one horizon back and chosen
        per segment on a backtest one horizon further back (see
        :mod:`bigseg.predict.segmented`)."""
        pcfg, seed = self.cfg.prediction, self.cfg.seed
        targets = [t for t in pcfg.targets if t in ("churn", "value")]
        if "response" in pcfg.targets:
            if self._has_response_labels():
                targets.append("response")
            else:
                log.warning(
                    "target 'response' skipped: no campaign sent in the label window "
                    "(or no campaigns table with responded_at)"
                )
                self.metrics["response"] = {"skipped": "no campaign responses to learn from"}
        seg = self._load_segmenter()
        ids = [int(i) for i in seg["ids"]]
        self.frames()  # sets feature_names (also when the run has no features stage)
        feats = self.feature_names + segmented.segment_features(ids)
        with self.timed("train"):
            if self.count("train") == 0:
                raise DataError(
                    f"not enough history to train: no customer bought on or before "
                    f"as_of - horizon = {self.as_of - dt.timedelta(days=self.cfg.horizon_days)}"
                )
            evaluation: dict = {}
            choice = {
                t: {s: {"model": "global", "note": "no backtest window"} for s in ids}
                for t in targets
            }
            windows = (["backtest"] if self.count("backtest") > 0 else []) + ["train"]
            # the models of every target and both cutoffs are submitted before any is
            # awaited: they train side by side, one per Dask thread (a segment model as
            # soon as its global model is done); at the final cutoff, the segment models
            # wait for the backtest's choice
            depths = pcfg.search_max_depth or [pcfg.max_depth]
            nthread = max(1, _host_threads(self.client) // (len(targets) * len(windows)))
            submitted = {}
            for w in windows:
                submitted[w] = self._submit_window(w, targets, feats, depths, nthread)
                if w == "backtest":  # every segment's model, to judge against the global
                    for fits, refine in submitted[w].values():
                        fits.update(refine(ids))
            backtest_info = {}
            if "backtest" in windows:  # backtest: fit one window earlier, test on 'train'
                bt = {}
                for t, (fits, _) in submitted["backtest"].items():
                    bt[t], backtest_info[t] = self._collect(fits, "backtest models")
                n_eval, cap = self.count("train"), pcfg.max_backtest_rows
                frac = 1.0 if cap == 0 or n_eval <= cap else cap / n_eval
                res = gather(
                    self.client,
                    [  # on the matrices the final models train on
                        self.client.submit(
                            segmented.backtest_rows, f, r, "train", bt, frac, pure=False
                        )
                        for f, r in zip(self.frames(), self._window_rows["train"], strict=True)
                    ],
                    "backtest",
                )
                cat = {key: np.concatenate([r[key] for r in res]) for key in res[0]}
                self._backtest_ids = [r["customer_id"] for r in res]  # per bucket
                for t in targets:
                    choice[t] = segmented.choose(
                        t,
                        cat[t],
                        cat["segment"],
                        cat[f"pred_{t}_global"],
                        cat[f"pred_{t}_segment"],
                        ids,
                    )
                for t, (fits, refine) in submitted["train"].items():
                    # at the final cutoff only the segment models the backtest chose (none
                    # without a backtest window): the others would never serve a customer;
                    # they train while the backtest is evaluated below
                    fits.update(
                        refine([s for s, r in choice[t].items() if r["model"] == "segment"])
                    )
                for t in targets:
                    evaluation[t] = self._evaluate(t, cat, choice[t])
                if self.cfg.fairness.protected:
                    evaluation["fairness"] = self._fairness(cat, choice)
            final = {
                t: self._collect(fits, "models") for t, (fits, _) in submitted["train"].items()
            }
            self._window_rows = {}  # the matrices are released once their models are done
            self._models = {t: m for t, (m, _) in final.items()}
            for t, (models, info) in final.items():
                for s, rec in choice[t].items():  # a segment model chosen in the backtest
                    if rec["model"] == "segment" and s not in models:  # ... may be too small now
                        rec["model"], rec["note"] = "global", "no segment model at the final cutoff"
                for key, model in models.items():
                    self._model_writer().write_bytes(_model_file(t, key), model)
                evaluation.setdefault(t, {})["training"] = info
                if t in backtest_info:
                    evaluation[t]["backtest_training"] = backtest_info[t]
                evaluation[t]["per_segment"] = {str(s): r for s, r in choice[t].items()}
            self._choice = {t: {s: r["model"] for s, r in c.items()} for t, c in choice.items()}
            self._model_features = feats
            self._model_writer().write_json("drift_reference.json", self._drift_reference())
        h = self.cfg.horizon_days
        self.metrics.update(evaluation)
        self.metrics["training_window"] = {
            "features_at": str(self.as_of - dt.timedelta(days=h)),
            "labels": f"({self.as_of - dt.timedelta(days=h)}, {self.as_of}]",
            "backtest_features_at": str(self.as_of - dt.timedelta(days=2 * h)),
        }
        self._model_writer().publish(
            {
                "features": self.feature_names,
                "schema_hash": schema_hash(self.feature_names),
                "model_features": feats,
                "model_choice": self._choice,
                "models": {
                    t: sorted(_model_file(t, k) for k in m) for t, m in self._models.items()
                },
                "clv": self.clv,
                "segment_features": SEGMENT_FEATURES,
                "as_of": str(self.as_of),
                "horizon_days": h,
                "training_window": self.metrics["training_window"],
                "metrics": {t: evaluation.get(t) for t in targets},
                "seed": seed,
                "device": self.backend.name,
            }
        )
        self._model = None

    def _drift_reference(self) -> dict:
        """What scoring compares against, on a sample of the training cutoff's customers:
        bins of every model feature, bins of the final models' predictions (as served),
        and the segment shares. ``tenure_days`` is left out: it grows with calendar time
        for every customer, so it shifts between any two cutoffs by construction."""
        n = self.count("train")
        frac = min(1.0, 50_000 / max(n, 1))
        cols = [f for f in self.feature_names if f not in DRIFT_EXEMPT]
        sample = pd.concat(
            gather(
                self.client,
                [
                    self.client.submit(
                        tasks.sample_frame, f, "train", k, frac, self.cfg.seed, cols, pure=False
                    )
                    for k, f in enumerate(self.frames())
                ],
                "drift reference",
            ),
            ignore_index=True,
        )
        seg = self._seg_small()
        preds = pd.concat(
            gather(
                self.client,
                [
                    self.client.submit(
                        tasks.predict_sample,
                        f,
                        "train",
                        k,
                        frac,
                        self.cfg.seed,
                        seg,
                        self._models,
                        self._choice,
                        self._model_features,
                        pure=False,
                    )
                    for k, f in enumerate(self.frames())
                ],
                "score reference",
            ),
            ignore_index=True,
        )
        segs = np.concatenate(
            gather(self.client, self.submit_each(tasks.segments_of, "train", seg), "segment shares")
        )
        ids, counts = np.unique(segs, return_counts=True)
        return {
            "features": drift.reference_bins({c: sample[c].to_numpy() for c in cols}),
            "scores": drift.reference_bins({c: preds[c].to_numpy() for c in preds.columns})
            if len(preds.columns)
            else None,
            "segment_shares": {
                str(int(i)): float(c / max(counts.sum(), 1))
                for i, c in zip(ids, counts, strict=True)
            },
            "as_of": str(self.as_of),
            "sample_rows": int(len(sample)),
        }

    def _seg_small(self) -> dict:
        seg = self._load_segmenter()
        return {k: seg[k] for k in ("pre", "meta", "arrays", "ids")}

    def _fairness(self, cat: dict, choice: dict) -> dict:
        """Fairness audit on the backtest (the only window whose outcomes are known):
        per group of every protected attribute, flag rates, AUC, true-positive rates,
        demographic-parity ratios and equal-opportunity differences
        (:func:`bigseg.predict.fairness.audit`)."""
        pcfg, fc = self.cfg.prediction, self.cfg.fairness
        parts = gather(
            self.client,
            [
                self.client.submit(
                    tasks.protected_attributes, self.store, k, ids, fc.protected, pure=False
                )
                for k, ids in enumerate(self._backtest_ids)
            ],
            "protected attributes",
        )
        groups = {a: np.concatenate([p[a] for p in parts]) for a in fc.protected}
        kw: dict = {}
        if "churn" in choice:
            p = _chosen(cat, "churn", choice["churn"])
            kw.update(
                churn_flag=p >= pcfg.high_churn_threshold,
                y_churn=cat["churn"].astype(bool),
                p_churn=p,
            )
        if "value" in choice:
            v = _chosen(cat, "value", choice["value"])
            share = pcfg.high_value_share
            kw.update(
                high_value_flag=v >= np.quantile(v, 1 - share),
                y_high_value=cat["value"] >= np.quantile(cat["value"], 1 - share),
                p_value=v,
            )
        return fairness.audit(
            groups, threshold=fc.threshold, min_group_size=self.cfg.privacy.min_segment_size, **kw
        )

    def _evaluate(self, target: str, cat: dict, choice: dict) -> dict:
        """Backtest metrics of the models as chosen per segment, beside the global model
        alone and the baselines (recency only; BG/NBD expected purchases or spend), overall
        and per segment."""
        segs = cat["segment"]
        p = _chosen(cat, target, choice)
        y = cat[target]
        if target == "response":  # defined only for customers sent a campaign in the window
            ok = np.isfinite(y)
            y, p, segs = y[ok], p[ok], segs[ok]
            out = evaluate_binary(y, p)
            out["global_model_only"] = evaluate_binary(y, cat["pred_response_global"][ok])
            out["baseline_past_response_rate_auc"] = _auc(y, cat["campaign_response_rate"][ok])
            out["calibration"] = segmented.calibration_curve(y, p)
            out["gains"] = gains_curve(y, p)
            out["by_segment"] = {
                str(s): evaluate_binary(y[segs == s], p[segs == s])
                for s in sorted(set(segs.tolist()))
            }
        elif target == "churn":
            out = evaluate_binary(y, p)
            out["global_model_only"] = evaluate_binary(y, cat["pred_churn_global"])
            out["baseline_recency_auc"] = _auc(y, cat["recency_days"])
            out["baseline_bgnbd_auc"] = _auc(y, -cat["clv_expected_purchases"])
            out["calibration"] = segmented.calibration_curve(y, p)
            out["gains"] = gains_curve(y, p)
            out["by_segment"] = {
                str(s): evaluate_binary(y[segs == s], p[segs == s])
                for s in sorted(set(segs.tolist()))
            }
        else:
            out = evaluate_value(y, p)
            out["global_model_only"] = evaluate_value(y, cat["pred_value_global"])
            ev = cat["clv_expected_value"]
            ok = np.isfinite(ev)
            out["baseline_bgnbd"] = evaluate_value(y[ok], ev[ok]) if ok.any() else None
            out["by_segment"] = {
                str(s): evaluate_value(y[segs == s], p[segs == s])
                for s in sorted(set(segs.tolist()))
            }
        return out

    def _has_response_labels(self) -> bool:
        """Whether the training cutoff has customers with a campaign-response label."""
        return (
            sum(
                gather(
                    self.client,
                    self.submit_each(tasks.n_labelled, "train", "response"),
                    "response labels",
                )
            )
            > 0
        )

    def _submit_window(
        self, name: str, targets: list[str], feats: list[str], depths: list[int], nthread: int
    ) -> dict:
        """Submit the models of every target at cutoff ``name`` (:meth:`_submit_fit`),
        from one matrix per bucket built once for all of them."""
        seg = self._seg_small()
        ids = [int(i) for i in seg["ids"]]
        c = self.client
        rows = self.submit_each(
            segmented.model_rows, name, targets, VALID_FRACTION, self.cfg.seed, feats, seg
        )
        cnt = gather(
            c,
            [c.submit(segmented.row_counts, r, ids, pure=False) for r in rows],
            f"training rows at {name}",
        )
        self._window_rows[name] = rows
        return {
            t: self._submit_fit(t, name, rows, cnt, ids, len(feats), depths, nthread)
            for t in targets
        }

    def _submit_fit(
        self,
        target: str,
        name: str,
        rows: list,
        cnt: list,
        ids: list[int],
        n_features: int,
        depths: list[int],
        nthread: int,
    ) -> dict:
        """Submit the models of one target at cutoff ``name`` from the per-bucket
        :func:`~bigseg.predict.segmented.model_rows` futures ``rows`` (and their
        :func:`~bigseg.predict.segmented.row_counts` ``cnt``): the global model, and a
        model per segment with enough rows (:mod:`bigseg.predict.segmented`). Returns
        ``({"global": ...}, refine)``: the global model, a future of (or, for a global
        model trained with ``xgboost.dask`` or chosen by a depth search, the value)
        ``(UBJSON bytes, info)``, and ``refine(segment ids)``, which submits those
        segments' models and returns ``{segment id: future}``."""
        pcfg, seed, c = self.cfg.prediction, self.cfg.seed, self.client
        params = params_for(target, pcfg, seed, self.backend.xgboost_device)

        def total(key) -> tuple[int, int]:
            return (sum(x[target][key][0] for x in cnt), sum(x[target][key][1] for x in cnt))

        n, pos = total(None)
        if n == 0:
            raise DataError(f"no training rows for {target!r} at the {name} cutoff")
        if pcfg.balance_classes and target in segmented.BINARY and 0 < pos < n:
            params["scale_pos_weight"] = (n - pos) / pos  # negatives per positive

        def fraction(rows_: int, cap: int) -> float:
            return 1.0 if cap == 0 or rows_ <= cap else cap / rows_

        def parts(only, frac) -> list:
            return [c.submit(segmented.select, r, target, only, frac, pure=False) for r in rows]

        frac = fraction(n, pcfg.max_train_rows)
        sample = parts(None, frac)
        sampled = n if frac == 1.0 else pcfg.max_train_rows
        out: dict = {}
        if sampled > pcfg.single_worker_max_rows or len(depths) > 1:
            tried = []
            for depth in depths:
                p = {**params, "max_depth": depth}
                if sampled > pcfg.single_worker_max_rows:
                    model, info = train_dask(
                        c,
                        sample,
                        n_features,
                        p,
                        pcfg.n_estimators,
                        pcfg.early_stopping_rounds,
                        pcfg.single_worker_max_rows,
                    )
                else:
                    model, info = c.submit(
                        train_task,
                        {**p, "nthread": nthread},
                        pcfg.n_estimators,
                        pcfg.early_stopping_rounds,
                        *sample,
                        pure=False,
                    ).result()
                loss = next((v for k, v in info.items() if k.startswith("valid_")), np.inf)
                tried.append((loss, depth, model, info))
            loss, depth, model, info = min(tried, key=lambda t: (t[0], t[1]))
            params["max_depth"] = depth
            info = {**info, "max_depth": depth}
            if len(tried) > 1:
                info["search"] = [
                    {"max_depth": d, "valid_loss": float(lo)} for lo, d, _, _ in tried
                ]
            out["global"] = (model, info)
        else:
            out["global"] = c.submit(
                train_task,
                {**params, "nthread": nthread},
                pcfg.n_estimators,
                pcfg.early_stopping_rounds,
                *sample,
                pure=False,
            )

        def refine(segs) -> dict:
            """Submit the models of segments ``segs`` that have enough rows: the global
            model (a future, or its value) boosted further on the segment's rows."""
            more = {}
            base = out["global"]
            for s in segs:
                rows_s, pos_s = total(s)
                enough = rows_s >= segmented.MIN_SEGMENT_ROWS and (
                    target not in segmented.BINARY
                    or min(pos_s, rows_s - pos_s) >= segmented.MIN_SEGMENT_CLASS
                )
                if enough:
                    seg_parts = parts(s, fraction(rows_s, pcfg.segment_max_train_rows))
                    more[s] = c.submit(
                        train_task,
                        params,
                        pcfg.segment_rounds,
                        pcfg.early_stopping_rounds,
                        *seg_parts,
                        init=base[0] if isinstance(base, tuple) else base,
                        pure=False,
                    )
            return more

        return out, refine

    def _collect(self, submitted: dict, what: str) -> tuple[dict, dict]:
        """``({key: UBJSON bytes}, {key: info})`` of :meth:`_submit_fit`'s models (global
        under ``"global"``, segment models under their id; infos keyed by ``str(id)``)."""
        keys = list(submitted)
        futs = [k for k in keys if not isinstance(submitted[k], tuple)]
        done = dict(zip(futs, gather(self.client, [submitted[k] for k in futs], what), strict=True))
        models, infos = {}, {}
        for k in keys:
            model, info = submitted[k] if k not in done else done[k]
            models[k], infos["global" if k == "global" else str(k)] = model, info
        return models, infos

    def _load_models(self, d, manifest: dict) -> None:
        """Models, per-segment choice and model features of a published version."""
        if "model_features" not in manifest:
            raise ModelError(
                f"{d}: model version predates per-segment models; retrain with "
                f"`bigseg run` or `bigseg train`"
            )
        self._model_features = list(manifest["model_features"])
        self._choice = {
            t: {int(k): v for k, v in c.items()} for t, c in manifest["model_choice"].items()
        }
        self._models = {}
        for t, files in manifest["models"].items():
            for f in files:
                stem = f.removesuffix(".ubj")
                key = "global" if stem == t else int(stem.split("segment_")[1])
                self._models.setdefault(t, {})[key] = (d / f).read_bytes()

    def score(self):
        """Scheduled batch scoring, in two phases, resumable after a kill.

        Phase 1 scores every bucket that an earlier, killed run with the same
        fingerprint (:meth:`_score_fingerprint`) has not finished, and saves each
        bucket's scores and small statistics in the stage's resumable staging
        (:class:`bigseg.store.publish.ResumableStage`). Phase 2 adds the columns that depend on all buckets
        (``high_value``, next-best offers) to every saved part and publishes
        ``scores/as_of=DATE/`` atomically; audiences, profiles and drift come from the
        saved statistics. ``metrics.json`` ``score_resume`` says how many buckets were
        taken from a killed run."""
        with self.timed("score"):
            stage, frames = self._score_stage()
            n = self.store.n_buckets
            stats = self._stage_scores(stage, frames)
            resumed = [k for k in range(n) if k not in stats]
            for k in resumed:
                stats[k] = stage.load_stats(k)
            stats = [stats[k] for k in range(n)]
            self.metrics["score_resume"] = {
                "buckets": n,
                "resumed": len(resumed),
                "fingerprint": stage.fingerprint[:16],
            }
            if resumed:
                log.info("score: %d of %d buckets resumed from %s", len(resumed), n, stage.dir)
            self._publish_scores(stage, stats)
            self._profiles(stats)
            self._drift(stats)
            stage.remove()

    def _score_fingerprint(self, version: str, manifest: dict) -> str:
        """SHA-256 of everything that determines the score stage's output: as_of, the
        model version and its file hashes, the store manifest (inputs, mapping, row
        counts, erasures), the whole config, the device, which cutoffs the features
        are computed at, the bigseg source code and the library versions. A model
        fitted in this run and not yet published makes it unique (never resumed)."""
        import hashlib
        import uuid

        doc = {
            "as_of": str(self.as_of),
            "model_version": version,
            "model_files": manifest.get("files"),
            "store": self.store.manifest,
            "config": self.cfg.model_dump(mode="json"),
            "device": self.backend.name,
            "score_only": self.score_only,
            "code": _code_hash(),
            "libraries": library_versions(),
            "unpublished_model": uuid.uuid4().hex if self._model is not None else None,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def _score_stage(self) -> tuple[ResumableStage, dict]:
        """The stage's resumable staging (resumed or new), the models and segmenter
        loaded, and ``{bucket: features future}`` of the buckets still to score."""
        version = self.model_version or latest_version(self.out)
        self.metrics["model_version"] = version
        mpath = self.out / "models" / version / "manifest.json"
        manifest = json.loads(mpath.read_text()) if mpath.is_file() else {}
        stage = ResumableStage(
            self.out, f"as_of={self.as_of}", self._score_fingerprint(version, manifest)
        )
        self.frames()  # all buckets (with the feature cache, a finished one is a cache hit)
        if not self._models:
            d, manifest = load_version(self.out, version, features=self.feature_names)
            self._load_segmenter()
            self._load_models(d, manifest)
        if stage.record is None:
            stage.write_record(
                {
                    "as_of": str(self.as_of),
                    "model_version": version,
                    "features": self.feature_names,
                },
                {},
            )
        done = set(stage.done(self.store.n_buckets))
        return stage, {k: f for k, f in enumerate(self._frames) if k not in done}

    def _stage_scores(self, stage: ResumableStage, frames: dict) -> dict:
        """Phase 1: score the buckets of ``frames`` and save their parts and statistics;
        returns ``{bucket: statistics}``."""
        seg = self._load_segmenter()
        d = self._model_dir()
        path = d / "drift_reference.json" if d is not None else None
        ref = json.loads(path.read_text()) if path is not None and path.is_file() else None
        cats = list(getattr(self, "_vocab", {}).get("transactions.category", []))
        futs = [
            self.client.submit(
                tasks.stage_scores,
                f,
                "score",
                seg["pre"],
                seg["meta"],
                seg["arrays"],
                seg["names"],
                self._models,
                seg["ids"],
                self._choice,
                self._model_features,
                self.cfg.prediction.drivers,
                self.feature_names,
                cats,
                ref,
                str(stage.part(k)),
                str(stage.stats(k)),
                pure=False,
            )
            for k, f in frames.items()
        ]
        texts = gather(self.client, futs, "score", bar=True)
        return {k: loads_stats(t) for k, t in zip(frames, texts, strict=True)}

    def _publish_scores(self, stage: ResumableStage, stats: list) -> None:
        """Phase 2: the global value threshold and category lifts from the saved parts
        and statistics, every part finished with ``high_value`` and offers into one
        staging dir published as ``scores/as_of=DATE/``, then the audiences."""
        c, n = self.client, len(stats)
        total = sum(s["rows"] for s in stats)
        frac = min(1.0, 200_000 / max(total, 1))
        vals = np.concatenate(
            gather(
                c,
                [
                    c.submit(
                        tasks.part_value_sample,
                        str(stage.part(k)),
                        k,
                        frac,
                        self.cfg.seed,
                        pure=False,
                    )
                    for k in range(n)
                ],
                "value threshold",
            )
        )
        share = self.cfg.prediction.high_value_share
        thr = (
            float(np.quantile(vals, 1 - share)) if len(vals) and np.isfinite(vals).all() else np.inf
        )
        aff = self._offers(stats)
        cuts = offers.value_cut_points(vals)
        final = self.out / "scores" / f"as_of={self.as_of}"
        aud = [stage.dir / f"audience-{k:05d}.arrow" for k in range(n)]
        with staged_dir(self.out, final) as d:
            gather(
                c,
                [
                    c.submit(
                        tasks.write_scores,
                        str(stage.part(k)),
                        thr,
                        aff,
                        cuts,
                        self.store,
                        k,
                        str(d / f"part-{k:05d}.parquet"),
                        str(aud[k]),
                        pure=False,
                    )
                    for k in range(n)
                ],
                "write scores",
                bar=True,
            )
        self.metrics["high_value_threshold"] = thr
        self._audiences(aud)

    def _drift(self, stats: list) -> None:
        """Population stability of the features, scores and segment shares against the
        training reference, and the retrain policy's verdict (``metrics.json``:
        ``drift``, ``retrain``; policy in :mod:`bigseg.monitor.drift`), from the
        per-bucket bin counts of the score stage."""
        d = self._model_dir()
        path = d / "drift_reference.json" if d is not None else None
        if path is None or not path.is_file():
            self.metrics.pop("drift", None)
            self.metrics["retrain"] = {
                "recommended": None,
                "reasons": ["no drift reference in the model version"],
            }
            return
        ref = json.loads(path.read_text())
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
        age = max((self.as_of - trained).days, 0)  # scoring a date before training: 0
        retrain, reasons = drift.should_retrain(report, age, self.cfg.drift.policy())
        self.metrics["drift"] = {**report, "reference_as_of": ref["as_of"], "model_age_days": age}
        self.metrics["retrain"] = {"recommended": retrain, "reasons": reasons}
        if retrain:
            log.warning("retraining recommended: %s", "; ".join(reasons))

    def _model_dir(self):
        """The published model version whose models score this run: the chosen one,
        else ``LATEST`` (None before any)."""
        if self.model_version:
            return self.out / "models" / self.model_version
        latest = self.out / "models" / "LATEST"
        return self.out / "models" / latest.read_text().strip() if latest.is_file() else None

    def _offers(self, stats: list) -> dict | None:
        """Category lift per segment reduced over all buckets, for the next-best offers
        (:mod:`bigseg.predict.offers`); None without a category vocabulary."""
        if not stats or any(s["categories"] is None for s in stats):
            return None
        seg = self._load_segmenter()
        aff = offers.category_affinity([s["categories"] for s in stats], seg["ids"], seg["names"])
        self.metrics["offers"] = aff
        return aff

    def _audiences(self, paths: list) -> None:
        """``audiences/segment=<id>.parquet`` for campaign tools: consenting customers
        only, with churn-risk tier, value tier and first offer; the buckets' audience
        rows (saved by the score writes) streamed to the writer one at a time."""
        rows = offers.write_audiences(
            (tasks.read_audience(str(p)) for p in paths),
            self.out,
            segment_ids=self._load_segmenter()["ids"],
        )
        self.metrics["audiences"] = {str(k): int(v) for k, v in rows.items()}

    def _profiles(self, stats: list):
        seg = self._load_segmenter()
        parts = [s["profile"] for s in stats]
        counts = np.sum([p["counts"] for p in parts], axis=0)
        sums = np.sum([p["sums"] for p in parts], axis=0)
        present = np.sum([p["present"] for p in parts], axis=0)
        sumsq = np.sum([p["sumsq"] for p in parts], axis=0)
        n_pop = np.maximum(present.sum(0), 1)
        pop_mean = sums.sum(0) / n_pop
        pop_sd = np.sqrt(np.maximum(sumsq.sum(0) / n_pop - pop_mean**2, 0))
        churn = np.sum([p["churn_probability"] for p in parts], axis=0)
        value = np.sum([p["value_prediction"] for p in parts], axis=0)
        total = max(int(counts.sum()), 1)
        segs = []
        for i, name in sorted(zip(seg["ids"], seg["names"], strict=True)):
            c = int(counts[i])
            mean = np.where(present[i] > 0, sums[i] / np.maximum(present[i], 1), np.nan)
            z = np.where(pop_sd > 0, (mean - pop_mean) / np.where(pop_sd > 0, pop_sd, 1), 0)
            top = [j for j in np.argsort(-np.nan_to_num(np.abs(z)), kind="stable")[:3]]
            segs.append(
                {
                    "top_features": [
                        {
                            "feature": self.feature_names[j],
                            "segment_mean": float(mean[j]),
                            "population_mean": float(pop_mean[j]),
                            "z": float(z[j]),
                            "lift": float(mean[j] / pop_mean[j]) if pop_mean[j] > 0 else None,
                        }
                        for j in top
                        if np.isfinite(mean[j])
                    ],
                    "lift": {
                        f: (
                            float(mean[j] / pop_mean[j])
                            if pop_mean[j] > 0 and np.isfinite(mean[j])
                            else None
                        )
                        for j, f in enumerate(self.feature_names)
                    },
                    "id": int(i),
                    "name": name,
                    "size": c,
                    "share": c / total,
                    "profile": {
                        f: (float(sums[i, j] / present[i, j]) if present[i, j] else None)
                        for j, f in enumerate(self.feature_names)
                    },
                    "churn_probability": _mean(churn[i], c),
                    "value_prediction": _mean(value[i], c),
                }
            )
        self.metrics["segments"] = segs
        self.metrics["drivers"] = self._driver_importance([s["importance"] for s in stats])

    def _driver_importance(self, parts: list, top: int = 10) -> dict:
        """Per target and segment, the features with the largest mean |SHAP|
        contribution to the predictions (global importances per segment), from the
        per-bucket sums of the score stage."""
        feats = self._model_features or []
        out: dict = {}
        for t in self._models:
            for s in self._load_segmenter()["ids"]:
                got = [p[t][int(s)] for p in parts if t in p and int(s) in p[t]]
                n = sum(g[1] for g in got)
                if not n:
                    continue
                mean = np.sum([g[0] for g in got], axis=0) / n
                order = np.argsort(-mean, kind="stable")[:top]
                out.setdefault(t, {})[str(s)] = [
                    {"feature": feats[j], "mean_abs_shap": float(mean[j])} for j in order
                ]
        return out

    def report(self):
        from bigseg.report import write_report

        with self.timed("report"):
            path = write_report(self.out, self.metrics, self.cfg.privacy.min_segment_size)
        self.metrics["report"] = str(path)


def _auc(churn: np.ndarray, score: np.ndarray) -> float | None:
    """AUC of a baseline score (higher = more likely to churn), on the same backtest rows
    as the model; None when a class is missing or the score is unavailable."""
    churn = np.asarray(churn).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    ok = np.isfinite(score)
    if not ok.any() or churn[ok].all() or not churn[ok].any():
        return None
    return roc_auc(churn[ok], score[ok])


def _chosen(cat: dict, target: str, choice: dict) -> np.ndarray:
    """Backtest predictions of ``target`` as served: each row by its segment's model
    where the backtest chose it, else by the global model."""
    own = [int(s) for s, rec in choice.items() if rec["model"] == "segment"]
    mask = np.isin(cat["segment"], own)
    return np.where(mask, cat[f"pred_{target}_segment"], cat[f"pred_{target}_global"])


def _model_file(target: str, key) -> str:
    """``churn.ubj`` (global) or ``churn.segment_3.ubj``."""
    return f"{target}.ubj" if key == "global" else f"{target}.segment_{int(key)}.ubj"


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """SHA-256 of bigseg's Python sources (the code version in score fingerprints)."""
    import hashlib

    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _mean(total: float, count: int) -> float | None:
    return float(total / count) if count and np.isfinite(total) else None


STAGES = ("ingest", "features", "segment", "train", "score", "report")


def model_versions(output: str | Path) -> list[str]:
    """Names of the published model versions under ``output/models/``, oldest first."""
    d = Path(output) / "models"
    return (
        sorted(p.name for p in d.iterdir() if (p / "manifest.json").is_file()) if d.is_dir() else []
    )


def check_model_version(output: str | Path, version: str, stages=("score",)) -> None:
    """Refuse, before anything is written, a model version that is not published under
    ``output/models/`` (:class:`ModelError`, naming the available ones) or one given to
    stages that fit a segmenter or models themselves (:class:`ConfigError`)."""
    fitting = [s for s in stages if s in ("segment", "train")]
    if fitting:
        raise ConfigError(
            f"model version {version!r}: a chosen model version only applies "
            f"to scoring, not to the {'/'.join(fitting)} stage(s)"
        )
    available = model_versions(output)
    if version not in available:
        raise ModelError(
            f"{Path(output) / 'models'}: no model version {version!r}; available: "
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
    if model_version is not None:
        check_model_version(cfg.output_dir, model_version, stages)
    with output_lock(cfg.output_dir, " ".join(stages)):
        gated = (
            tuple(stages) == STAGES
            and model_version is None
            and cfg.drift.retrain == "policy"
            and (Path(cfg.output_dir) / "models" / "LATEST").is_file()
        )
        if not gated:
            return _run_stages(cfg, client, backend, stages, model_version)
        m = _run_stages(cfg, client, backend, ("ingest", "score"), None)
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
        return _run_stages(cfg, client, backend, rest, None, run_policy=policy)


def _run_stages(
    cfg: RunConfig, client, backend: Backend, stages, model_version, run_policy: dict | None = None
) -> dict:
    r = Run(cfg, client, backend, model_version=model_version)
    r.score_only = set(stages) <= {"score", "report"} or tuple(stages) == ("ingest", "score")
    if run_policy is not None:
        r.metrics["run_policy"] = run_policy
    t0 = time.perf_counter()
    for s in stages:
        if s == "report":
            r.timings["total"] = round(time.perf_counter() - t0, 3)
            r.write_metrics()
        getattr(r, s)()
    if "report" not in stages:
        r.timings["total"] = round(time.perf_counter() - t0, 3)
    r.write_metrics()
    r.write_run_record(stages)
    return r.metrics


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
    if model_version is not None:  # before a cluster starts or anything is written
        check_model_version(cfg.output_dir, model_version, stages)
    backend = resolve(device)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    with connect(cluster) as client:
        return run_stages(cfg, client, backend, stages, model_version=model_version)
