"""Do the segments recover the planted personas? ``k: auto`` and agreement per method.

Usage::

    .venv/bin/python benchmarks/bench_segment_recovery.py --customers 200000

Generates ``--customers`` synthetic customers (7 planted personas, seed ``--seed``), then
for each method runs the real pipeline stages ``ingest`` and ``segment`` with
``k: auto`` on the default segmentation features on a local cluster of 2 workers, and
compares the published segments with the personas in ``ground_truth/``: the k chosen,
the adjusted Rand index (ARI), every candidate's scores, and the segment stage's time.
Writes ``benchmarks/results/segment-recovery-<customers>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="kmeans,gmm,hierarchical,som")
    args = ap.parse_args()

    import pandas as pd
    import yaml
    from sklearn.metrics import adjusted_rand_score

    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.io.output import Output
    from bigseg.machine import hardware_info, library_versions
    from bigseg.pipeline import SEGMENT_FEATURES, run_stages
    from bigseg.synth import PERSONAS, generate

    res: dict = {
        "benchmark": "segment recovery",
        "customers": args.customers,
        "seed": args.seed,
        "planted_personas": len(PERSONAS),
        "features": SEGMENT_FEATURES,
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as tmp, connect(n_workers=2, reuse_current=False) as c:
        d = Path(tmp)
        generate(args.customers, d, seed=args.seed, client=c)
        truth = pd.read_parquet(d / "ground_truth")[["customer_id", "persona"]]
        for method in args.methods.split(","):
            out = d / f"out-{method}"
            doc = {
                "data": {t: {"path": str(d / "raw" / t)} for t in TABLES},
                "horizon_days": 90,
                "seed": 0,
                "output": str(out),
                "segmentation": {"method": method, "k": "auto"},
            }
            (d / f"{method}.yaml").write_text(yaml.safe_dump(doc))
            cfg = load_run_config(d / f"{method}.yaml")
            t0 = time.perf_counter()
            m = run_stages(cfg, c, resolve("cpu"), stages=("ingest", "segment"))
            wall = time.perf_counter() - t0
            seg = pd.concat(
                pd.read_parquet(f)
                for name, f in Output.open(out).members("segments").items()
                if "/" not in name and name.endswith(".parquet")
            )
            seg = seg.merge(truth, on="customer_id")
            ari = float(adjusted_rand_score(seg["persona"], seg["segment"]))
            s = m["segmentation"]
            res["methods"][method] = {
                "k": s["k"],
                "ari": ari,
                "candidates": s["candidates"],
                "segment_s": m["timings"]["segment"],
                "ingest_plus_segment_s": wall,
                "customers_segmented": len(seg),
            }
            print(
                f"{method:>13}: k={s['k']}  ARI {ari:.3f}  segment {m['timings']['segment']:.1f}s",
                flush=True,
            )
    res.update(
        hardware=hardware_info(),
        libraries=library_versions(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=f"python benchmarks/bench_segment_recovery.py --customers "
        f"{args.customers} --seed {args.seed}",
    )
    path = Path(f"benchmarks/results/segment-recovery-{args.customers}.json")
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
