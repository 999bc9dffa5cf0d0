"""Execution engine: the ONLY place in bigseg that creates Dask clusters and clients.

Everything else asks for a client with :func:`connect` and describes it with
:func:`cluster_info`. WHERE to compute is a cluster config file (see
``cluster_configs/``), separate from the run config that says WHAT to compute.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import distributed
from distributed import Client

from bigseg.engine._clusters import open_cluster
from bigseg.engine.checks import Problem, gather_versions, version_problems
from bigseg.engine.config import (
    CLUSTER_TYPES,
    ClusterConfig,
    KubernetesClusterConfig,
    LocalClusterConfig,
    LocalGPUClusterConfig,
    SchedulerClusterConfig,
    SlurmClusterConfig,
    SSHClusterConfig,
    TLSConfig,
    load_cluster_config,
    parse_cluster_config,
    with_overrides,
)
from bigseg.engine.info import cluster_info, format_cluster_info
from bigseg.errors import ClusterError, ConfigError

__all__ = [
    "CLUSTER_TYPES",
    "ClusterConfig",
    "KubernetesClusterConfig",
    "LocalClusterConfig",
    "LocalGPUClusterConfig",
    "Problem",
    "SchedulerClusterConfig",
    "SlurmClusterConfig",
    "SSHClusterConfig",
    "TLSConfig",
    "cluster_check",
    "cluster_info",
    "connect",
    "format_cluster_info",
    "load_cluster_config",
    "parse_cluster_config",
    "resolve_cluster_config",
]

log = logging.getLogger(__name__)

_MODELS = tuple(CLUSTER_TYPES.values())


def resolve_cluster_config(
    config: str | os.PathLike | ClusterConfig | dict | None = None, **overrides: Any
) -> ClusterConfig:
    """Turn ``config`` plus ``overrides`` into a validated cluster config.

    Parameters
    ----------
    config : str, Path, ClusterConfig, dict or None
        A YAML file, an already built config, a mapping, or None for the local default.
    **overrides
        Top-level keys applied on top, validated again (e.g. ``n_workers=2``).

    Examples
    --------
    >>> resolve_cluster_config(n_workers=2).n_workers
    2
    """
    if config is None:
        cfg: ClusterConfig = LocalClusterConfig()
        source = "<default local cluster>"
    elif isinstance(config, (str, os.PathLike)):
        cfg, source = load_cluster_config(config), str(Path(config))
    elif isinstance(config, _MODELS):
        cfg, source = config, f"<{config.type} cluster config>"  # type: ignore[assignment]
    elif isinstance(config, dict):
        source = "<cluster config mapping>"
        cfg = parse_cluster_config(config, source=source)
    else:
        raise ConfigError(
            f"connect: config must be a file path, a cluster config, a mapping or None; "
            f"got {type(config).__name__}"
        )
    return with_overrides(cfg, overrides, source)


def _current_client() -> Client | None:
    """The client already current in this process, or None."""
    try:
        client = distributed.get_client()
    except ValueError:
        return None
    return client if client.status == "running" else None


@contextmanager
def connect(
    config: str | os.PathLike | ClusterConfig | dict | None = None,
    *,
    reuse_current: bool = True,
    **overrides: Any,
) -> Iterator[Client]:
    """Create (or reach) a Dask cluster and yield a connected ``distributed.Client``.

    A ``local`` cluster runs worker *processes* bound to 127.0.0.1 with the dashboard
    off unless the config asks for it. Clusters started here are closed on exit; for a
    ``scheduler`` config only the client is closed, the remote scheduler and workers
    keep running.

    Parameters
    ----------
    config : str, Path, ClusterConfig, dict or None
        A cluster config file (``cluster_configs/*.yaml``), a config object, a mapping,
        or None for the local default (one single-threaded worker per usable core).
    reuse_current : bool, default True
        With ``config=None`` and no overrides, reuse a client that is already current in
        this process (``distributed.get_client()``) and leave it open on exit.
    **overrides
        Config keys applied on top of ``config`` and validated, e.g. ``n_workers=2``.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ConfigError
        Bad config file, key or value.
    ClusterError
        The cluster could not be started or reached, or its backend package is missing
        (the message says which ``pip install 'bigseg[EXTRA]'`` to run).

    Examples
    --------
    >>> with connect(n_workers=2) as client:  # doctest: +SKIP
    ...     client.submit(sum, [1, 2]).result()
    3
    >>> with connect("cluster_configs/scheduler.yaml") as client:  # doctest: +SKIP
    ...     cluster_info(client)["n_workers"]
    """
    if config is None and not overrides and reuse_current:
        current = _current_client()
        if current is not None:
            log.info("reusing the current Dask client (%s)", current.scheduler.address)
            yield current
            return
    cfg = resolve_cluster_config(config, **overrides)
    if cfg.type in ("local", "local-gpu"):  # spawned workers re-import the script
        from bigseg.engine.mainguard import check_main_guard

        check_main_guard()
    with open_cluster(cfg) as client:
        yield client


def cluster_check(
    path: str | os.PathLike,
    *,
    min_workers: int = 0,
    timeout: float = 120.0,
    checks: Mapping[str, Callable[[Client], list[Problem]]] | None = None,
) -> dict[str, Any]:
    """Connect with a cluster config file, run one tiny task, describe the cluster and
    check what would break a job on it.

    Used by ``bigseg cluster-check FILE``; print the result with
    :func:`format_cluster_info`. The packages of :data:`bigseg.engine.checks.PACKAGES`
    must have the client's versions on the scheduler and on every worker.

    Parameters
    ----------
    path : str or Path
        Cluster config file.
    min_workers : int, default 0
        Wait (up to ``timeout`` seconds) until at least this many workers are connected,
        e.g. for SLURM jobs still in the queue.
    timeout : float, default 120
        Seconds to wait for ``min_workers`` and for the test task.
    checks : mapping of name -> callable, optional
        More checks, each ``client -> list of Problem``, run after the version check
        (``bigseg cluster-check --config`` adds ``"storage"``:
        :func:`bigseg.pipeline.preflight.storage_problems`).

    Returns
    -------
    dict
        :func:`cluster_info` plus ``config`` (the file), ``type``, ``versions`` (the
        client's), ``checks`` (``{name: [Problem, ...]}``, ``"versions"`` first),
        ``problems`` (all of them: the cluster cannot run a job while any is left) and,
        when there are workers, ``roundtrip_s`` (seconds the test task took).

    Examples
    --------
    >>> info = cluster_check("cluster_configs/local.yaml")  # doctest: +SKIP
    >>> print(format_cluster_info(info))  # doctest: +SKIP
    """
    cfg = resolve_cluster_config(path)
    with connect(cfg, reuse_current=False) as client:
        if min_workers > 0:
            try:
                client.wait_for_workers(min_workers, timeout=timeout)
            except TimeoutError:
                raise ClusterError(
                    f"{path}: fewer than {min_workers} workers connected within {timeout:g} s"
                ) from None
        info = cluster_info(client)
        if info["n_workers"]:
            t0 = time.perf_counter()
            try:
                client.submit(operator.add, 1, 1, pure=False).result(timeout=timeout)
            except Exception as e:  # noqa: BLE001
                raise ClusterError(f"{path}: test task failed: {type(e).__name__}: {e}") from e
            info["roundtrip_s"] = time.perf_counter() - t0
        versions = gather_versions(client)
        found = {"versions": version_problems(versions, info["scheduler_address"])}
        for name, check in (checks or {}).items():
            found[name] = list(check(client))
    return {
        "config": str(path),
        "type": cfg.type,
        **info,
        "versions": versions["client"],
        "checks": found,
        "problems": [p for ps in found.values() for p in ps],
    }
