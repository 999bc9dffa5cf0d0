"""K-Means per Lloyd iteration: bigseg vs scikit-learn vs dask-ml, same data, same start.

Usage::

    .venv/bin/python benchmarks/bench_kmeans.py --rows 2000000 --features 16 --k 8

Data: ``rows x features`` float32, a Gaussian mixture with heavily overlapping
components (so Lloyd keeps moving for all ``--iters`` iterations instead of converging
after three, as on well-separated blobs). Every tool starts from the same initial centres
(k-means++ on a 100k sample), runs exactly ``--iters`` iterations (tol = 0) and reports
seconds per iteration and the final inertia. bigseg runs on a local cluster (2 worker
processes) over blocks resident on the workers; dask-ml on the same cluster over the same
persisted dask array; scikit-learn in this process with all cores.
Writes ``benchmarks/results/kmeans-<rows>x<features>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from bigseg.machine import hardware, versions

__all__ = ["make_data"]


def make_data(rows: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.0, size=(k, d))
    X = np.empty((rows, d), dtype=np.float32)
    step = 1 << 20
    for s in range(0, rows, step):
        n = min(step, rows - s)
        lab = rng.integers(0, k, n)
        X[s : s + n] = centres[lab] + rng.normal(scale=1.5, size=(n, d))
    return X


def inertia(X: np.ndarray, C: np.ndarray) -> float:
    from bigseg.segment.kmeans import assign_accumulate

    return float(assign_accumulate(X, C.astype(np.float32), np)[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of tools to skip: sklearn,daskml")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import dask.array as da
    from sklearn.cluster import KMeans as SkKMeans
    from sklearn.cluster import kmeans_plusplus

    from bigseg.benchmark.env import PeakRSS
    from bigseg.engine import connect
    from bigseg.segment import KMeans
    from bigseg.segment.blocks import Blocks

    rss = PeakRSS()
    X = make_data(args.rows, args.features, args.k)
    rng = np.random.default_rng(1)
    sample = X[rng.choice(len(X), min(100_000, len(X)), replace=False)]
    C0, _ = kmeans_plusplus(sample, args.k, random_state=0)
    C0 = C0.astype(np.float32)
    res: dict = {"runs": {}}

    def record(tool, per_iter, final_inertia, n_iter):
        res["runs"].setdefault(tool, []).append(
            {"s_per_iter": per_iter, "inertia": final_inertia, "n_iter": n_iter}
        )
        print(
            f"{tool:>8}: {per_iter * 1e3:8.1f} ms/iter  inertia {final_inertia:.6g}  "
            f"({n_iter} iterations)",
            flush=True,
        )

    with connect(n_workers=2, reuse_current=False) as client:
        n_blocks = 16
        rows = -(-args.rows // n_blocks)
        futs = client.scatter([X[s : s + rows] for s in range(0, args.rows, rows)])
        blocks = Blocks(futs, client)
        dX = da.concatenate(
            [
                da.from_delayed(
                    f, shape=(min(rows, args.rows - i * rows), args.features), dtype=np.float32
                )
                for i, f in enumerate(futs)
            ]
        ).persist()
        for _ in range(args.repeats):
            km = KMeans(args.k, init=C0, max_iter=args.iters, tol=0.0, device="cpu").fit(blocks)
            record("bigseg", float(np.median(km.iter_seconds_)), km.inertia_, km.n_iter_)
        if "daskml" not in skip:
            from dask_ml.cluster import KMeans as DaskKMeans

            for _ in range(max(1, args.repeats - 1)):
                t0 = time.perf_counter()
                dk = DaskKMeans(
                    n_clusters=args.k, init=C0, max_iter=args.iters, tol=0.0, random_state=0
                ).fit(dX)
                el = time.perf_counter() - t0
                record(
                    "dask-ml",
                    el / max(dk.n_iter_, 1),
                    inertia(X, np.asarray(dk.cluster_centers_)),
                    int(dk.n_iter_),
                )
    if "sklearn" not in skip:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sk = SkKMeans(
                args.k, init=C0, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd"
            ).fit(X)
            el = time.perf_counter() - t0
            record("sklearn", el / sk.n_iter_, float(sk.inertia_), int(sk.n_iter_))

    res["peak_rss_bytes_process_tree"] = rss.stop()
    res["data_bytes"] = int(X.nbytes)
    med = {t: float(np.median([r["s_per_iter"] for r in rs])) for t, rs in res["runs"].items()}
    res.update(
        {
            "benchmark": "kmeans per Lloyd iteration",
            "rows": args.rows,
            "features": args.features,
            "k": args.k,
            "iters": args.iters,
            "median_s_per_iter": med,
            "ratio_to_sklearn": {t: v / med["sklearn"] for t, v in med.items()}
            if "sklearn" in med
            else {},
            "hardware": hardware(),
            "libraries": versions(),
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": f"python benchmarks/bench_kmeans.py --rows {args.rows} --features "
            f"{args.features} --k {args.k}",
        }
    )
    out = Path(f"benchmarks/results/kmeans-{args.rows}x{args.features}.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {out}\n\n| tool | ms per iteration | ratio to scikit-learn |\n|---|---|---|")
    for t, v in med.items():
        r = res["ratio_to_sklearn"].get(t)
        print(f"| {t} | {v * 1e3:.1f} | {'' if r is None else f'{r:.2f}'} |")


if __name__ == "__main__":
    main()
