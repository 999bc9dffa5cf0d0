"""One opener per cluster type: a context manager yielding a ``distributed.Client``.

Optional backends (dask_cuda, asyncssh, dask_jobqueue, dask_kubernetes) are imported
lazily, here and nowhere else; a missing one raises :class:`~bigseg.errors.ClusterError`
saying which ``pip install 'bigseg[EXTRA]'`` to run.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.security import Security
from distributed.system import MEMORY_LIMIT

from bigseg.engine._workerenv import spawning
from bigseg.engine.config import (
    ClusterConfig,
    KubernetesClusterConfig,
    LocalClusterConfig,
    LocalGPUClusterConfig,
    SchedulerClusterConfig,
    SlurmClusterConfig,
    SSHClusterConfig,
    TLSConfig,
)
from bigseg.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)


def require(module: str, extra: str, kind: str) -> ModuleType:
    """Import an optional backend ``module`` or raise ClusterError naming the pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = (
            "is not installed"
            if importlib.util.find_spec(module.split(".")[0]) is None
            else f"failed to import ({type(e).__name__}: {e})"
        )
        raise ClusterError(
            f"cluster type '{kind}' needs the Python package '{module}', which {why}; "
            f"install it with: pip install 'bigseg[{extra}]'"
        ) from None


class StdoutToStderr(WorkerPlugin):
    """Worker plugin for clusters bigseg starts itself: the worker's stdout (file
    descriptor 1) becomes its stderr, so console lines printed by native libraries in
    the workers (XGBoost's collective prints "got rank" per training) never mix with the
    results a CLI run prints on stdout. Applied to restarted workers too."""

    idempotent = True

    def setup(self, worker) -> None:
        import os
        import sys

        sys.stdout.flush()
        os.dup2(2, 1)

    def teardown(self, worker) -> None:
        pass


class _SklearnHiddenFromXGBoost:
    """Import finder: refuses scikit-learn to XGBoost's compatibility module alone,
    whenever and in whichever thread XGBoost is first imported; every other import of
    scikit-learn proceeds as usual."""

    def find_spec(self, name, path=None, target=None):
        if name != "sklearn":
            return None
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get("__name__") == "xgboost.compat":
                raise ModuleNotFoundError("not imported for XGBoost in bigseg's workers", name=name)
            frame = frame.f_back
        return None


class BoosterOnly(WorkerPlugin):
    """Worker plugin for clusters bigseg starts itself: XGBoost without its scikit-learn
    estimator wrappers. bigseg's tasks use XGBoost's Booster API only, yet XGBoost
    imports scikit-learn (and with it SciPy's statistics) whenever it is installed:
    ~0.6 s in every worker process, spent while the segment stage's first tasks waited.
    Refused scikit-learn, XGBoost leaves its wrappers unbased; scikit-learn itself stays
    importable for any task that needs it."""

    idempotent = True

    def setup(self, worker) -> None:
        if not any(isinstance(f, _SklearnHiddenFromXGBoost) for f in sys.meta_path):
            sys.meta_path.insert(0, _SklearnHiddenFromXGBoost())

    def teardown(self, worker) -> None:
        sys.meta_path[:] = [
            f for f in sys.meta_path if not isinstance(f, _SklearnHiddenFromXGBoost)
        ]


class WorkerLogging(WorkerPlugin):
    """Worker plugin for clusters bigseg starts itself: bigseg's records in a worker
    are written like the client's (time, level, logger name, at the client's level).
    Without it a worker's bigseg WARNING reached stderr as a bare message through
    Python's last-resort handler, unrecognisable as bigseg's."""

    idempotent = True

    def __init__(self, level: int) -> None:
        self.level = level

    def setup(self, worker) -> None:
        import logging

        lg = logging.getLogger("bigseg")
        lg.setLevel(self.level)
        if not any(getattr(h, "_bigseg", False) for h in lg.handlers):
            h = logging.StreamHandler()  # the worker's stderr
            h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            h._bigseg = True
            lg.addHandler(h)
            lg.propagate = False

    def teardown(self, worker) -> None:
        pass


@contextmanager
def _own_cluster(make: Callable[[], Any], what: str) -> Iterator[Client]:
    """Start a cluster with ``make()``, yield a client on it, close both on exit."""
    try:
        cluster = make()
    except (ClusterError, ConfigError):
        raise
    except Exception as e:  # noqa: BLE001 - any start failure is a ClusterError
        raise ClusterError(f"could not start {what}: {type(e).__name__}: {e}") from e
    try:
        try:
            client = Client(cluster, set_as_default=True)
        except Exception as e:  # noqa: BLE001
            raise ClusterError(f"could not connect to {what}: {type(e).__name__}: {e}") from e
        try:
            log.info("connected to %s at %s", what, client.scheduler.address)
            client.register_plugin(StdoutToStderr(), name="bigseg-stdout-to-stderr")
            client.register_plugin(BoosterOnly(), name="bigseg-booster-only")
            level = logging.getLogger("bigseg").getEffectiveLevel()
            client.register_plugin(WorkerLogging(level), name="bigseg-worker-logging")
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
        log.info("closed %s", what)


def _dashboard_kwargs(enabled: bool, address: str) -> dict[str, Any]:
    """LocalCluster kwargs for the scheduler dashboard.

    Off: the scheduler still runs its small HTTP server (health, metrics); it is moved
    off the well-known port 8787 to a random port on 127.0.0.1.
    """
    if not enabled:
        return {
            "dashboard_address": None,
            "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        }
    if importlib.util.find_spec("bokeh") is None:
        log.warning("dashboard: true, but bokeh is not installed (pip install 'bokeh>=3.1')")
    return {"dashboard_address": address}


def _open_local(cfg: LocalClusterConfig) -> Iterator[Client]:
    n = cfg.resolved_n_workers()
    if cfg.memory_limit == "auto":
        memory: int | str = max(1, MEMORY_LIMIT // n)
    else:
        memory = cfg.memory_limit
    kwargs: dict[str, Any] = dict(
        n_workers=n,
        threads_per_worker=cfg.threads_per_worker,
        memory_limit=memory,
        processes=True,
        host=cfg.host,
        silence_logs=logging.ERROR,
        **_dashboard_kwargs(cfg.dashboard, cfg.dashboard_address),
    )
    if cfg.local_directory:
        kwargs["local_directory"] = cfg.local_directory
    log.info(
        "starting a local cluster: %d worker processes x %d threads, %s memory each, host %s",
        n,
        cfg.threads_per_worker,
        format_bytes(parse_bytes(memory)),
        cfg.host,
    )
    return _own_cluster(spawning(lambda: LocalCluster(**kwargs)), f"a local cluster of {n} workers")


def _security(tls: TLSConfig) -> Security:
    for key in ("ca_file", "cert", "key"):
        p = getattr(tls, key)
        if p is not None and not Path(p).is_file():
            raise ConfigError(f"tls.{key}: file not found: {p}")
    for key in ("ca_file", "cert"):  # Dask's TLS is mutual: the client needs both
        if getattr(tls, key) is None:
            raise ConfigError(
                f"tls.{key}: required (Dask TLS authenticates both sides: give ca_file, "
                "cert and key, or a cert file that also holds the key)"
            )
    return Security(
        tls_ca_file=tls.ca_file,
        tls_client_cert=tls.cert,
        tls_client_key=tls.key,
        require_encryption=tls.require_encryption,
    )


@contextmanager
def _open_scheduler(cfg: SchedulerClusterConfig) -> Iterator[Client]:
    """Connect to a running scheduler. On exit only the client is closed, never the cluster."""
    security = _security(cfg.tls) if cfg.tls is not None else None
    log.info("connecting to the scheduler at %s (timeout %g s)", cfg.address, cfg.timeout)
    try:
        client = Client(cfg.address, security=security, timeout=cfg.timeout, set_as_default=True)
    except (OSError, TimeoutError) as e:
        if cfg.tls is not None and "SSL" in str(e):
            raise ClusterError(
                f"the Dask scheduler at {cfg.address} refused the TLS connection (is tls.cert "
                f"signed by a CA the scheduler trusts, and tls.ca_file the scheduler's CA?): {e}"
            ) from None
        raise ClusterError(
            f"could not reach the Dask scheduler at {cfg.address} within {cfg.timeout:g} s: {e}"
        ) from None
    except Exception as e:  # noqa: BLE001 - e.g. TLS or protocol errors
        raise ClusterError(
            f"could not connect to the Dask scheduler at {cfg.address}: {type(e).__name__}: {e}"
        ) from e
    try:
        yield client
    finally:
        client.close()  # NOT client.shutdown(): the scheduler and workers are not ours


def _open_local_gpu(cfg: LocalGPUClusterConfig) -> Iterator[Client]:
    dask_cuda = require("dask_cuda", "gpu", "local-gpu")
    kwargs: dict[str, Any] = dict(
        host=cfg.host,
        silence_logs=logging.ERROR,
        **_dashboard_kwargs(cfg.dashboard, cfg.dashboard_address),
    )
    if cfg.CUDA_VISIBLE_DEVICES is not None:
        kwargs["CUDA_VISIBLE_DEVICES"] = cfg.CUDA_VISIBLE_DEVICES
    if cfg.rmm_pool_size is not None:
        kwargs["rmm_pool_size"] = cfg.rmm_pool_size
    log.info("starting a local GPU cluster (dask_cuda.LocalCUDACluster): %s", kwargs)
    return _own_cluster(
        spawning(lambda: dask_cuda.LocalCUDACluster(**kwargs)), "a local GPU cluster"
    )


def _open_ssh(cfg: SSHClusterConfig) -> Iterator[Client]:
    require("asyncssh", "ssh", "ssh")
    from distributed.deploy.ssh import SSHCluster

    kwargs: dict[str, Any] = dict(
        hosts=list(cfg.hosts),
        connect_options=dict(cfg.connect_options),
        worker_options=dict(cfg.worker_options),
        scheduler_options=dict(cfg.scheduler_options),
    )
    if cfg.remote_python:
        kwargs["remote_python"] = cfg.remote_python
    log.info("starting an SSH cluster: scheduler on %s, workers on %s", cfg.hosts[0], cfg.hosts[1:])
    return _own_cluster(lambda: SSHCluster(**kwargs), f"an SSH cluster on {cfg.hosts[0]}")


def _open_slurm(cfg: SlurmClusterConfig) -> Iterator[Client]:
    jobqueue = require("dask_jobqueue", "slurm", "slurm")
    kwargs = {
        k: v
        for k, v in cfg.model_dump(exclude={"type", "jobs"}).items()
        if v is not None and v != []
    }

    def make():
        cluster = jobqueue.SLURMCluster(**kwargs)
        cluster.scale(jobs=cfg.jobs)
        return cluster

    log.info("starting a SLURM cluster, scaling to %d jobs: %s", cfg.jobs, kwargs)
    return _own_cluster(make, "a SLURM cluster")


def kubernetes_cluster_spec(
    cfg: KubernetesClusterConfig, make_cluster_spec: Callable[..., dict]
) -> dict[str, Any]:
    """The DaskCluster resource for ``cfg``: the operator's own spec
    (``dask_kubernetes.operator.make_cluster_spec``) with three changes.

    The operator starts the pods with ``dask-scheduler`` and ``dask-worker``, console
    scripts that distributed no longer installs (only ``dask scheduler`` and ``dask
    worker``), so the pods of an image holding just bigseg's locked environment would not
    start: both become the ``dask`` subcommands. ``service_account`` and ``labels`` go on
    both pods, which read and write object storage with the identity bound to them, and
    ``secret_env`` becomes variables taken from Secrets (the pseudonym key).
    """
    from_secrets = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        for var, ref in cfg.secret_env.items()
    ]
    spec = make_cluster_spec(
        name=cfg.name,
        image=cfg.image,
        n_workers=cfg.n_workers,
        resources=dict(cfg.resources),
        env=dict(cfg.env),
        worker_command="dask worker",
    )
    for role in ("scheduler", "worker"):
        part = spec["spec"][role]
        container = part["spec"]["containers"][0]
        if container["args"][0] == "dask-scheduler":
            container["args"] = ["dask", "scheduler", *container["args"][1:]]
        container["env"] = [*(container.get("env") or []), *from_secrets]
        if cfg.service_account:
            part["spec"]["serviceAccountName"] = cfg.service_account
        if cfg.labels:
            part.setdefault("metadata", {}).setdefault("labels", {}).update(cfg.labels)
    return spec


def _open_kubernetes(cfg: KubernetesClusterConfig) -> Iterator[Client]:
    require("dask_kubernetes", "kubernetes", "kubernetes")
    operator = require("dask_kubernetes.operator", "kubernetes", "kubernetes")
    spec = kubernetes_cluster_spec(cfg, operator.make_cluster_spec)
    kwargs: dict[str, Any] = dict(custom_cluster_spec=spec)
    if cfg.namespace:
        kwargs["namespace"] = cfg.namespace
    log.info("starting a Kubernetes cluster %r (%d workers)", cfg.name, cfg.n_workers)
    return _own_cluster(
        lambda: operator.KubeCluster(**kwargs), f"the Kubernetes cluster {cfg.name!r}"
    )


_OPENERS: dict[str, Callable[[Any], Any]] = {
    "local": _open_local,
    "scheduler": _open_scheduler,
    "local-gpu": _open_local_gpu,
    "ssh": _open_ssh,
    "slurm": _open_slurm,
    "kubernetes": _open_kubernetes,
}


def open_cluster(cfg: ClusterConfig):
    """Context manager yielding a client for ``cfg`` (see :func:`bigseg.engine.connect`)."""
    return _OPENERS[cfg.type](cfg)
