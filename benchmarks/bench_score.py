"""Scheduled scoring at scale: ``bigseg score`` time and peak memory.

Usage::

    .venv/bin/python benchmarks/bench_score.py --customers 1000000

Generates ``--customers`` synthetic customers and runs the whole pipeline once (ingest,
features, segment, train) on a local cluster of 2 workers; then times ``score`` alone, as
a scheduled run does it on a fresh ``Run`` (features at ``as_of`` from the store,
segments from the stored segmenter, churn/value/response from the stored models, drivers,
offers, audiences, drift, write), twice, with the peak resident memory of the whole
process tree (client + scheduler + workers) sampled every 0.2 s. Writes
``benchmarks/results/score-<customers>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from bigseg.backend import resolve
    from bigseg.benchmark.env import PeakRSS, hardware, versions
    from bigseg.engine import connect
    from bigseg.pipeline import run_stages

    res: dict = {"benchmark": "bigseg score", "customers": args.customers, "runs": []}
    with tempfile.TemporaryDirectory() as tmp, connect(n_workers=2, reuse_current=False) as c:
        d = Path(tmp)
        cfg = setup(args.customers, d, c)
        t0 = time.perf_counter()
        m = run_stages(cfg, c, resolve("cpu"), stages=("ingest", "segment", "train"))
        res["prepare_s"] = time.perf_counter() - t0
        for _ in range(args.repeats):
            rss = PeakRSS()
            t0 = time.perf_counter()
            m = run_stages(cfg, c, resolve("cpu"), stages=("score",))
            wall = time.perf_counter() - t0
            res["runs"].append(
                {
                    "wall_s": wall,
                    "score_stage_s": m["timings"].get("score"),
                    "peak_rss_bytes_process_tree": rss.stop(),
                    "customers_scored": m.get("n_customers"),
                }
            )
            print(res["runs"][-1], flush=True)
    res.update(
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        command=f"python benchmarks/bench_score.py --customers {args.customers}",
    )
    out = Path(f"benchmarks/results/score-{args.customers}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
