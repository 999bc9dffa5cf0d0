"""Scale run: bigseg ingest + RFM features from the store at 10M customers / 200M rows,
with the peak memory of the whole process tree.

Usage::

    .venv/bin/python benchmarks/bench_scale.py          # 10M customers, 200M rows, 200 files

Generates the same kind of raw transactions as ``bench_features.py`` (cached under
``--data`` while it runs, deleted at the end unless ``--keep-data``), then on a local
cluster of ``--workers`` worker processes with ``--memory-limit`` each: bigseg ingest
(raw -> customer-bucketed store) and RFM features from the store (one task per bucket,
results kept on the workers). Then, with the cluster closed, DuckDB (2 threads) runs the
same aggregation on the raw files, for reference and to check the row count and column
sums. A thread samples VmRSS of this process and every descendant (scheduler, nannies,
workers) every 0.5 s; the JSON records the peak of the sum per stage and overall.

Writes ``benchmarks/results/scale-10m.json`` (``--out``). Runs once (it takes a while);
``/tmp/BENCH_RUNNING`` exists while it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_features as bf  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=10_000_000)
    ap.add_argument("--transactions", type=int, default=200_000_000)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--data", default="/tmp/bigseg-bench-scale")
    ap.add_argument("--buckets", default="auto", help="store buckets: 'auto' or a number")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="8GiB", help="per worker")
    ap.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB reference")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/scale-10m.json")
    args = ap.parse_args(argv)
    buckets = args.buckets if args.buckets == "auto" else int(args.buckets)

    import duckdb

    from bigseg.engine import connect
    from bigseg.features import to_us
    from bigseg.io.output import Output

    data = Path(args.data)
    stages: dict[str, dict] = {}
    info: dict = {}
    gib = 2**30

    def stage(name, fn, *a):
        base = mem.reset()
        s, out = bf.timed(fn, *a)
        other = bf._LAST_FOREIGN[0]
        stages[name] = {
            "seconds": round(s, 2),
            "peak_tree_rss_gib": round(mem.peak / gib, 2),
            "rss_before_gib": round(base / gib, 2),
            "other_processes_cpu_s": round(other, 1),
        }
        print(
            f"{name}: {s:.1f} s, peak tree RSS {mem.peak / gib:.2f} GiB, other processes' "
            f"CPU meanwhile {other:.1f} s",
            flush=True,
        )
        return out

    t_all = time.perf_counter()
    try:
        with bf.PeakSampler() as mem, bf.bench_flag():
            meta = stage(
                "generate", bf.generate, data, args.customers, args.transactions, args.files
            )
            raw, glob = data / "raw", str(data / "raw" / "*.parquet")
            cutoff_us = to_us(meta["cutoff_day"])
            out = data / "out"
            shutil.rmtree(out, ignore_errors=True)
            with connect(
                n_workers=args.workers, memory_limit=args.memory_limit, reuse_current=False
            ) as client:
                before = set(client.scheduler_info()["workers"])
                info["workers"] = len(before)
                info["worker_memory_limit"] = args.memory_limit
                store = stage("ingest", bf.run_ingest, raw, out, client, buckets)
                info["n_buckets"] = store.n_buckets
                info["store_rows"] = store.manifest["tables"]["transactions"]["rows"]
                info["store_bytes"] = sum(
                    f.stat().st_size
                    for f in Output.open(out).files("store")
                    if f.name.endswith(".parquet")
                )
                assert info["store_rows"] == args.transactions, info
                futs, n = stage("features_rfm", bf.run_store_features, client, store, cutoff_us)
                info["feature_rows"] = n
                bigseg_sum = bf.store_summary(client, futs)
                del futs
                # a worker killed (e.g. over its memory limit) comes back with a new address
                info["workers_restarted"] = set(client.scheduler_info()["workers"]) != before
            if not args.no_duckdb:
                con = duckdb.connect()
                con.execute("SET threads = 2")
                res = stage("duckdb_raw_reference", bf.run_duckdb, con, glob, cutoff_us)
                duck_sum = bf.summary(res.to_pandas())
                del res
                con.close()
                bf.check({"bigseg": bigseg_sum, "duckdb": duck_sum})
                info["checked_equal_to_duckdb"] = True
            info["check"] = bigseg_sum
            overall = mem.overall
    finally:
        if not args.keep_data:
            shutil.rmtree(data, ignore_errors=True)

    result = {
        "benchmark": "scale: bigseg ingest + RFM features from the store",
        "customers": args.customers,
        "transactions": args.transactions,
        "files": args.files,
        "data": meta,
        **info,
        "stages": stages,
        "peak_tree_rss_gib_overall": round(overall / gib, 2),
        "wall_s_total": round(time.perf_counter() - t_all, 1),
        "memory_sampling": "sum of VmRSS of this process and all descendants, every 0.5 s",
        "hardware": bf.hardware(),
        "libraries": bf.versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": (
            "python benchmarks/bench_scale.py "
            + " ".join(argv if argv is not None else sys.argv[1:])
        ).strip(),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}\n")
    print("| stage | seconds | peak tree RSS (GiB) |\n|---|---|---|")
    for k, v in stages.items():
        print(f"| {k} | {v['seconds']:.1f} | {v['peak_tree_rss_gib']:.2f} |")
    return result


if __name__ == "__main__":
    main()
