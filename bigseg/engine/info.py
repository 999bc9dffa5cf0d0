"""What a connected cluster looks like: workers, threads, memory and GPUs."""

from __future__ import annotations

import logging
from typing import Any

from dask.utils import format_bytes
from distributed import Client

from bigseg.backend import gpu_count

log = logging.getLogger(__name__)


def _worker_gpus(client: Client) -> dict[str, int | None]:
    """GPUs each worker sees, via ``client.run(gpu_count)``; None where it failed."""
    try:
        counts = client.run(gpu_count, on_error="return")
    except Exception as e:  # noqa: BLE001 - GPU counts are informative only
        log.warning("could not count GPUs on the workers: %s: %s", type(e).__name__, e)
        return {}
    out: dict[str, int | None] = {}
    for addr, n in counts.items():
        if isinstance(n, BaseException):
            log.warning("could not count GPUs on worker %s: %s: %s", addr, type(n).__name__, n)
            out[addr] = None
        else:
            out[addr] = int(n)
    return out


def _has_dashboard(client: Client) -> bool | None:
    """Whether the scheduler serves the Bokeh dashboard (None when it cannot be told)."""

    # nested, so cloudpickle ships it by value: the scheduler needs no bigseg installed
    def probe(dask_scheduler=None):
        apps = getattr(getattr(dask_scheduler, "http_application", None), "applications", [])
        return any(type(a).__name__ == "BokehApplication" for a in apps)

    try:
        return bool(client.run_on_scheduler(probe))
    except Exception as e:  # noqa: BLE001 - informative only
        log.debug("could not ask the scheduler about its dashboard: %s", e)
        return None


def cluster_info(client: Client) -> dict[str, Any]:
    """Describe the cluster behind ``client``.

    Parameters
    ----------
    client : distributed.Client
        A connected client, e.g. from :func:`bigseg.engine.connect`.

    Returns
    -------
    dict
        ``scheduler_address``, ``dashboard_link`` (None when there is no dashboard),
        ``n_workers``, ``total_threads``, ``total_memory`` (bytes), ``total_gpus`` and
        ``workers``: a list of dicts with ``address``, ``name``, ``host``, ``nthreads``,
        ``memory_limit`` (bytes) and ``gpus`` (None when it could not be counted),
        sorted by address.

    Examples
    --------
    >>> from bigseg.engine import connect
    >>> with connect(n_workers=2) as client:  # doctest: +SKIP
    ...     cluster_info(client)["n_workers"]
    2
    """
    info = client.scheduler_info(n_workers=-1)
    gpus = _worker_gpus(client)
    workers = []
    for addr, w in sorted(info.get("workers", {}).items()):
        workers.append(
            {
                "address": addr,
                "name": w.get("name"),
                "host": w.get("host"),
                "nthreads": int(w.get("nthreads") or 0),
                "memory_limit": int(w.get("memory_limit") or 0),
                "gpus": gpus.get(addr),
            }
        )
    has_dashboard = _has_dashboard(client)
    if has_dashboard is None:  # scheduler refused to run the probe: guess from services
        has_dashboard = "dashboard" in (info.get("services") or {})
    return {
        "scheduler_address": info.get("address") or client.scheduler.address,
        "dashboard_link": client.dashboard_link if has_dashboard else None,
        "n_workers": len(workers),
        "total_threads": sum(w["nthreads"] for w in workers),
        "total_memory": sum(w["memory_limit"] for w in workers),
        "total_gpus": sum(w["gpus"] or 0 for w in workers),
        "workers": workers,
    }


def format_cluster_info(info: dict[str, Any]) -> str:
    """Render :func:`cluster_info` output as readable multi-line text (with
    :func:`bigseg.engine.cluster_check`'s too: the client's versions, each check's verdict
    and one ``problem`` line per problem, with its fix).

    Examples
    --------
    >>> print(format_cluster_info({"scheduler_address": "tcp://127.0.0.1:8786",
    ...     "n_workers": 0, "total_threads": 0, "total_memory": 0, "workers": []}))
    scheduler  tcp://127.0.0.1:8786
    dashboard  off
    workers    0   threads 0   memory 0 B   GPUs 0
    """
    lines = [
        f"scheduler  {info['scheduler_address']}",
        f"dashboard  {info.get('dashboard_link') or 'off'}",
        f"workers    {info['n_workers']}   threads {info['total_threads']}   "
        f"memory {format_bytes(info['total_memory'])}   GPUs {info.get('total_gpus', 0)}",
    ]
    for w in info["workers"]:
        gpus = "?" if w.get("gpus") is None else w["gpus"]
        lines.append(
            f"  {w['address']:<28} threads {w['nthreads']:<3} "
            f"memory {format_bytes(w['memory_limit']):<10} GPUs {gpus}"
        )
    if "roundtrip_s" in info:
        lines.append(f"test task  ok in {info['roundtrip_s'] * 1000:.1f} ms")
    if info.get("versions"):
        lines.append("versions   " + "  ".join(f"{k} {v}" for k, v in info["versions"].items()))
    if "checks" in info:
        lines.append(
            "checks     " + "   ".join(_verdict(n, ps) for n, ps in info["checks"].items())
        )
    lines += [f"problem    {p}" for p in info.get("problems", ())]
    return "\n".join(lines)


def _verdict(name: str, problems: list) -> str:
    n = len(problems)
    return f"{name}: " + ("ok" if not n else f"{n} problem" + "s" * (n > 1))
