"""Training at scale: how many training rows the models need, and what the train stage
costs.

Usage::

    .venv/bin/python benchmarks/bench_train.py --customers 1000000 [--dask]

Generates ``--customers`` synthetic customers, ingests them and computes the features on
a local cluster of 2 workers. Then, for the churn and value global models (every feature
+ segment one-hot, the pipeline's parameters and early stopping):

* **sample sizes** (``--caps``, default 50k, 100k, 200k and all rows): each trained as
  the pipeline trains it (:func:`bigseg.predict.xgb.train_task`, one thread, on the
  stable customer sample ``prediction.max_train_rows`` takes) at the backtest cutoff and
  judged forward in time on every customer of the next cutoff (churn ROC-AUC; value
  RMSE and Spearman): seconds against accuracy;
* with ``--dask``: the all-rows churn model through ``xgboost.dask``
  (:func:`bigseg.predict.xgb.train_dask`, the path above
  ``prediction.single_worker_max_rows``) against single-process ``xgboost.train`` with
  all cores on the same matrices.

Finally the whole ``train`` stage (backtest + final, global + per-segment models, every
target) is timed. Writes ``benchmarks/results/train-<customers>.json``.
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
    ap.add_argument(
        "--caps",
        default="50000,100000,200000,0",
        help="training-row caps to compare (0 = all rows)",
    )
    ap.add_argument("--dask", action="store_true", help="also time xgboost.dask vs one process")
    ap.add_argument("--dir", default=None, help="keep (and reuse) the data in this dir")
    args = ap.parse_args()

    import numpy as np
    import xgboost as xgb
    from bench_score import setup

    from bigseg.backend import resolve
    from bigseg.engine import connect
    from bigseg.pipeline import VALID_FRACTION, Run
    from bigseg.predict import segmented
    from bigseg.predict.xgb import params_for, train_dask

    res: dict = {"benchmark": "churn model training", "customers": args.customers}
    with tempfile.TemporaryDirectory() as tmp, connect(n_workers=2, reuse_current=False) as c:
        d = Path(args.dir or tmp)
        cfg = setup(args.customers, d, c)
        r = Run(cfg, c, resolve("cpu"))
        r.ingest()
        r.segment()
        seg = r.segmenter().without_names()
        feats = list(r.features().names) + segmented.segment_features(list(seg.ids))
        pc = cfg.prediction
        res["caps"] = caps(r, c, seg, feats, [int(x) for x in args.caps.split(",")])
        for row in res["caps"]:
            print(row, flush=True)
        if not args.dask:
            res["train_stage_s"], res["train_stage_metrics"] = train_stage(r)
            return finish(res, args)
        params = params_for("churn", pc, cfg.seed, "cpu")
        parts = each(r, segmented.xy_parts, "train", "churn", VALID_FRACTION, cfg.seed, feats, seg)
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
        res["train_stage_s"], res["train_stage_metrics"] = train_stage(r)
    finish(res, args)


def each(r, fn, *args) -> list:
    """Futures of ``fn(bucket features, *args)`` over every bucket of run ``r``."""
    return r.context().map_buckets(fn, list(r.features().buckets), *args)


def caps(r, c, seg, feats, caps: list[int]) -> list[dict]:
    """Global churn and value models at the backtest cutoff on samples of ``caps`` rows,
    judged on every customer of the training cutoff (forward in time)."""
    import numpy as np

    from bigseg.pipeline import VALID_FRACTION
    from bigseg.predict import segmented
    from bigseg.predict.xgb import (
        _booster,
        evaluate_binary,
        evaluate_value,
        params_for,
        train_task,
    )

    targets = ["churn", "value"]
    fit_rows = c.gather(
        each(r, segmented.model_rows, "backtest", targets, VALID_FRACTION, r.cfg.seed, feats, seg)
    )
    test_rows = c.gather(
        each(r, segmented.model_rows, "train", targets, VALID_FRACTION, r.cfg.seed, feats, seg)
    )
    X = np.concatenate([t["X"] for t in test_rows])
    out = []
    for target in targets:
        y = np.concatenate([t["y"][target] for t in test_rows])
        n = sum(len(segmented.select(p, target)[1]) for p in fit_rows)
        for cap in caps:
            frac = 1.0 if cap == 0 or cap >= n else cap / n
            parts = [segmented.select(p, target, None, frac) for p in fit_rows]
            params = params_for(target, r.cfg.prediction, r.cfg.seed, "cpu")
            t0 = time.perf_counter()
            model, info = train_task(
                params,
                r.cfg.prediction.n_estimators,
                r.cfg.prediction.early_stopping_rounds,
                *parts,
            )
            secs = time.perf_counter() - t0
            p = _booster(model).inplace_predict(X)
            m = evaluate_binary(y, p) if target == "churn" else evaluate_value(y, p)
            out.append(
                {
                    "target": target,
                    "cap": cap or "all",
                    "train_rows": info["n_train"],
                    "seconds_1_thread": round(secs, 2),
                    "best_iteration": info["best_iteration"],
                    **{
                        k: m.get(k)
                        for k in ("auc", "pr_auc", "rmse", "spearman")
                        if m.get(k) is not None
                    },
                }
            )
    return out


def train_stage(r) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r.train()
    secs = time.perf_counter() - t0
    m = r.rec.metrics
    return secs, {
        "churn_auc": m.get("churn", {}).get("auc"),
        "value_rmse": m.get("value", {}).get("rmse"),
        "value_spearman": m.get("value", {}).get("spearman"),
        "response_auc": m.get("response", {}).get("auc"),
    }


def finish(res: dict, args) -> None:
    from bigseg.benchmark.env import hardware, versions

    res.update(
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=f"python benchmarks/bench_train.py --customers {args.customers} "
        f"--caps {args.caps}" + (" --dask" if args.dask else ""),
    )
    out = Path(f"benchmarks/results/train-{args.customers}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print({k: v for k, v in res.items() if k.endswith("_s") or k.endswith("rows")})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
