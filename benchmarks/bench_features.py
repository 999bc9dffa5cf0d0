"""RFM features: bigseg (ingest, then features from the store) vs DuckDB, Polars, pandas
and dask.dataframe, on the same raw Parquet files, in one process run.

Usage::

    .venv/bin/python benchmarks/bench_features.py                     # 1M customers, 20M rows
    .venv/bin/python benchmarks/bench_features.py --customers 200000 --transactions 4000000

Generates (once, cached under ``--data``) a transactions-only raw dataset: ``customer_id``
int64 in random order, ``timestamp`` timestamp[us] over ~3 years, ``amount`` float64
(~4% negative: returns), as ``--files`` zstd Parquet files written chunk by chunk.

The aggregation, identical for every tool: rows with ``timestamp <= cutoff`` (cutoff = the
end of the last day of the data); per customer with at least one purchase (amount > 0):
recency (days since the last purchase), frequency (purchases), monetary total (net sum of
amount, returns included), monetary mean and max (of purchases), tenure (days since the
first purchase). Every result is materialised (an Arrow/pandas/Polars table in memory, or
persisted on the Dask workers); row counts and column sums are checked equal across tools.

bigseg's features function (:func:`bigseg.features.rfm.rfm_features`) computes 12 columns,
the six above plus six more (inter-purchase time, returns rate, 90-day counts, trends); it
is timed as is. Writes ``benchmarks/results/features-<customers>-<transactions>.json``
(hardware, library versions, every run, medians) and prints a Markdown table.

While it measures, ``/tmp/BENCH_RUNNING`` exists (other users of the machine wait).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "2")  # before polars is imported anywhere

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY_US = 86_400 * 1_000_000
START = np.datetime64("2023-01-01", "D")
DAYS = 1096  # ~3 years: 2023-01-01 .. 2026-01-01
RETURN_SHARE = 0.04
FLAG = Path("/tmp/BENCH_RUNNING")
COLS = ["customer_id", "timestamp", "amount"]
#: columns every tool must produce (bigseg's names)
FEATURES = [
    "recency_days",
    "frequency",
    "monetary_total",
    "monetary_mean",
    "monetary_max",
    "tenure_days",
]


# --------------------------------------------------------------------------- environment
def hardware() -> dict:
    from bigseg.benchmark.env import hardware as hw

    return hw()


def versions() -> dict:
    from bigseg.benchmark.env import versions as v

    return v()


@contextmanager
def bench_flag():
    """``/tmp/BENCH_RUNNING`` exists while timed work runs (removed even on error)."""
    FLAG.write_text(f"{os.getpid()} {' '.join(sys.argv)}\n")
    try:
        yield
    finally:
        FLAG.unlink(missing_ok=True)


# --------------------------------------------------------------------------- memory
def _tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(p))
    out, todo = [], [root]
    while todo:
        q = todo.pop()
        out.append(q)
        todo.extend(children.get(q, ()))
    return out


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(root: int | None = None) -> int:
    """Resident memory of a process and all its descendants, summed (bytes)."""
    return sum(_rss_bytes(p) for p in _tree_pids(root or os.getpid()))


_HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds used by the whole machine, by this process tree) so far: the
    difference over a run says how much CPU *other* processes took while it ran."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(f) if i not in (3, 4))  # all but idle, iowait
    mine = 0
    for p in _tree_pids(os.getpid()):
        try:
            st = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        mine += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])  # u, s, cu, cs
    return busy / _HZ, mine / _HZ


class PeakSampler:
    """Samples :func:`tree_rss` every ``interval`` s in a thread; ``peak`` since
    :meth:`reset`, ``overall`` since start."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self.overall = interval, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = tree_rss()
            self.peak, self.overall = max(self.peak, v), max(self.overall, v)
            self._stop.wait(self.interval)

    def reset(self) -> int:
        v = tree_rss()
        self.peak = v
        return v

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


# --------------------------------------------------------------------------- data
def generate(
    data: Path, n_customers: int, n_rows: int, n_files: int, seed: int = 0, chunk: int = 2_000_000
) -> dict:
    """Raw transactions as ``n_files`` Parquet files; cached (``_meta.json`` says what)."""
    meta_path = data / "_meta.json"
    want = {"customers": n_customers, "transactions": n_rows, "files": n_files, "seed": seed}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want:
            return meta
    shutil.rmtree(data, ignore_errors=True)
    raw = data / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    # skewed activity: per-customer weights from a Gamma(0.7); sparse, shuffled int64 ids
    cdf = np.cumsum(rng.gamma(0.7, 1.0, n_customers))
    ids_of = 1_000_000_007 + rng.permutation(n_customers).astype(np.int64) * 7_919
    schema = pa.schema(
        [("customer_id", pa.int64()), ("timestamp", pa.timestamp("us")), ("amount", pa.float64())]
    )
    t0 = time.perf_counter()
    per_file = np.full(n_files, n_rows // n_files)
    per_file[: n_rows % n_files] += 1
    start_us = int(START.astype("datetime64[us]").astype(np.int64))
    for i, m in enumerate(per_file):
        with pq.ParquetWriter(raw / f"part-{i:05d}.parquet", schema, compression="zstd") as w:
            left = int(m)
            while left:
                n = min(chunk, left)
                left -= n
                idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
                ts = start_us + rng.integers(0, DAYS * DAY_US, n)
                amt = np.round(rng.lognormal(3.5, 0.9, n), 2) + 0.01
                amt[rng.random(n) < RETURN_SHARE] *= -1
                w.write_table(
                    pa.table(
                        {
                            "customer_id": ids_of[np.minimum(idx, n_customers - 1)],
                            "timestamp": pa.array(ts, pa.timestamp("us")),
                            "amount": amt,
                        },
                        schema=schema,
                    )
                )
    last_day = str(START + np.timedelta64(DAYS - 1, "D"))
    meta = {
        **want,
        "cutoff_day": last_day,
        "generate_s": round(time.perf_counter() - t0, 2),
        "bytes": sum(f.stat().st_size for f in raw.glob("*.parquet")),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


# --------------------------------------------------------------------------- bigseg
def bucket_rfm(store, k: int, cutoff_us: int):
    """One bucket's RFM features (a DataFrame, kept on the worker)."""
    from bigseg.features.rfm import rfm_features

    t = store.read_bucket("transactions", k, COLS)
    return rfm_features(
        t.column("customer_id").to_numpy(zero_copy_only=False),
        t.column("timestamp").cast("int64").to_numpy(),
        t.column("amount").to_numpy(),
        cutoff_us,
    )


def bucket_full(store, k: int, cutoff_us: int):
    """Every feature family bigseg computes for a transactions-only input."""
    from bigseg.features import bucket_frames

    return bucket_frames(store, k, {"score": cutoff_us}, (), 90, False, None)["frames"]["score"]


def summary(df) -> dict:
    """Row count and column sums of a pandas result (checked across tools)."""
    return {"rows": int(len(df)), **{c: float(df[c].astype("float64").sum()) for c in FEATURES}}


def run_ingest(raw: Path, out: Path, client, buckets):
    from bigseg.config import parse_run_config
    from bigseg.store import ingest

    cfg = parse_run_config(
        {
            "data": {"transactions": {"path": str(raw)}},
            "output": str(out),
            "store": {"buckets": buckets},
        },
        source="bench",
        base_dir=".",
    )
    return ingest(cfg, client)


def run_store_features(client, store, cutoff_us: int, fn=bucket_rfm):
    """One task per bucket; results stay on the workers; returns (futures, row count)."""
    futs = [client.submit(fn, store, k, cutoff_us, pure=False) for k in range(store.n_buckets)]
    lens = [client.submit(len, f, pure=False) for f in futs]
    return futs, sum(client.gather(lens))


def store_summary(client, futs) -> dict:
    parts = client.gather([client.submit(summary, f, pure=False) for f in futs])
    return {k: sum(p[k] for p in parts) for k in parts[0]}


# --------------------------------------------------------------------------- peers
def ts_literal(cutoff_us: int) -> str:
    return str(np.datetime64(cutoff_us, "us")).replace("T", " ")


def duckdb_query(glob: str | list[str], cutoff_us: int) -> str:
    """The RFM query over a glob, or over a list of files."""
    buy = "FILTER (WHERE amount > 0)"
    src = f"'{glob}'" if isinstance(glob, str) else "[" + ", ".join(f"'{f}'" for f in glob) + "]"
    return f"""
        SELECT customer_id,
          ({cutoff_us} - epoch_us(max(timestamp) {buy})) / {DAY_US}.0 AS recency_days,
          count(*) {buy} AS frequency,
          sum(amount) AS monetary_total,
          avg(amount) {buy} AS monetary_mean,
          max(amount) {buy} AS monetary_max,
          ({cutoff_us} - epoch_us(min(timestamp) {buy})) / {DAY_US}.0 AS tenure_days
        FROM read_parquet({src})
        WHERE timestamp <= TIMESTAMP '{ts_literal(cutoff_us)}'
        GROUP BY customer_id
        HAVING count(*) {buy} > 0"""


def run_duckdb(con, glob: str | list[str], cutoff_us: int) -> pa.Table:
    r = con.sql(duckdb_query(glob, cutoff_us)).arrow()
    return r.read_all() if isinstance(r, pa.RecordBatchReader) else r


def run_polars(glob: str, cutoff_us: int):
    import polars as pl

    cut = np.datetime64(cutoff_us, "us").astype(dt.datetime)
    buy = pl.col("amount") > 0
    ts_us = pl.col("timestamp").dt.epoch("us")
    return (
        pl.scan_parquet(glob)
        .filter(pl.col("timestamp") <= cut)
        .group_by("customer_id")
        .agg(
            ((cutoff_us - ts_us.filter(buy).max()) / DAY_US).alias("recency_days"),
            buy.sum().alias("frequency"),
            pl.col("amount").sum().alias("monetary_total"),
            pl.col("amount").filter(buy).mean().alias("monetary_mean"),
            pl.col("amount").filter(buy).max().alias("monetary_max"),
            ((cutoff_us - ts_us.filter(buy).min()) / DAY_US).alias("tenure_days"),
        )
        .filter(pl.col("frequency") > 0)
        .collect()
    )


def _pandas_prepare(df, cutoff_us: int):
    df = df[df["timestamp"].astype("int64") <= cutoff_us]
    buy = df["amount"] > 0
    return df.assign(
        ts_buy=df["timestamp"].astype("int64").where(buy), amt_buy=df["amount"].where(buy)
    )


def _pandas_finish(g, cutoff_us: int):
    g = g[g["frequency"] > 0]
    return g.assign(
        recency_days=(cutoff_us - g["last_us"]) / DAY_US,
        tenure_days=(cutoff_us - g["first_us"]) / DAY_US,
    ).drop(columns=["last_us", "first_us"])


def run_pandas(raw: Path, cutoff_us: int):
    import pandas as pd

    df = _pandas_prepare(pd.read_parquet(raw, columns=COLS), cutoff_us)
    g = df.groupby("customer_id", sort=False).agg(
        last_us=("ts_buy", "max"),
        first_us=("ts_buy", "min"),
        frequency=("amt_buy", "count"),
        monetary_total=("amount", "sum"),
        monetary_mean=("amt_buy", "mean"),
        monetary_max=("amt_buy", "max"),
    )
    return _pandas_finish(g, cutoff_us).reset_index()


def run_dask_df(client, raw: Path, cutoff_us: int):
    import dask.dataframe as dd
    from distributed import wait

    ddf = dd.read_parquet(str(raw), columns=COLS)
    ddf = ddf.map_partitions(_pandas_prepare, cutoff_us)
    g = ddf.groupby("customer_id").agg(
        {"ts_buy": ["max", "min"], "amt_buy": ["count", "mean", "max"], "amount": "sum"},
        split_out=8,
    )
    g.columns = [
        "last_us",
        "first_us",
        "frequency",
        "monetary_mean",
        "monetary_max",
        "monetary_total",
    ]
    g = g.map_partitions(_pandas_finish, cutoff_us).persist()
    wait(g)
    return g, int(g.map_partitions(len).compute().sum())


# --------------------------------------------------------------------------- main
_LAST_FOREIGN = [0.0]


def timed(fn, *a):
    """Wall seconds of ``fn(*a)``; the CPU seconds other processes used meanwhile go to
    ``_LAST_FOREIGN`` (a run with much of it was disturbed by something else)."""
    b0, m0 = cpu_seconds()
    t0 = time.perf_counter()
    out = fn(*a)
    s = time.perf_counter() - t0
    b1, m1 = cpu_seconds()
    _LAST_FOREIGN[0] = max(0.0, (b1 - b0) - (m1 - m0))
    return s, out


def check(summaries: dict[str, dict]) -> None:
    ref_name, ref = next(iter(summaries.items()))
    for name, s in summaries.items():
        assert s["rows"] == ref["rows"], (
            f"row count: {name} {s['rows']} != {ref_name} {ref['rows']}"
        )
        for c in FEATURES:
            a, b = s[c], ref[c]
            assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), f"sum({c}): {name} {a} != {ref_name} {b}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--transactions", type=int, default=20_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--data", default="/tmp/bigseg-bench-features")
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ingest-repeats", type=int, default=3)
    ap.add_argument(
        "--tools",
        default="bigseg,bigseg_full,dask,duckdb,duckdb_store,polars,pandas",
        help="comma-separated subset",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    tools = set(args.tools.split(","))

    import duckdb

    from bigseg.engine import connect
    from bigseg.features import to_us

    data = Path(args.data)
    meta = generate(data, args.customers, args.transactions, args.files)
    raw, glob = data / "raw", str(data / "raw" / "*.parquet")
    cutoff_us = to_us(meta["cutoff_day"])
    print(f"data: {meta}", flush=True)
    runs: dict[str, list[float]] = {}
    peaks: dict[str, list[float]] = {}
    foreign: dict[str, list[float]] = {}
    sums: dict[str, dict] = {}
    info: dict = {}

    def record(name, secs, peak):
        runs.setdefault(name, []).append(round(secs, 3))
        peaks.setdefault(name, []).append(round(peak / 2**30, 2))
        foreign.setdefault(name, []).append(round(_LAST_FOREIGN[0], 2))
        print(
            f"  {name}: {secs:.3f} s (peak tree RSS {peak / 2**30:.2f} GiB, "
            f"other processes' CPU meanwhile {_LAST_FOREIGN[0]:.2f} s)",
            flush=True,
        )

    with PeakSampler() as mem, bench_flag():
        with connect(n_workers=2, reuse_current=False) as client:
            info["workers"] = len(client.scheduler_info()["workers"])
            store = None
            for i in range(args.ingest_repeats):
                shutil.rmtree(data / f"out{i % 2}", ignore_errors=True)
                mem.reset()
                s, store = timed(run_ingest, raw, data / f"out{i % 2}", client, args.buckets)
                record("bigseg_ingest", s, mem.peak)
            info["store_rows"] = store.manifest["tables"]["transactions"]["rows"]
            info["n_buckets"] = store.n_buckets
            assert info["store_rows"] == args.transactions, info
            # the store's files as its commit lists them (every bucket of the one ingest)
            store_files = sorted(str(f) for fs in store.parts["transactions"].values() for f in fs)
            for name, fn in (("bigseg", bucket_rfm), ("bigseg_full", bucket_full)):
                if name not in tools:
                    continue
                for _ in range(args.repeats):
                    mem.reset()
                    s, (futs, n) = timed(run_store_features, client, store, cutoff_us, fn)
                    record(name, s, mem.peak)
                    if name == "bigseg":
                        sums[name] = store_summary(client, futs)
                        assert sums[name]["rows"] == n
                    else:
                        info["bigseg_full_columns"] = client.submit(
                            lambda f: list(f.columns), futs[0]
                        ).result()
                    del futs
            if "dask" in tools:
                for _ in range(args.repeats):
                    mem.reset()
                    s, (g, n) = timed(run_dask_df, client, raw, cutoff_us)
                    record("dask", s, mem.peak)
                    sums["dask"] = summary(g.compute())
                    assert sums["dask"]["rows"] == n
                    del g
        con = duckdb.connect()
        con.execute("SET threads = 2")
        for name, fn, a in (
            ("duckdb", run_duckdb, (con, glob, cutoff_us)),
            ("duckdb_store", run_duckdb, (con, store_files, cutoff_us)),
            ("polars", run_polars, (glob, cutoff_us)),
            ("pandas", run_pandas, (raw, cutoff_us)),
        ):
            if name not in tools:
                continue
            for _ in range(args.repeats):
                mem.reset()
                s, res = timed(fn, *a)
                record(name, s, mem.peak)
                df = res.to_pandas() if hasattr(res, "to_pandas") else res
                sums[name] = summary(df)
                del res, df
    check(sums)
    print(f"checked equal across tools: {next(iter(sums.values()))}", flush=True)

    median = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    base = median.get("duckdb")
    labels = {
        "bigseg_ingest": "bigseg ingest (raw -> store, once per new data)",
        "bigseg": "bigseg RFM features from the store",
        "bigseg_full": "bigseg full features from the store (info)",
        "dask": "dask.dataframe groupby.agg(split_out=8), persisted",
        "duckdb": "DuckDB on the raw files, .arrow()",
        "duckdb_store": "DuckDB on bigseg's store files (info)",
        "polars": "Polars scan_parquet + group_by + collect",
        "pandas": "pandas read_parquet + groupby.agg",
    }
    cmd = "python benchmarks/bench_features.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    result = {
        "benchmark": "RFM features: bigseg vs peers",
        "customers": args.customers,
        "transactions": args.transactions,
        "files": args.files,
        "data": meta,
        "cutoff_day": meta["cutoff_day"],
        "buckets": args.buckets,
        **info,
        "threads": {
            "dask_workers": "2 processes x 1 thread",
            "duckdb": 2,
            "polars": int(os.environ["POLARS_MAX_THREADS"]),
            "pandas": "1 (pyarrow's reader uses its own pool)",
        },
        "median_s": median,
        "runs_s": runs,
        "peak_tree_rss_gib": peaks,
        "other_processes_cpu_s": foreign,
        "ratio_to_duckdb": {k: round(v / base, 2) for k, v in median.items()} if base else None,
        "check": sums,
        "hardware": hardware(),
        "libraries": versions(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": cmd.strip(),
    }
    path = Path(
        args.out or f"benchmarks/results/features-{args.customers}-{args.transactions}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}\n")
    print("| tool | median s | ratio to DuckDB | runs (s) | peak tree RSS (GiB) |")
    print("|---|---|---|---|---|")
    for k, v in median.items():
        ratio = f"{v / base:.2f}" if base else "-"
        print(
            f"| {labels.get(k, k)} | {v:.2f} | {ratio} | "
            f"{', '.join(f'{x:.2f}' for x in runs[k])} | {max(peaks[k]):.2f} |"
        )
    return result


if __name__ == "__main__":
    main()
