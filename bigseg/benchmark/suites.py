"""The suites: each runs bigseg and its peers on the same generated data in one run and
compares them stage by stage (median over repeats; ratio = bigseg seconds / peer seconds,
below 1 means bigseg is faster; speedup = the inverse)."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bigseg.benchmark.data import job_config
from bigseg.benchmark.env import OtherCPU, PeakRSS
from bigseg.benchmark.peers import STAGE_MAP, run_peer
from bigseg.io.commit import remove_tree

log = logging.getLogger(__name__)

SUITES = ("features", "segment", "predict", "score", "end-to-end", "scaling")
PIPELINE = ("ingest", "features", "segment", "train", "score")
#: suite -> (bigseg stages run, peers run until, stage rows compared)
SUITE_PLAN: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "features": (("ingest", "features"), "features", ("ingest / load", "features")),
    "segment": (("ingest", "features", "segment"), "segment", ("segment",)),
    "predict": (("ingest", "features", "segment", "train"), "train", ("train",)),
    "score": (PIPELINE, "write", ("score + write",)),
    "end-to-end": (PIPELINE, "write", tuple(STAGE_MAP)),
}
#: the acceptance goals of the end-to-end suite: peer -> minimum speedup (peer / bigseg)
GOALS = {"pandas": 3.0, "spark": 10.0, "duckdb": 1 / 1.5}

Say = Callable[[str], None]


def _median_runs(runs: list[dict]) -> dict:
    """Median per stage and of the totals over repeats (every key of the first run)."""
    stages = {
        s: round(statistics.median(r["stages"][s] for r in runs if s in r["stages"]), 3)
        for s in runs[0]["stages"]
    }
    return {"stages": stages, "total": round(statistics.median(r["total"] for r in runs), 3)}


def run_bigseg(
    cfg,
    stages: tuple[str, ...],
    device: str,
    n_workers: int | None,
    score_only: bool = False,
    cluster=None,
) -> dict:
    """One bigseg run of ``stages`` on a fresh cluster (local unless ``cluster`` names a
    cluster config; its start-up or connection timed as ``cluster_start``); with
    ``score_only`` a scheduled ``bigseg score`` (a fresh run of
    the score stage alone) is timed after it as ``scheduled_score``."""
    from bigseg.backend import resolve
    from bigseg.engine import connect
    from bigseg.pipeline import run_stages

    backend = resolve(device)
    overrides = {"n_workers": n_workers} if n_workers else {}
    rss = PeakRSS()
    t0 = time.perf_counter()
    with OtherCPU() as other, connect(cluster, reuse_current=False, **overrides) as client:
        start = time.perf_counter() - t0
        workers = client.scheduler_info()["workers"]
        m = run_stages(cfg, client, backend, stages=stages)
        timings = {"cluster_start": round(start, 3), **{s: float(m["timings"][s]) for s in stages}}
        extra = {}
        if score_only:
            t1 = time.perf_counter()
            run_stages(cfg, client, backend, stages=("score",))
            extra["scheduled_score_s"] = round(time.perf_counter() - t1, 3)
    return {
        "status": "ok",
        "stages": timings,
        "total": round(sum(timings.values()), 3),
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "device": backend.name,
        "customers_scored": m.get("n_customers"),
        "peak_rss_bytes": rss.stop(),
        "other_processes_cpu_s": other.seconds,
        **extra,
    }


def _peer_total(res: dict) -> float:
    return round(sum(res["stages"].values()), 3)


def _compare(big: dict, peer: dict, rows: tuple[str, ...], total: bool) -> dict:
    out = {}
    for row in rows:
        mine, theirs = STAGE_MAP[row]
        if not all(s in big["stages"] for s in mine):
            continue
        b = sum(big["stages"][s] for s in mine)
        p = sum(peer["stages"].get(s, 0.0) for s in theirs)
        if row == "start" and p == 0:
            continue
        out[row] = _ratio(b, p)
    if total:
        out["total"] = _ratio(big["total"], peer["total"])
    return out


def _ratio(b: float, p: float) -> dict:
    """Seconds of both, ratio = bigseg / peer and speedup = peer / bigseg (4 digits)."""
    return {
        "bigseg_s": round(b, 3),
        "peer_s": round(p, 3),
        "ratio": float(f"{b / p:.4g}") if p > 0 else None,
        "speedup": float(f"{p / b:.4g}") if b > 0 else None,
    }


def stage_suite(
    name: str,
    data: Path,
    work: Path,
    as_of: str,
    peers: list[str],
    *,
    repeats: int,
    device: str,
    n_workers: int | None,
    horizon: int,
    seed: int,
    say: Say,
    peer_timeout: float | None,
    cluster=None,
) -> dict:
    """A suite that compares stages of bigseg with the same stages of each peer."""
    stages, until, rows = SUITE_PLAN[name]
    tag = name.replace("-", "_")
    big_runs, peer_runs = [], {p: [] for p in peers}
    peer_status: dict[str, dict] = {}
    for i in range(repeats):
        out = work / f"{tag}-bigseg-r{i}"
        cfg = job_config(data, out, as_of, seed=seed, horizon_days=horizon)
        say(f"[{name}] bigseg run {i + 1}/{repeats} ...")
        r = run_bigseg(cfg, stages, device, n_workers, name == "score", cluster)
        say(
            f"[{name}] bigseg: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items())
            + f"; total {r['total']:.1f}s"
        )
        big_runs.append(r)
        remove_tree(out, attempts=1)
        for p in peers:
            if p in peer_status:  # not installed / failed before: not tried again
                continue
            say(f"[{name}] {p} run {i + 1}/{repeats} ...")
            rss = PeakRSS()
            with OtherCPU() as other:
                res = run_peer(p, data, as_of, horizon, work, f"{tag}-r{i}", until, peer_timeout)
            res["peak_rss_bytes"] = rss.stop()
            res["other_processes_cpu_s"] = other.seconds
            if res["status"] != "ok":
                say(f"[{name}] {p}: {res['status']}")
                peer_status[p] = res
                continue
            res["total"] = _peer_total(res)
            say(
                f"[{name}] {p}: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in res["stages"].items())
                + f"; total {res['total']:.1f}s"
            )
            peer_runs[p].append(res)
    big = {**big_runs[-1], **_median_runs(big_runs), "runs": big_runs}
    if name == "score":
        big["scheduled_score_s"] = round(
            statistics.median(r["scheduled_score_s"] for r in big_runs), 3
        )
    result = {
        "suite": name,
        "bigseg_stages": list(stages),
        "peers_until": until,
        "compared": list(rows),
        "bigseg": big,
        "peers": {},
        "ratios": {},
    }
    for p in peers:
        if p in peer_status:
            result["peers"][p] = peer_status[p]
            continue
        runs = peer_runs[p]
        keep = {k: v for k, v in runs[-1].items() if k not in ("stages", "total")}
        result["peers"][p] = {
            **keep,
            **_median_runs(runs),
            "runs": [
                {k: r[k] for k in ("stages", "total", "peak_rss_bytes", "other_processes_cpu_s")}
                for r in runs
            ],
        }
        result["ratios"][p] = _compare(big, result["peers"][p], rows, name == "end-to-end")
    if name == "end-to-end":
        result["goals"] = goals(result)
    return result


def goals(result: dict) -> dict:
    """The end-to-end goals: >= 3x faster than pandas, >= 10x faster than Spark, no
    slower than 1.5x DuckDB (on the total)."""
    out = {}
    for p, need in GOALS.items():
        r = result["ratios"].get(p, {}).get("total")
        goal = (
            f"bigseg >= {need:g}x faster" if need >= 1 else f"bigseg no slower than {1 / need:g}x"
        )
        out[p] = {
            "goal": goal,
            "speedup": None if r is None else r["speedup"],
            "met": None if r is None else bool(r["speedup"] >= need - 1e-9),
        }
    return out


def scaling_suite(
    data: Path,
    work: Path,
    as_of: str,
    workers: list[int],
    *,
    repeats: int,
    device: str,
    horizon: int,
    seed: int,
    say: Say,
    cluster=None,
) -> dict:
    """bigseg's whole pipeline (ingest .. score) with each worker count; efficiency of n
    workers = (T(first) x first) / (T(n) x n), per stage and on the pipeline total
    (cluster start-up excluded)."""
    runs: dict[str, dict] = {}
    for w in workers:
        rs = []
        for i in range(repeats):
            out = work / f"scaling-w{w}-r{i}"
            cfg = job_config(data, out, as_of, seed=seed, horizon_days=horizon)
            say(f"[scaling] bigseg with {w} worker(s), run {i + 1}/{repeats} ...")
            r = run_bigseg(cfg, PIPELINE, device, w, cluster=cluster)
            r["pipeline_total"] = round(r["total"] - r["stages"]["cluster_start"], 3)
            say(
                f"[scaling] {w} worker(s): "
                + ", ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items())
                + f"; pipeline {r['pipeline_total']:.1f}s"
            )
            rs.append(r)
            remove_tree(out, attempts=1)
        med = _median_runs(rs)
        med["pipeline_total"] = round(statistics.median(r["pipeline_total"] for r in rs), 3)
        runs[str(w)] = {**rs[-1], **med, "runs": rs}
    base_w = workers[0]
    base = runs[str(base_w)]
    eff = {}
    for w in workers[1:]:
        r = runs[str(w)]
        per = {
            s: round(base["stages"][s] * base_w / (r["stages"][s] * w), 3)
            for s in PIPELINE
            if r["stages"].get(s)
        }
        per["pipeline_total"] = round(
            base["pipeline_total"] * base_w / (r["pipeline_total"] * w), 3
        )
        eff[str(w)] = {
            "speedup": round(base["pipeline_total"] / r["pipeline_total"], 3),
            "efficiency": per["pipeline_total"],
            "per_stage": per,
        }
    return {
        "suite": "scaling",
        "workers": workers,
        "runs": runs,
        "baseline_workers": base_w,
        "efficiency": eff,
    }
