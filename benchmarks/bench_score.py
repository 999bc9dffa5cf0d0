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
import sys
import tempfile
import time
from pathlib import Path

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import yaml

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_kmeans import PeakRSS

    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.pipeline import run_stages
    from bigseg.registry import hardware_info, library_versions
    from bigseg.synth import generate

    res: dict = {"benchmark": "bigseg score", "customers": args.customers, "runs": []}
    with tempfile.TemporaryDirectory() as tmp, connect(n_workers=2, reuse_current=False) as c:
        d = Path(tmp)
        generate(args.customers, d, seed=0, client=c)
        doc = {"data": {t: {"path": str(d / "raw" / t)} for t in TABLES}, "horizon_days": 90,
               "seed": 0, "output": str(d / "out"), "segmentation": {"k": 7}}
        (d / "job.yaml").write_text(yaml.safe_dump(doc))
        cfg = load_run_config(d / "job.yaml")
        t0 = time.perf_counter()
        m = run_stages(cfg, c, resolve("cpu"), stages=("ingest", "segment", "train"))
        res["prepare_s"] = time.perf_counter() - t0
        for _ in range(args.repeats):
            rss = PeakRSS()
            t0 = time.perf_counter()
            m = run_stages(cfg, c, resolve("cpu"), stages=("score",))
            wall = time.perf_counter() - t0
            res["runs"].append({"wall_s": wall, "score_stage_s": m["timings"].get("score"),
                                "peak_rss_bytes_process_tree": rss.stop(),
                                "customers_scored": m.get("n_customers")})
            print(res["runs"][-1], flush=True)
    res.update(hardware=hardware_info(), libraries=library_versions(),
               timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               command=f"python benchmarks/bench_score.py --customers {args.customers}")
    out = Path(f"benchmarks/results/score-{args.customers}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
