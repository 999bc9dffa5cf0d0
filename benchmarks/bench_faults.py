"""Fault injection at scale: ``bigseg score`` with a worker killed, and the whole job
killed, at random moments.

Usage::

    .venv/bin/python benchmarks/bench_score.py --customers 1000000 --dir /tmp/bs1m
    .venv/bin/python benchmarks/bench_faults.py --dir /tmp/bs1m --trials 4

Reuses the data, store and models a ``bench_score.py --dir`` run left (the score stage
is what is disturbed). On a local cluster of 2 worker processes under nannies:

* **undisturbed**: one ``score`` run; its wall time ``T`` and the checksum of the
  published scores (every row, sorted by customer id);
* **worker kill** (``--trials``): ``score`` again, and at a uniformly random moment in
  ``[0.05 T, 0.9 T]`` one of the two worker processes (chosen at random) is SIGKILLed;
  its nanny restarts it, Dask recomputes what it held. Recorded: completed or not, wall
  time, overhead against ``T``, checksum equal to the undisturbed one;
* **job kill** (``--trials``): ``bigseg score`` as a subprocess (its own cluster),
  SIGKILLed with its whole process group at a random moment in ``[0.2 T', 0.9 T']``
  (``T'`` the undisturbed CLI run), then run again: the published scores before the
  re-run are checked byte-identical to the previous ones, and the re-run's time, the
  buckets it resumed and its checksum are recorded.

Writes ``benchmarks/results/faults-<customers>.json``. Every PID killed belongs to a
process this script started.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd


def _scores(out: Path) -> dict[str, dict[str, Path]]:
    """``{dataset: {member: file}}`` of every ``scores/as_of=<date>`` dataset of the
    latest commit (the published scores; a run's unpublished files are not read)."""
    from bigseg.io.output import Output, scores_dataset

    o = Output.open(out)
    return {
        scores_dataset(day): {m: Path(p) for m, p in o.members(scores_dataset(day)).items()}
        for day in o.scores_dates()
    }


def scores_checksum(out: Path) -> tuple[str, int]:
    ((_, members),) = _scores(out).items()  # one as_of date
    parts = [members[m] for m in sorted(members) if fnmatch(m, "part-*.parquet")]
    df = (
        pd.concat([pd.read_parquet(f) for f in parts], ignore_index=True)
        .sort_values("customer_id")
        .reset_index(drop=True)
    )
    h = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return h.hexdigest(), len(df)


def files_digest(out: Path) -> str:
    """Names and bytes of the published scores' files (a name is ``scores/as_of=D/<member>``,
    whichever run's folder holds it)."""
    h = hashlib.sha256()
    for name, members in sorted(_scores(out).items()):
        for m in sorted(members):
            h.update(f"{name}/{m}".encode())
            h.update(members[m].read_bytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="a bench_score.py --dir directory")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from bigseg.backend import resolve
    from bigseg.benchmark.env import hardware, versions
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.io.output import Output
    from bigseg.pipeline import run_stages

    d = Path(args.dir)
    cfg = load_run_config(d / "out.yaml")
    out = Path(cfg.output_dir)
    rng = np.random.default_rng(args.seed)
    cpu = resolve("cpu")
    res: dict = {"benchmark": "bigseg score under faults", "dir": str(d)}

    with connect(n_workers=2, reuse_current=False) as c:
        t0 = time.perf_counter()
        m = run_stages(cfg, c, cpu, stages=("score",))
        base_t = time.perf_counter() - t0
        base_sum, rows = scores_checksum(out)
        res.update(customers=rows, undisturbed_s=base_t, as_of=str(cfg.as_of or m["as_of"]))
        print(f"undisturbed: {base_t:.1f} s, {rows} rows", flush=True)
        trials = []
        for _ in range(args.trials):
            try:  # a nanny restarts its killed worker; record it when one did not
                c.wait_for_workers(2, timeout=60)
            except Exception:  # noqa: BLE001 - distributed's timeout error
                pass
            workers = len(c.scheduler_info()["workers"])
            at = float(rng.uniform(0.05, 0.9) * base_t)
            pids = c.run(os.getpid)
            victim = sorted(pids)[int(rng.integers(len(pids)))]
            timer = threading.Timer(at, os.kill, (pids[victim], signal.SIGKILL))
            t0 = time.perf_counter()
            timer.start()
            try:
                run_stages(cfg, c, cpu, stages=("score",))
                ok, err = True, None
            except Exception as e:  # noqa: BLE001 - recorded, the benchmark goes on
                ok, err = False, f"{type(e).__name__}: {e}"
            took = time.perf_counter() - t0
            timer.cancel()
            same = ok and scores_checksum(out)[0] == base_sum
            trials.append(
                {
                    "workers_at_start": workers,
                    "kill_at_s": at,
                    "completed": ok,
                    "error": err,
                    "wall_s": took,
                    "overhead_s": took - base_t,
                    "checksum_equal": same,
                }
            )
            print(trials[-1], flush=True)
        res["worker_kill"] = trials

    cli = [
        sys.executable,
        "-m",
        "bigseg.cli",
        "score",
        str(d / "out.yaml"),
        "--quiet",
        "--as-of",
        str(res["as_of"]),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    subprocess.run(cli, check=True, env=env, capture_output=True)
    cli_t = time.perf_counter() - t0
    res["undisturbed_cli_s"] = cli_t
    jobs = []
    for _ in range(args.trials):
        before = files_digest(out)
        at = float(rng.uniform(0.2, 0.9) * cli_t)
        p = subprocess.Popen(
            cli,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            p.wait(timeout=at)
            finished_first = True
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            finished_first = False
        intact = files_digest(out) == before
        t0 = time.perf_counter()
        rerun = subprocess.run(cli, env=env, capture_output=True)
        took = time.perf_counter() - t0
        metrics = Output.open(out).read_json("metrics")
        jobs.append(
            {
                "kill_at_s": at,
                "finished_before_kill": finished_first,
                "previous_output_intact": intact,
                "rerun_exit": rerun.returncode,
                "rerun_s": took,
                "rerun_overhead_s": took - cli_t,
                "resumed": (metrics.get("score_resume") or {}).get("resumed"),
                "buckets": (metrics.get("score_resume") or {}).get("buckets"),
                "checksum_equal": scores_checksum(out)[0] == base_sum,
            }
        )
        print(jobs[-1], flush=True)
    res["job_kill"] = jobs
    res.update(
        hardware=hardware(),
        libraries=versions(),
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command="python benchmarks/bench_faults.py " + " ".join(sys.argv[1:]),
    )
    path = Path(f"benchmarks/results/faults-{res['customers']}.json")
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
