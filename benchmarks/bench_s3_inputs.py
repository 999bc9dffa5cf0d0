"""Ingest from object storage against local disk: the same generated inputs read from
moto's S3 server (a subprocess on 127.0.0.1) and from local files, into a local output.

usage: python benchmarks/bench_s3_inputs.py --customers 200000 [--repeats 2] [--data DIR]

Only the ingest stage reads inputs, so it is the stage measured here; writing outputs to
object storage waits for the commit wiring (issue 17). Requests are counted from the
server's own request log, by kind (LIST, GET, HEAD, PUT, DELETE, POST), for the whole
ingest. The goals: each input table listed at most once per run, and no request per
customer or per row. Runs alternate local and S3, fresh output each time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

# werkzeug colours some status lines (206, 304, ...) with ANSI escapes inside the quotes
REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP')


def count_requests(log_text: str) -> Counter:
    out: Counter = Counter()
    for method, target in REQUEST.findall(log_text):
        if target.startswith("/moto-api"):
            continue
        kind = "LIST" if method == "GET" and "list-type=" in target else method
        out[kind] += 1
    return out


def listed_prefixes(log_text: str) -> Counter:
    return Counter(
        re.search(r"prefix=([^&\s]*)", t).group(1)
        for m, t in REQUEST.findall(log_text)
        if m == "GET" and "list-type=" in t and "prefix=" in t
    )


def upload(raw: Path, bucket_url: str) -> None:
    from bigseg.io.storage import storage_for

    st = storage_for(bucket_url)
    for p in sorted(raw.rglob("*")):
        if p.is_file():
            st.write_bytes(f"{bucket_url}/raw/{p.relative_to(raw)}", p.read_bytes())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=None, help="keep (and reuse) the generated data here")
    args = ap.parse_args()

    import yaml

    from bigseg.backend import resolve
    from bigseg.benchmark.data import job_config, prepare_data
    from bigseg.benchmark.env import hardware, versions
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.pipeline import run_stages
    from bigseg.testing import s3server

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    data = Path(args.data) if args.data else work / "data"
    summary = prepare_data(args.customers, data)
    server = s3server.start(work)
    os.environ.update(s3server.environment(server.endpoint))  # workers inherit it
    bucket = s3server.create_bucket(server.endpoint)
    upload(data / "raw", bucket.url())
    as_of = summary["end_date"]
    res: dict = {"benchmark": "ingest: S3 inputs vs local", "customers": args.customers}
    runs = []
    try:
        with connect(n_workers=2, reuse_current=False) as client:
            for i in range(args.repeats):
                for where in ("local", "s3"):
                    out = work / f"out-{where}-{i}"
                    cfg = job_config(data, out, as_of)
                    if where == "s3":
                        doc = cfg.model_dump(mode="json")
                        for t, tc in doc["data"].items():
                            if tc:
                                tc["path"] = bucket.url(f"raw/{t}")
                        path = out.parent / f"{out.name}-s3.yaml"
                        path.write_text(
                            yaml.safe_dump({k: v for k, v in doc.items() if k != "base_dir"})
                        )
                        cfg = load_run_config(path)
                    mark = len(server.log(tail=10**9))
                    t0 = time.perf_counter()
                    m = run_stages(cfg, client, resolve("cpu"), stages=("ingest",))
                    secs = time.perf_counter() - t0
                    log = server.log(tail=10**9)[mark:]
                    runs.append(
                        {
                            "where": where,
                            "seconds": round(secs, 3),
                            "ingest_s": m["timings"]["ingest"],
                            "rows": m["store"],
                            "requests": dict(count_requests(log)),
                            "listed_prefixes": dict(listed_prefixes(log)),
                        }
                    )
                    print(runs[-1], flush=True)
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        s3server.stop(server)
    med = {
        w: statistics.median(r["ingest_s"] for r in runs if r["where"] == w)
        for w in ("local", "s3")
    }
    res.update(
        runs=runs,
        median_ingest_s=med,
        ratio_s3_to_local=round(med["s3"] / med["local"], 3),
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=f"python benchmarks/bench_s3_inputs.py --customers {args.customers} "
        f"--repeats {args.repeats}",
    )
    path = Path(f"benchmarks/results/s3-inputs-{args.customers}.json")
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("median_ingest_s", "ratio_s3_to_local")}))
    print(f"wrote {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
