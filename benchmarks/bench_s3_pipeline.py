"""The whole pipeline on object storage against local disk: the same generated inputs, and
the output, on local disk (a) and on moto's S3 server (b; a subprocess on 127.0.0.1),
stage by stage on one local Dask cluster of 2 workers.

usage: python benchmarks/bench_s3_pipeline.py --customers 200000 [--repeats 1] [--data DIR]

The raw files are uploaded to the server once, outside the timing. Each repeat runs, with
fresh outputs: the stages one call each (``run_stages(cfg, client, backend,
stages=(stage,))``, timed per call) on local disk, then on S3; then the whole pipeline in
one call (``run_stages(cfg, client, backend)``, its ``metrics["timings"]`` kept) on local
disk, then on S3. For S3, requests are counted per stage by kind (LIST, GET, HEAD, PUT,
POST, DELETE) from the growth of the server's own request log over the call; the ingest
stage's LIST prefixes are recorded (the goal: each input table listed at most once), and
per stage the most frequent requests with their keys folded (``top_targets``: where
requests repeat per file or per task). After
each S3 run, outside the timing, its committed scores are read back
(``bigseg.read_scores``) and compared with the local run's, bit for bit.

Writes ``benchmarks/results/s3-pipeline-<customers>.json`` and prints a markdown table
for BENCHMARKS.md ("Object storage"). Medians over the repeats; ``other_cpu_s`` is the CPU
other processes took meanwhile (a shared machine says so).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_s3_inputs import count_requests, listed_prefixes  # noqa: E402

STAGES = ("ingest", "features", "segment", "train", "score", "report")
KINDS = ("LIST", "GET", "HEAD", "PUT", "POST", "DELETE")
WHERE = ("local", "s3")


class RequestLog:
    """The growth of moto's request log (a file the server appends to) between marks."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = self._settle()

    def _settle(self, quiet_s: float = 0.3, limit_s: float = 5.0) -> int:
        """The log's size once it stopped growing for ``quiet_s`` (a request's line is
        written just after its response goes out)."""
        size, deadline = self.path.stat().st_size, time.monotonic() + limit_s
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = self.path.stat().st_size
            if now == size:
                break
            size = now
        return size

    def mark(self) -> None:
        self.offset = self._settle()

    def since_mark(self) -> str:
        """The log text written since the last mark (the mark moves to the end)."""
        end = self._settle()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read(end - self.offset).decode(errors="replace")
        self.offset = end
        return text


def upload(raw: Path, bucket_url: str, endpoint: str) -> int:
    """The raw input tables (not the benchmark's marker) under ``bucket_url/raw/``."""
    from bigseg.io.storage import storage_for

    st = storage_for(bucket_url, {"endpoint_url": endpoint})
    n = 0
    for p in sorted(raw.rglob("*")):
        if p.is_file() and p.parent != raw:
            st.write_bytes(f"{bucket_url}/raw/{p.relative_to(raw)}", p.read_bytes())
            n += 1
    return n


def s3_config(local_cfg, out_dir: Path, bucket, prefix: str):
    """``local_cfg`` with every input table and the output on the bucket."""
    import yaml

    from bigseg.config import load_run_config

    doc = local_cfg.model_dump(mode="json")
    doc.pop("base_dir", None)
    for t, tc in doc["data"].items():
        if tc:
            tc["path"] = bucket.url(f"raw/{t}")
    doc["output"] = bucket.url(prefix)
    doc["storage_options"] = {"endpoint_url": bucket.endpoint}
    path = out_dir / f"{prefix}-s3.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_run_config(path)


def scores_digest(output: str, opts: dict | None) -> tuple[int, str]:
    """(rows, digest) of the committed scores, order- and ``as_of``-independent."""
    import pandas as pd

    import bigseg

    t = bigseg.read_scores(output, storage_options=opts)
    df = t.to_pandas().drop(columns=["as_of"]).sort_values("customer_id")
    df = df.reset_index(drop=True)
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return len(df), h.hexdigest()


#: a request line with its status (werkzeug colours some: ANSI escapes inside the quotes)
REQUEST_STATUS = re.compile(
    r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/[0-9.]+(?:\x1b\[0m)?" (\d{3})'
)
#: what varies between runs and parts of a key, replaced so that repeats add up
NORMALIZE = (
    (re.compile(r"^/bigseg-[0-9a-f]+"), ""),
    (re.compile(r"runs/[0-9a-f]{16,}"), "runs/<run>"),
    (re.compile(r"[0-9a-f]{16,}"), "<hash>"),
    (re.compile(r"v\d{8}T\d+Z"), "<version>"),
    (re.compile(r"\d{8}T\d{6}"), "<time>"),
    (re.compile(r"\d{5}"), "<n>"),
    (re.compile(r"&continuation-token=[^&]*"), ""),
)


def top_targets(log_text: str, n: int = 15) -> list[list]:
    """The ``n`` most frequent requests as ``[count, kind, status, key]``, keys with run
    ids, hashes, versions and part numbers folded (``bucket=<n>``): where the requests
    go, to find the ones that repeat per file or per task."""
    c: Counter = Counter()
    for method, target, status in REQUEST_STATUS.findall(log_text):
        if target.startswith("/moto-api"):
            continue
        kind = "LIST" if method == "GET" and "list-type=" in target else method
        key = unquote(target)
        for pat, rep in NORMALIZE:
            key = pat.sub(rep, key)
        c[(kind, status, key)] += 1
    return [[v, *k] for k, v in c.most_common(n)]


def input_lists(prefixes: dict, tables) -> dict:
    """LIST requests under each input table's prefix (``raw/<table>/``)."""
    return {
        t: sum(c for p, c in prefixes.items() if p.startswith(f"raw/{t}/") or p == f"raw/{t}")
        for t in tables
    }


def per_kind(c: Counter) -> dict:
    return {k: c.get(k, 0) for k in KINDS} | {
        k: v for k, v in c.items() if k not in KINDS
    }  # an unexpected kind stays visible


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--data", default=None, help="keep (and reuse) the generated data here")
    args = ap.parse_args()

    from bigseg.backend import resolve
    from bigseg.benchmark.data import job_config, prepare_data
    from bigseg.benchmark.env import OtherCPU, hardware, versions
    from bigseg.engine import connect
    from bigseg.io.storage import storage_for
    from bigseg.pipeline import run_stages
    from bigseg.testing import s3server

    n = args.customers
    work = Path(tempfile.mkdtemp(prefix="bench-s3-pipeline-"))
    data = Path(args.data) if args.data else work / "data"
    server = s3server.start(work)
    for name in s3server.CLEARED:  # never a real account
        os.environ.pop(name, None)
    os.environ.update(s3server.environment(server.endpoint))  # the workers inherit it
    bucket = s3server.create_bucket(server.endpoint)
    opts = {"endpoint_url": server.endpoint}
    backend = resolve("cpu")
    runs: list[dict] = []
    try:
        with connect(n_workers=2, reuse_current=False) as client:
            summary = prepare_data(n, data, seed=0, client=client)
            as_of = str(summary["end_date"])
            t0 = time.perf_counter()
            files = upload(data / "raw", bucket.url(), server.endpoint)
            upload_s = round(time.perf_counter() - t0, 3)
            print(f"uploaded {files} files in {upload_s} s", flush=True)
            reqlog = RequestLog(server.log_path)

            def one(where: str, mode: str, i: int) -> dict:
                name = f"out-{mode}-{where}-{i}"
                local_cfg = job_config(data, work / name, as_of)
                cfg = local_cfg if where == "local" else s3_config(local_cfg, work, bucket, name)
                calls = STAGES if mode == "staged" else ("all",)
                run: dict = {"where": where, "mode": mode, "repeat": i, "stages": {}}
                for stage in calls:
                    reqlog.mark()
                    with OtherCPU() as other:
                        t0 = time.perf_counter()
                        if stage == "all":
                            m = run_stages(cfg, client, backend)
                        else:
                            m = run_stages(cfg, client, backend, stages=(stage,))
                        secs = time.perf_counter() - t0
                    log = reqlog.since_mark()
                    rec = {
                        "seconds": round(secs, 3),
                        "timings": m.get("timings", {}),
                        "other_cpu_s": other.seconds,
                        "requests": per_kind(count_requests(log)) if where == "s3" else {},
                    }
                    if where == "s3":
                        rec["top_targets"] = top_targets(log)
                    if stage in ("ingest", "all") and where == "s3":
                        lists = {unquote(p): c for p, c in listed_prefixes(log).items()}
                        rec["listed_prefixes"] = lists
                        rec["input_tables_listed"] = input_lists(lists, cfg.data.tables())
                    run["stages"][stage] = rec
                    brief = {k: rec[k] for k in ("seconds", "other_cpu_s", "requests")}
                    print(where, mode, i, stage, brief, flush=True)
                output = cfg.output_url
                run["scores_rows"], run["scores_sha256"] = scores_digest(
                    output, opts if where == "s3" else None
                )
                if where == "s3":
                    storage_for(output, opts).delete_tree(output)
                else:
                    shutil.rmtree(output, ignore_errors=True)
                return run

            for i in range(args.repeats):
                for mode in ("staged", "all"):
                    for where in WHERE:
                        runs.append(one(where, mode, i))
    except BaseException:
        print(f"failed: the server's log and the outputs are kept in {work}", file=sys.stderr)
        raise
    finally:
        s3server.stop(server)

    res = summarize(runs, n)
    res.update(
        benchmark="pipeline: inputs and output on S3 (moto) vs local disk, stage by stage",
        customers=n,
        input_files=files,
        upload_s=upload_s,
        data_generated_s=summary.get("generate_s"),
        runs=runs,
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=f"python benchmarks/bench_s3_pipeline.py --customers {n} --repeats {args.repeats}",
    )
    path = Path(f"benchmarks/results/s3-pipeline-{n}.json")
    path.write_text(json.dumps(res, indent=2) + "\n")
    print()
    print(markdown(res))
    print(f"\nwrote {path}")
    shutil.rmtree(work, ignore_errors=True)  # a --data directory lives elsewhere


def summarize(runs: list[dict], n: int) -> dict:
    """Medians over the repeats per stage, S3/local ratios and request counts."""

    def med(where, mode, stage, key="seconds"):
        vals = [r["stages"][stage][key] for r in runs if (r["where"], r["mode"]) == (where, mode)]
        return statistics.median(vals)

    def reqs(mode, stage) -> dict:
        counts = [
            r["stages"][stage]["requests"] for r in runs if (r["where"], r["mode"]) == ("s3", mode)
        ]
        keys = sorted(
            {k for c in counts for k in c},
            key=lambda k: (k not in KINDS, KINDS.index(k) if k in KINDS else 0, k),
        )
        return {k: statistics.median(c.get(k, 0) for c in counts) for k in keys}

    def row(mode, stage) -> dict:
        loc, s3 = med("local", mode, stage), med("s3", mode, stage)
        r = reqs(mode, stage)
        total = sum(r.values())
        return {
            "local_s": round(loc, 3),
            "s3_s": round(s3, 3),
            "ratio_s3_to_local": round(s3 / loc, 3) if loc else None,
            "requests": r,
            "requests_total": total,
            "requests_per_1k_customers": round(total / (n / 1000), 3),
        }

    stages = {s: row("staged", s) for s in STAGES}
    sum_local = sum(v["local_s"] for v in stages.values())
    sum_s3 = sum(v["s3_s"] for v in stages.values())
    sum_req: Counter = Counter()
    for v in stages.values():
        sum_req.update(v["requests"])
    whole = row("all", "all")
    timings = {
        w: {
            k: statistics.median(
                r["stages"]["all"]["timings"][k]
                for r in runs
                if (r["where"], r["mode"]) == (w, "all") and k in r["stages"]["all"]["timings"]
            )
            for k in next(
                r["stages"]["all"]["timings"] for r in runs if (r["where"], r["mode"]) == (w, "all")
            )
        }
        for w in WHERE
    }
    ingest_lists = [
        r["stages"][st]["input_tables_listed"]
        for r in runs
        if r["where"] == "s3"
        for st in ("ingest", "all")
        if st in r["stages"]
    ]
    digests = {
        mode: {
            w: {r["scores_sha256"] for r in runs if (r["where"], r["mode"]) == (w, mode)}
            for w in WHERE
        }
        for mode in ("staged", "all")
    }
    return {
        "stages": stages,
        "stages_total": {
            "local_s": round(sum_local, 3),
            "s3_s": round(sum_s3, 3),
            "ratio_s3_to_local": round(sum_s3 / sum_local, 3) if sum_local else None,
            "requests": dict(sum_req),
            "requests_total": sum(sum_req.values()),
            "requests_per_1k_customers": round(sum(sum_req.values()) / (n / 1000), 3),
        },
        "whole_pipeline": whole,
        "whole_pipeline_timings": timings,
        "input_tables_listed_per_ingest": ingest_lists,
        "each_input_table_listed_at_most_once": all(
            c <= 1 for d in ingest_lists for c in d.values()
        ),
        "scores_identical_s3_and_local": all(
            len(d["local"] | d["s3"]) == 1 for d in digests.values()
        ),
    }


def markdown(res: dict) -> str:
    """The table for BENCHMARKS.md."""
    head = ["stage", "local s", "S3 s", "S3/local", *KINDS, "requests / 1k customers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(name, v):
        cells = [
            name,
            f"{v['local_s']:.2f}",
            f"{v['s3_s']:.2f}",
            f"{v['ratio_s3_to_local']:.2f}x" if v["ratio_s3_to_local"] else "-",
            *(f"{v['requests'].get(k, 0):g}" for k in KINDS),
            f"{v['requests_per_1k_customers']:g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")

    for s, v in res["stages"].items():
        line(s, v)
    line("**stages, sum**", res["stages_total"])
    line("**whole run (one call)**", res["whole_pipeline"])
    extra = sorted(
        {k for v in [*res["stages"].values(), res["whole_pipeline"]] for k in v["requests"]}
        - set(KINDS)
    )
    if extra:
        lines.append(f"\nother request kinds seen: {', '.join(extra)}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
