"""Fit time of every segmentation method on the local cluster.

Usage::

    .venv/bin/python benchmarks/bench_segment_methods.py --rows 1000000 --features 8 --k 8

Data: ``rows x features`` float32 blobs (``k`` well separated centres), a Dask array in
16 chunks on a local cluster of 2 worker processes. Times one ``fit`` per method and the
adjusted Rand index against the planted blobs. Writes
``benchmarks/results/segment-methods-<rows>x<features>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--methods", default="kmeans,gmm,hierarchical,hdbscan,som")
    args = ap.parse_args()

    import dask.array as da
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    from bigseg.engine import connect
    from bigseg.machine import library_versions
    from bigseg.segment import HDBSCAN, SOM, GaussianMixture, Hierarchical, KMeans

    X, y = make_blobs(args.rows, n_features=args.features, centers=args.k, random_state=0)
    X = X.astype(np.float32)
    make = {
        "kmeans": lambda: KMeans(args.k, device="cpu"),
        "gmm": lambda: GaussianMixture(args.k, covariance_type="diag", device="cpu"),
        "hierarchical": lambda: Hierarchical(args.k, device="cpu"),
        "hdbscan": lambda: HDBSCAN(device="cpu"),
        "som": lambda: SOM(6, 6, n_segments=args.k, device="cpu"),
    }
    res = {}
    with connect(n_workers=2, reuse_current=False):
        dX = da.from_array(X, chunks=(-(-args.rows // 16), args.features)).persist()
        for m in args.methods.split(","):
            t0 = time.perf_counter()
            est = make[m]().fit(dX)
            fit_s = time.perf_counter() - t0
            sample = np.random.default_rng(0).choice(
                args.rows, min(args.rows, 100_000), replace=False
            )
            ari = adjusted_rand_score(y[sample], est.predict(X[sample]))
            res[m] = {"fit_s": round(fit_s, 2), "ari_vs_planted": round(float(ari), 4)}
            print(f"{m:>12}: fit {fit_s:7.2f} s   ARI {ari:.3f}", flush=True)
    out = Path(f"benchmarks/results/segment-methods-{args.rows}x{args.features}.json")
    out.write_text(
        json.dumps(
            {
                "benchmark": "segmentation fit time per method",
                "rows": args.rows,
                "features": args.features,
                "k": args.k,
                "workers": 2,
                "results": res,
                "libraries": library_versions(),
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": f"python benchmarks/bench_segment_methods.py --rows {args.rows} "
                f"--features {args.features} --k {args.k}",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
