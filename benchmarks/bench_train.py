"""Training time at scale: ``xgboost.dask`` on the local cluster vs single-process XGBoost.

Usage::

    .venv/bin/python benchmarks/bench_train.py --customers 1000000

Generates ``--customers`` synthetic customers, ingests them and computes the features on
a local cluster of 2 workers, then trains the churn model on the training cutoff's rows
(every feature + segment one-hot, the same early stopping on the same validation split)
twice: (1) bigseg's global-model path, ``xgboost.dask`` through
:func:`bigseg.predict.xgb.train_dask`; (2) single-process ``xgboost.train`` with
``nthread`` = all cores on the same matrices gathered into this process (what a data
scientist would run on one machine). Finally the whole ``train`` stage (backtest +
final, global + per-segment models, both targets) is timed. Writes
``benchmarks/results/train-<customers>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    args = ap.parse_args()

    import numpy as np
    import xgboost as xgb
    from bench_score import setup

    from bigseg.backend import resolve
    from bigseg.benchmark.env import hardware, versions
    from bigseg.engine import connect
    from bigseg.pipeline import VALID_FRACTION, Run
    from bigseg.predict import segmented
    from bigseg.predict.xgb import params_for, train_dask

    res: dict = {"benchmark": "churn model training", "customers": args.customers}
    with tempfile.TemporaryDirectory() as tmp, connect(n_workers=2, reuse_current=False) as c:
        d = Path(tmp)
        cfg = setup(args.customers, d, c)
        r = Run(cfg, c, resolve("cpu"))
        r.ingest()
        r.segment()
        seg = r._seg_small()
        feats = r.feature_names + segmented.segment_features([int(i) for i in seg["ids"]])
        pc = cfg.prediction
        params = params_for("churn", pc, cfg.seed, "cpu")
        parts = r.submit_each(
            segmented.xy_parts, "train", "churn", VALID_FRACTION, cfg.seed, feats, seg
        )
        t0 = time.perf_counter()
        _, info = train_dask(
            c,
            parts,
            len(feats),
            params,
            pc.n_estimators,
            pc.early_stopping_rounds,
            pc.single_worker_max_rows,
        )
        res["xgboost_dask_s"] = time.perf_counter() - t0
        res["xgboost_dask_info"] = info
        got = c.gather(parts)
        Xt, yt, Xv, yv = (np.concatenate([g[j] for g in got]) for j in range(4))
        res["train_rows"], res["valid_rows"], res["features"] = len(yt), len(yv), len(feats)
        cores = len(os.sched_getaffinity(0))
        t0 = time.perf_counter()
        dtrain, dvalid = xgb.DMatrix(Xt, label=yt), xgb.DMatrix(Xv, label=yv)
        b = xgb.train(
            {**params, "nthread": cores},
            dtrain,
            num_boost_round=pc.n_estimators,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=pc.early_stopping_rounds,
            verbose_eval=False,
        )
        res["single_process_s"] = time.perf_counter() - t0
        res["single_process_best_iteration"] = int(b.best_iteration)
        del got, Xt, Xv, dtrain, dvalid
        t0 = time.perf_counter()
        r.train()
        res["train_stage_s"] = time.perf_counter() - t0
        res["train_stage_auc"] = r.metrics.get("churn", {}).get("auc")
    res.update(
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        command=f"python benchmarks/bench_train.py --customers {args.customers}",
    )
    out = Path(f"benchmarks/results/train-{args.customers}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print({k: v for k, v in res.items() if k.endswith("_s") or k.endswith("rows")})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
