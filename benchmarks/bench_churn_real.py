"""Churn and value on a real transaction log: bigseg vs the classic baselines.

Usage::

    .venv/bin/python benchmarks/bench_churn_real.py

Data: the CDNOW master file (Fader & Hardie; 69,659 purchases of 23,570 customers who
first bought CDs at CDNOW in Q1 1997, observed to the end of June 1998), shipped with the
``lifetimes`` package installed by ``pip install -e .[dev]`` (only its data file is read).
bigseg runs its real pipeline on it (CSV ingest, features, ``k: auto`` segmentation,
per-segment XGBoost, forward-in-time backtest) with a 90-day horizon: the reported
metrics are from fitting at ``as_of - 180 days`` and evaluating on the following 90 days,
where the baselines are scored on the same customers: recency only (days since the last
purchase) and BG/NBD expected purchases (fitted by bigseg on the same cutoff). Writes
``benchmarks/results/churn-real-cdnow.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path


def cdnow_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the CDNOW data ships with `lifetimes`: pip install -e '.[dev]'")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "CDNOW_master.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument(
        "--prediction", default="{}", help='extra prediction config as YAML, e.g. "{max_depth: 3}"'
    )
    args = ap.parse_args()

    import pandas as pd
    import yaml

    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.machine import hardware_info, library_versions
    from bigseg.pipeline import run_stages

    raw = pd.read_csv(
        cdnow_path(),
        sep=r"\s+",
        header=None,
        skiprows=1,
        names=["customer_id", "date", "cds", "amount"],
        dtype={"customer_id": str},
    )
    raw = raw[raw["amount"] > 0]
    tx = pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "timestamp": pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
            + pd.Timedelta(hours=12),
            "amount": raw["amount"],
        }
    )
    with tempfile.TemporaryDirectory() as tmp, connect(n_workers=2, reuse_current=False) as c:
        d = Path(tmp)
        tx.to_csv(d / "cdnow.csv", index=False)
        doc = {
            "data": {"transactions": {"path": str(d / "cdnow.csv")}},
            "horizon_days": args.horizon,
            "seed": 0,
            "output": str(d / "out"),
            "segmentation": {"k": "auto"},
            "prediction": {"targets": ["churn", "value"], **yaml.safe_load(args.prediction)},
        }
        (d / "job.yaml").write_text(yaml.safe_dump(doc))
        m = run_stages(load_run_config(d / "job.yaml"), c, resolve("cpu"))
    ch, v = m["churn"], m["value"]
    res = {
        "benchmark": "churn on a real transaction log (CDNOW master)",
        "customers": int(tx["customer_id"].nunique()),
        "transactions": len(tx),
        "as_of": m["as_of"],
        "horizon_days": args.horizon,
        "backtest": m["training_window"],
        "churn": {
            "bigseg_auc": ch.get("auc"),
            "global_model_auc": ch.get("global_model_only", {}).get("auc"),
            "baseline_recency_auc": ch.get("baseline_recency_auc"),
            "baseline_bgnbd_auc": ch.get("baseline_bgnbd_auc"),
            "pr_auc": ch.get("pr_auc"),
            "brier": ch.get("brier"),
            "positive_rate": ch.get("positive_rate"),
            "n": ch.get("n"),
            "per_segment": ch.get("per_segment"),
        },
        "value": {
            "bigseg": {k: v.get(k) for k in ("mae", "rmse", "spearman", "capture_top10")},
            "baseline_bgnbd": v.get("baseline_bgnbd"),
        },
        "segments": m["segmentation"]["k"],
        "timings": m["timings"],
        "hardware": hardware_info(),
        "libraries": library_versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "prediction_config": yaml.safe_load(args.prediction),
        "command": f"python benchmarks/bench_churn_real.py --prediction '{args.prediction}'",
    }
    out = Path("benchmarks/results/churn-real-cdnow.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("churn", "value")}, indent=1)[:1500])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
