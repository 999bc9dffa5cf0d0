"""How many of a segment's customers its model needs: the train stage with each
``prediction.segment_max_train_rows`` cap, on one run config, alternating caps.

A segment's model is the global model boosted further on (a stable sample of) the
segment's customers; the backtest keeps it only where it beats the global model. This
times the train stage and records what the served models score on the backtest.

Usage::

    python benchmarks/bench_segment_rows.py CONFIG.yaml --caps 50000,25000 --repeats 2

``CONFIG.yaml`` is a run config whose output already holds a store (run ``bigseg run``
once); features come from its cache. Results: ``benchmarks/results/segment-rows-<n>.json``
(n = customers scored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bigseg.backend import resolve  # noqa: E402
from bigseg.benchmark import hardware, versions  # noqa: E402
from bigseg.config import load_run_config  # noqa: E402
from bigseg.engine import connect  # noqa: E402
from bigseg.pipeline import run_stages  # noqa: E402


def served(m: dict) -> dict:
    ch, va = m["churn"], m["value"]
    return {
        "train_s": m["timings"]["train"],
        "churn_auc": ch["auc"],
        "churn_auc_global_only": ch["global_model_only"]["auc"],
        "value_rmse": va["rmse"],
        "value_rmse_global_only": va["global_model_only"]["rmse"],
        "segment_models_chosen": {
            t: sum(r["model"] == "segment" for r in m[t]["per_segment"].values())
            for t in ("churn", "value")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--caps", default="50000,25000")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    base = yaml.safe_load(Path(args.config).read_text())
    caps = [int(c) for c in args.caps.split(",")]
    runs = []
    with connect(reuse_current=False) as client, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for cap in caps:
                pred = {**base.get("prediction", {}), "segment_max_train_rows": cap}
                path = Path(tmp) / "job.yaml"
                path.write_text(yaml.safe_dump({**base, "prediction": pred}))
                m = run_stages(
                    load_run_config(path),
                    client,
                    resolve("cpu"),
                    stages=("features", "segment", "train"),
                )
                runs.append({"cap": cap, "repeat": i, "n_customers": m["n_customers"], **served(m)})
                print(json.dumps(runs[-1]), flush=True)
    res = {
        "benchmark": "segment_max_train_rows",
        "command": "python benchmarks/bench_segment_rows.py " + " ".join(sys.argv[1:]),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "libraries": versions(),
        "runs": runs,
    }
    out = Path("benchmarks/results") / f"segment-rows-{runs[0]['n_customers']}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
