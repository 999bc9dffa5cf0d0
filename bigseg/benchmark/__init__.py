"""``bigseg benchmark``: bigseg beside the tools people would otherwise use, on the same
generated data, in the same run, with the hardware and versions recorded.

Suites (:data:`SUITES`): ``features``, ``segment``, ``predict``, ``score`` and
``end-to-end`` run bigseg's pipeline stages on a local cluster and each peer script
(``benchmarks/peers/``: pandas, DuckDB, Polars, dask.dataframe, dask-ml, cuML,
xgboost.dask, Spark; each suite has its own default set, :data:`SUITE_PEERS`) as a
separate process up to the same stage; ``scaling`` runs bigseg's pipeline with each
worker count. Results are one JSON file; :func:`render` turns it into PNG charts and a
Markdown table.

Example
-------
>>> from bigseg.benchmark import run_benchmark   # doctest: +SKIP
>>> res, path = run_benchmark(["end-to-end"], customers=3000, out="bench",
...                           peers=["pandas", "duckdb"])   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from pathlib import Path

from bigseg.benchmark.data import prepare_data
from bigseg.benchmark.env import PeakRSS, hardware, versions
from bigseg.benchmark.peers import DEFAULT_PEERS, PEERS, SUITE_PEERS
from bigseg.benchmark.render import render
from bigseg.benchmark.suites import SUITES, scaling_suite, stage_suite
from bigseg.errors import ConfigError
from bigseg.io.commit import remove_tree, write_json_atomic

__all__ = [
    "DEFAULT_PEERS",
    "PEERS",
    "SUITES",
    "SUITE_PEERS",
    "PeakRSS",
    "hardware",
    "render",
    "run_benchmark",
    "versions",
]

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_benchmark(
    suites,
    *,
    customers: int = 100_000,
    workers=(1, 2),
    out="benchmarks/results",
    data=None,
    peers=None,
    repeats: int = 1,
    seed: int = 0,
    horizon: int = 90,
    device: str = "auto",
    n_workers: int | None = None,
    cluster=None,
    peer_timeout: float | None = 7200,
    command: str = "",
    say=None,
) -> tuple[dict, Path]:
    """Run the named suites on ``customers`` generated customers and write the results.

    Parameters
    ----------
    suites : list of str
        Names from :data:`SUITES`.
    customers : int
        Size of the generated data set (all suites share it).
    workers : sequence of int
        Worker counts of the ``scaling`` suite (the first is the baseline).
    out : str or Path
        Directory of the results JSON (``<suites>-<customers>.json``).
    data : str or Path, optional
        Where the generated data live; reused when they have this size and seed. The
        peers' score files and logs go to ``data/_bench_work/``. Default: a temporary
        directory, deleted at the end.
    peers : list of str, optional
        Peers to run in every suite (:data:`PEERS`); default: each suite's own
        (:data:`SUITE_PEERS`). One that cannot run is recorded with its status (e.g.
        ``{"status": "not installed"}``), never dropped.
    repeats : int
        Runs of every tool; the results keep each run and report medians.
    n_workers : int, optional
        Workers of bigseg's local cluster in the comparison suites (default one per core).
    cluster : str or Path, optional
        A cluster config (``cluster_configs/*.yaml``) bigseg runs on instead of the local
        default; the peers always run on this machine.
    say : callable, optional
        Called with one line of progress text at a time.

    Returns
    -------
    (results, path) : the results dict and the JSON file written.
    """
    say = say or log.info
    suites = list(dict.fromkeys(suites))
    workers = _check_args(suites, peers, repeats, customers, workers)
    tmp = None
    if data is None:
        tmp = Path(tempfile.mkdtemp(prefix="bigseg-benchmark-"))
        data = tmp
    data = Path(data).resolve()
    work = data / "_bench_work"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = _header(command, customers, seed, horizon, repeats)
    t_all = time.perf_counter()
    opts = dict(repeats=repeats, device=device, horizon=horizon, seed=seed, say=say)
    opts.update(cluster=cluster)
    stage_opts = dict(opts, peer_timeout=peer_timeout)
    try:
        res["data"], as_of = _data(customers, data, seed, say, temporary=tmp is not None)
        res["as_of"] = as_of
        for s in suites:
            t0 = time.perf_counter()
            if s == "scaling":
                r = scaling_suite(data, work, as_of, workers, **opts)
            else:
                suite_peers = list(SUITE_PEERS[s] if peers is None else peers)
                r = stage_suite(
                    s, data, work, as_of, suite_peers, n_workers=n_workers, **stage_opts
                )
            r["wall_s"] = round(time.perf_counter() - t0, 1)
            res["suites"][s] = r
    finally:
        if tmp is not None:
            remove_tree(tmp, attempts=1)
    res["finished"] = _now()
    res["wall_s"] = round(time.perf_counter() - t_all, 1)
    path = out / f"{'+'.join(suites)}-{customers}.json"
    write_json_atomic(path, res)
    return res, path


def _header(command: str, customers: int, seed: int, horizon: int, repeats: int) -> dict:
    """The results document before any suite ran."""
    res: dict = {
        "benchmark": "bigseg benchmark",
        "command": command,
        "started": _now(),
        "customers": customers,
        "seed": seed,
        "horizon_days": horizon,
        "repeats": repeats,
        "suites": {},
    }
    res["hardware"], res["libraries"] = hardware(), versions()
    return res


def _check_args(suites: list[str], peers, repeats: int, customers: int, workers) -> list[int]:
    """Refuse unknown suites or peers and out-of-range numbers; the worker counts."""
    bad = [s for s in suites if s not in SUITES]
    if bad or not suites:
        raise ConfigError(f"unknown suite(s) {bad}; choose from {', '.join(SUITES)}")
    bad = [p for p in (peers or ()) if p not in PEERS]
    if bad:
        raise ConfigError(f"unknown peer(s) {bad}; choose from {', '.join(PEERS)}")
    if repeats < 1 or customers < 1:
        raise ConfigError(f"repeats={repeats} and customers={customers} must be >= 1")
    workers = [int(w) for w in workers]
    if "scaling" in suites and (not workers or min(workers) < 1):
        raise ConfigError(f"--workers {workers}: give worker counts >= 1, e.g. 1,2")
    return workers


def _data(customers: int, data: Path, seed: int, say, temporary: bool) -> tuple[dict, str]:
    """Generate (or reuse) the data on a cluster of its own; ``(results' "data", as_of)``."""
    from bigseg.engine import connect

    say(f"data: {customers:,} customers in {data / 'raw'}")
    with connect(reuse_current=False) as client:
        summary = prepare_data(customers, data, seed, client)
    say(
        "data: " + ("reused" if summary["reused"] else f"generated in {summary['generate_s']:.1f}s")
    )
    info = {k: summary.get(k) for k in ("n_customers", "rows", "end_date", "generate_s", "reused")}
    info["path"] = str(data) if not temporary else "(temporary, deleted)"
    return info, str(summary["end_date"])
