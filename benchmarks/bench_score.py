"""Scheduled scoring at scale: ``bigseg score`` time and peak memory.

Usage::

    .venv/bin/python benchmarks/bench_score.py --customers 1000000

Generates ``--customers`` synthetic customers and runs the whole pipeline once (ingest,
features, segment, train) on a local cluster of 2 workers; then times ``score`` alone, as
a scheduled run does it on a fresh ``Run`` (features at ``as_of`` from the store,
segments from the stored segmenter, churn/value/response from the stored models, drivers,
offers, audiences, drift, write), with the peak resident memory of the whole process tree
(client + scheduler + workers) sampled every 0.2 s. Each repeat is a *cold* run (the
per-bucket feature cache deleted first: every bucket's features computed) and then a
*warm* one (the same date again: features from the cache, as after an incremental ingest
that touched no bucket). Writes ``benchmarks/results/score-<customers>.json``.

``--models-from OUT`` publishes the model versions of an earlier run's output instead of
training: copied into this output and committed, with ``OUT``'s ``models/LATEST`` (the 10M
run scores with the 1M run's models: training at 10M on 2 cores is not what is measured
here). ``--dir D`` keeps the data in ``D`` (reused when present).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path


def setup(customers: int, d: Path, client):
    """Generated data under ``d`` and the run config over them (k = 7, every target,
    output ``d/out``): the setup bench_score.py and bench_train.py share."""
    from bigseg.benchmark.data import job_config, prepare_data

    summary = prepare_data(customers, d, 0, client)
    return job_config(
        d, d / "out", str(summary["end_date"]), seed=0, k=7, targets=("churn", "value", "response")
    )


def source_models(src: Path) -> tuple[str | None, dict[str, dict[str, Path]]]:
    """``(latest version, {version: {member: file}})`` of the output ``src``: its latest
    commit, or for an output from before the commit log its ``models/`` folder."""
    from bigseg.io.layout import MODEL_MANIFEST
    from bigseg.io.output import Output, model_dataset

    source = Output.open(src)
    if source.committed:
        return source.latest_model(), {
            v: {m: Path(p) for m, p in source.members(model_dataset(v)).items()}
            for v in source.model_versions()
        }
    models = src / "models"
    latest = models / "LATEST"
    versions = {
        d.name: {p.relative_to(d).as_posix(): p for p in sorted(d.rglob("*")) if p.is_file()}
        for d in (sorted(models.iterdir()) if models.is_dir() else [])
        if (d / MODEL_MANIFEST).is_file()
    }
    return (latest.read_text().strip() if latest.is_file() else None), versions


def import_models(src: Path, cfg) -> None:
    """Publish every model version of the output ``src`` as this output's, with ``src``'s
    ``models/LATEST``, in one commit that leaves this output's own versions out: what
    copying ``models/`` over did before the commit log."""
    import hashlib

    from bigseg.io.commit import copy_file
    from bigseg.io.output import LATEST_MODEL, model_dataset
    from bigseg.store.lock import open_output, output_lease

    latest, versions = source_models(src)
    if latest is None:
        raise SystemExit(f"{src}: no model there (no models/LATEST)")
    with output_lease(cfg, "bench_score.py --models-from") as held:
        out = open_output(cfg)
        for v in out.model_versions():
            out.drop(model_dataset(v))
        tag = hashlib.sha256(f"{src.resolve()}:{latest}:{out.parent}".encode()).hexdigest()
        layout = out.begin(f"models-from-{tag[:12]}")
        for v, members in versions.items():
            for member, path in members.items():
                dst = layout.model(v) / member
                out.storage.makedirs(str(dst.parent))
                copy_file(path, dst)
            out.put(model_dataset(v), layout.model(v), version=v)
        out.put_pointer(LATEST_MODEL, version=latest)
        out.commit(lease=held)


def committed(cfg):
    """The output's latest commit. An output an earlier ``--dir`` run left from before
    the commit log is adopted first, as the next run would adopt it."""
    from bigseg.store.lock import open_output, output_lease

    if Path(cfg.output_dir).is_dir():
        with output_lease(cfg, "bench_score.py"):
            pass
    return open_output(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models-from", default=None, help="publish the models of this output dir")
    ap.add_argument("--dir", default=None, help="keep (and reuse) the data in this dir")
    args = ap.parse_args()

    import shutil

    import pyarrow.parquet as pq

    from bigseg.backend import resolve
    from bigseg.benchmark.env import PeakRSS, hardware, versions
    from bigseg.engine import connect
    from bigseg.features.cache import cache_root
    from bigseg.io.output import scores_dataset
    from bigseg.pipeline import run_stages
    from bigseg.store.lock import open_output

    res: dict = {"benchmark": "bigseg score", "customers": args.customers, "runs": []}
    with contextlib.ExitStack() as stack:
        d = Path(args.dir) if args.dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        c = stack.enter_context(connect(n_workers=2, reuse_current=False))
        if (d / "out.yaml").is_file():  # data and config of an earlier --dir run
            from bigseg.config import load_run_config

            cfg = load_run_config(d / "out.yaml")
        else:
            cfg = setup(args.customers, d, c)
        t0 = time.perf_counter()
        trained = committed(cfg).latest_model() is not None
        if trained and not args.models_from:  # an earlier --dir run trained: reuse
            stages = ()
            res["reused"] = str(d)
        elif args.models_from:
            stages = ("ingest",)
            import_models(Path(args.models_from), cfg)
            res["models_from"] = str(args.models_from)
        else:
            stages = ("ingest", "segment", "train")
        if stages:
            run_stages(cfg, c, resolve("cpu"), stages=stages)
        res["prepare_s"] = time.perf_counter() - t0
        for _ in range(args.repeats):
            for mode in ("cold", "warm"):
                if mode == "cold":
                    shutil.rmtree(cache_root(cfg.output_dir), ignore_errors=True)
                rss = PeakRSS()
                t0 = time.perf_counter()
                m = run_stages(cfg, c, resolve("cpu"), stages=("score",))
                wall = time.perf_counter() - t0
                day = scores_dataset(cfg.as_of or m["as_of"])
                scored = sum(
                    pq.ParquetFile(f).metadata.num_rows
                    for name, f in open_output(cfg).members(day).items()
                    if "/" not in name and name.endswith(".parquet")
                )
                res["runs"].append(
                    {
                        "mode": mode,
                        "wall_s": wall,
                        "score_stage_s": m["timings"].get("score"),
                        "peak_rss_bytes_process_tree": rss.stop(),
                        "customers_scored": scored,
                        "features_cache": m.get("features_cache"),
                    }
                )
                print(res["runs"][-1], flush=True)
    res.update(
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command="python benchmarks/bench_score.py " + " ".join(sys.argv[1:]),
    )
    out = Path(f"benchmarks/results/score-{args.customers}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
