"""CDNOW forward in time: `bigseg run` at three cutoffs against BG/NBD and recency.

Usage::

    .venv/bin/python benchmarks/bench_cdnow_forward.py [--as-of 1997-09-30 ...]

The CDNOW master file (Fader & Hardie; 23,570 customers who first bought in Q1 1997,
observed to 1998-06-30) ships in the ``lifetimes`` wheel of the dev extra. It is
converted once to the CSV a user would hand over (``CustID, OrderDate (yyyymmdd), CDs,
Total``), and ``bigseg run`` (the CLI, local cluster, default config apart from
``as_of``, ``horizon_days: 90`` and the column mapping) scores it at each cutoff. Each
score file is then judged against what happened in the following 90 days, on the same
customers, beside:

- **BG/NBD**: ``lifetimes``' ``BetaGeoFitter`` fitted at the cutoff on all history up to
  it (daily periods); its score is the expected purchases in the horizon (fewer =
  more likely to churn). ``lifetimes`` is used here only, never by bigseg.
- **recency**: days since the last purchase.

AUCs carry DeLong's 95 % interval, and bigseg's lead over BG/NBD its paired interval
(same customers). Writes ``benchmarks/results/cdnow-forward.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CUTOFFS = ("1997-09-30", "1997-12-31", "1998-03-31")


def cdnow_raw():
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the CDNOW data ships with `lifetimes`: pip install -e '.[dev]'")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "CDNOW_master.txt"
    return pd.read_csv(
        path,
        sep=r"\s+",
        header=None,
        skiprows=1,
        names=["CustID", "OrderDate", "CDs", "Total"],
        dtype=str,
    )


def bgnbd_expected(tx, as_of: str, horizon: int):
    """Expected purchases in ``horizon`` days per customer, BG/NBD fitted at ``as_of``."""
    import pandas as pd
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import summary_data_from_transaction_data

    hist = tx[tx["date"] <= as_of]
    s = summary_data_from_transaction_data(
        hist, "customer_id", "date", observation_period_end=as_of, freq="D"
    )
    bg = BetaGeoFitter(penalizer_coef=0.0).fit(s["frequency"], s["recency"], s["T"])
    e = bg.conditional_expected_number_of_purchases_up_to_time(
        horizon, s["frequency"], s["recency"], s["T"]
    )
    return e, (pd.Timestamp(as_of) - hist.groupby("customer_id")["date"].max()).dt.days


def judge(scores, tx, as_of: str, horizon: int) -> dict:
    import numpy as np
    import pandas as pd

    from bigseg.predict.ranking import auc_difference, auc_interval

    end = pd.Timestamp(as_of) + pd.Timedelta(days=horizon)
    nxt = tx[(tx["date"] > as_of) & (tx["date"] <= end) & (tx["amount"] > 0)]
    ids = scores["customer_id"]
    churn = ~ids.isin(set(nxt["customer_id"]))
    e, recency = bgnbd_expected(tx, as_of, horizon)
    bg = -e.reindex(ids).to_numpy(np.float64)
    rec = recency.reindex(ids).to_numpy(np.float64)
    p = scores["churn_probability"].to_numpy(np.float64)
    y = churn.to_numpy()
    return {
        "as_of": as_of,
        "customers": int(len(ids)),
        "churn_rate": float(y.mean()),
        "bigseg": auc_interval(y, p),
        "bgnbd": auc_interval(y, bg),
        "recency": auc_interval(y, rec),
        "bigseg_minus_bgnbd": auc_difference(y, p, bg),
    }


def run_bigseg(
    csv: Path, work: Path, as_of: str, horizon: int, prediction: dict
) -> tuple[object, dict]:
    import pandas as pd
    import yaml

    import bigseg
    from bigseg.testing.outputs import metrics

    out = work / f"out-{as_of}"
    cfg = work / f"job-{as_of}.yaml"
    doc = {
        "data": {
            "transactions": {
                "path": str(csv),
                "columns": {"customer_id": "CustID", "timestamp": "OrderDate", "amount": "Total"},
                "csv": {"timestamp_format": "%Y%m%d"},
            }
        },
        "as_of": as_of,
        "horizon_days": horizon,
        "seed": 0,
        "output": str(out),
        **({"prediction": prediction} if prediction else {}),
    }
    cfg.write_text(yaml.safe_dump(doc))
    t0 = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "bigseg"), "run", str(cfg), "--quiet"], check=True
    )
    took = time.perf_counter() - t0
    scores = bigseg.read_scores(out).to_pandas()
    m = metrics(out)
    return pd.DataFrame(scores), {"seconds": round(took, 1), "served": m["churn"].get("served")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--as-of", nargs="*", default=list(CUTOFFS))
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument(
        "--prediction", default="{}", help='prediction config as YAML, e.g. "{training_windows: 1}"'
    )
    ap.add_argument("--out", default="benchmarks/results/cdnow-forward.json")
    args = ap.parse_args()

    import pandas as pd
    import yaml

    from bigseg.machine import hardware_info, library_versions

    raw = cdnow_raw()
    tx = pd.DataFrame(
        {
            "customer_id": raw["CustID"],
            "date": pd.to_datetime(raw["OrderDate"], format="%Y%m%d"),
            "amount": raw["Total"].astype(float),
        }
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv = work / "cdnow.csv"
        raw.to_csv(csv, index=False)
        for as_of in args.as_of:
            scores, info = run_bigseg(
                csv, work, as_of, args.horizon, yaml.safe_load(args.prediction)
            )
            rows.append({**judge(scores, tx, as_of, args.horizon), **info})
            r = rows[-1]
            print(
                f"{as_of}: bigseg {r['bigseg']['auc']:.4f}  BG/NBD {r['bgnbd']['auc']:.4f}  "
                f"recency {r['recency']['auc']:.4f}  lead {r['bigseg_minus_bgnbd']['difference']:+.4f} "
                f"[{r['bigseg_minus_bgnbd']['low']:+.4f}, {r['bigseg_minus_bgnbd']['high']:+.4f}]",
                flush=True,
            )
    res = {
        "benchmark": "CDNOW forward: bigseg run vs BG/NBD (lifetimes) and recency, churn AUC",
        "horizon_days": args.horizon,
        "prediction_config": yaml.safe_load(args.prediction),
        "cutoffs": rows,
        "hardware": hardware_info(),
        "libraries": library_versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_cdnow_forward.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
