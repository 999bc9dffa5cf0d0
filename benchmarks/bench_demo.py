"""Stage timings of the demo pipeline on this machine.

Usage::

    .venv/bin/python benchmarks/bench_demo.py --customers 200000 --repeats 3

Generates the synthetic data once (timed), then runs the whole pipeline (ingest,
features, segment, train, score, report) ``--repeats`` times on the default local
cluster, each run into a fresh output directory. Writes
``benchmarks/results/demo-<N>.json`` (hardware, library versions, every run's stage
timings) and prints a Markdown table of the median per stage, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="default: one per core")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/)")
    args = ap.parse_args()

    from bigseg.backend import resolve
    from bigseg.benchmark.data import prepare_data
    from bigseg.benchmark.env import hardware, versions
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.pipeline import run_stages

    work = Path(tempfile.mkdtemp(prefix="bigseg-bench-"))
    runs = []
    overrides = {"n_workers": args.workers} if args.workers else {}
    try:
        with connect(reuse_current=False, **overrides) as client:
            n_workers = len(client.scheduler_info()["workers"])
            t0 = time.perf_counter()
            prepare_data(args.customers, work / "data", 0, client)
            gen_s = time.perf_counter() - t0
            for i in range(args.repeats):
                out = work / f"out{i}"
                doc = {
                    "data": {
                        t: {"path": str(work / "data" / "raw" / t)}
                        for t in ("transactions", "customers", "events", "campaigns", "reviews")
                    },
                    "output": str(out),
                }
                (work / "job.yaml").write_text(yaml.safe_dump(doc))
                m = run_stages(load_run_config(work / "job.yaml"), client, resolve("cpu"))
                runs.append(m["timings"])
                print(f"run {i + 1}/{args.repeats}: {m['timings']}")
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stages = list(runs[0])
    median = {s: round(statistics.median(r[s] for r in runs), 2) for s in stages}
    result = {
        "benchmark": "demo pipeline",
        "customers": args.customers,
        "workers": n_workers,
        "generate_s": round(gen_s, 2),
        "median_s": median,
        "runs": runs,
        "hardware": hardware(),
        "libraries": versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": f"python benchmarks/bench_demo.py --customers {args.customers} --repeats {args.repeats}",
    }
    path = Path(args.out or f"benchmarks/results/demo-{args.customers}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}\n")
    print("| stage | median seconds |\n|---|---|")
    print(f"| generate (once) | {gen_s:.2f} |")
    for s in stages:
        print(f"| {s} | {median[s]:.2f} |")


if __name__ == "__main__":
    main()
