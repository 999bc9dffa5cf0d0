"""Where a run's time goes on the workers: Dask's task stream of one `bigseg run`.

usage: python benchmarks/profile_tasks.py JOB.yaml [--step 0.5] [--out STREAM.json]

Runs every stage of JOB.yaml in-process on bigseg's own local cluster (its worker plugins
included, as `bigseg run` and `bigseg benchmark` have them; ``--cluster`` for another
config) and prints:

- each stage's seconds (as ``metrics.json`` records them);
- task CPU-seconds and counts by task prefix, largest first;
- each worker's busy share per ``--step`` seconds, with the two largest prefixes, and the
  idle worker-seconds over the span: where the workers wait on the client, on a barrier
  or on one another.

``--out`` keeps the stream (``[key, worker, start, stop]`` from the first task's start)
for a closer look. The output directory of JOB.yaml is replaced.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections import defaultdict


def _prefix(key: str) -> str:
    return key.split("-")[0] if not key.startswith("(") else key.split(",")[0].strip("('")


def _stream(client, cfg, backend, stages) -> tuple[dict, list]:
    from distributed import get_task_stream

    from bigseg.pipeline import run_stages

    with get_task_stream(client=client) as ts:
        metrics = run_stages(cfg, client, backend, stages=stages)
    rows = [
        (str(d["key"]), d["worker"], s["start"], s["stop"])
        for d in ts.data
        for s in d["startstops"]
        if s["action"] == "compute"
    ]
    t0 = min((r[2] for r in rows), default=0.0)
    return metrics, [(k, w, a - t0, b - t0) for k, w, a, b in rows]


def _report(rows: list, step: float) -> None:
    cpu: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for k, _, a, b in rows:
        cpu[_prefix(k)][0] += 1
        cpu[_prefix(k)][1] += b - a
    print(f"task CPU {sum(v[1] for v in cpu.values()):.1f} s")
    for name, (n, sec) in sorted(cpu.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"{sec:8.2f} s {n:6d}  {name}")
    workers = sorted({w for _, w, _, _ in rows})
    end = max((b for *_, b in rows), default=0.0)
    slots = int(math.ceil(end / step)) if end else 0
    busy = {w: [0.0] * slots for w in workers}
    names: list[dict] = [defaultdict(float) for _ in range(slots)]
    for k, w, a, b in rows:
        i = int(a / step)
        while a < b and i < slots:  # split the task over the slots it spans
            e = min(b, (i + 1) * step)
            busy[w][i] += e - a
            names[i][_prefix(k)] += e - a
            a, i = e, i + 1
    idle = 0.0
    for i in range(slots):
        use = [busy[w][i] / step for w in workers]
        idle += sum(1 - u for u in use) * step
        top = sorted(names[i].items(), key=lambda kv: -kv[1])[:2]
        print(
            f"{i * step:7.1f} " + " ".join(f"{u:.2f}" for u in use),
            *(f"{n}:{s:.2f}" for n, s in top),
        )
    print(f"idle worker-seconds {idle:.2f} over {end:.2f} s on {len(workers)} workers")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job")
    ap.add_argument("--cluster", default=None, help="a cluster config (default: local)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--step", type=float, default=0.5, help="seconds per utilisation row")
    ap.add_argument("--out", default=None, help="write the task stream here (JSON)")
    args = ap.parse_args(argv)

    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.engine import connect
    from bigseg.pipeline import STAGES

    cfg = load_run_config(args.job)
    shutil.rmtree(str(cfg.output_dir), ignore_errors=True)
    with connect(args.cluster, reuse_current=False) as client:
        metrics, rows = _stream(client, cfg, resolve(args.device), STAGES)
    print("stages:", {k: round(float(v), 2) for k, v in metrics["timings"].items()})
    _report(rows, args.step)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":  # local worker processes re-import this file
    raise SystemExit(main())
