"""A whole `bigseg run` with the peak memory of its process tree, per stage.

usage: python benchmarks/bench_run_rss.py JOB.yaml [--out RESULT.json]

Runs ``bigseg run JOB.yaml -v`` (a local cluster unless the job says otherwise), sums the
resident memory of the CLI process and every descendant (scheduler, nannies, workers)
once a second, and splits the samples at the ``stage X: Ns`` log lines: each stage's
seconds and peak. This is how BENCHMARKS.md's 10M scale check is measured.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time

import psutil

STAGE = re.compile(r"stage (\w+): ([\d.]+)s")


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a worker that just ended
            pass
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("job")
    ap.add_argument("--out", default=None, help="result JSON (default: print only)")
    args = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "bigseg.cli", "run", args.job, "-v", "--quiet"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    ends: list[tuple[str, float, float]] = []  # stage, its seconds, when it ended

    def read_log() -> None:
        for line in proc.stderr:
            sys.stderr.write(line)
            m = STAGE.search(line)
            if m:
                ends.append((m.group(1), float(m.group(2)), time.time() - t0))

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    samples = []
    while proc.poll() is None:
        samples.append((time.time() - t0, tree_rss(proc.pid)))
        time.sleep(1.0)
    reader.join(5)
    stages, start = {}, 0.0
    for name, seconds, end in ends:
        peak = max((r for t, r in samples if start <= t <= end + 1), default=0)
        stages[name] = {"seconds": seconds, "peak_rss_gib": round(peak / 2**30, 3)}
        start = end
    res = {
        "command": " ".join(["bigseg", "run", args.job]),
        "rc": proc.returncode,
        "wall_s": round(time.time() - t0, 1),
        "peak_rss_gib": round(max((r for _, r in samples), default=0) / 2**30, 3),
        "rss": "sum over the process tree, sampled every second",
        "stages": stages,
    }
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
