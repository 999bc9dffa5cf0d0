"""Cluster configs: WHERE to compute. One YAML file, discriminated by a top-level ``type:``.

``type`` is one of ``local`` (the default when the key is missing), ``scheduler``,
``local-gpu``, ``ssh``, ``slurm`` or ``kubernetes``. Every model forbids unknown keys;
:func:`load_cluster_config` turns any problem into a :class:`~bigseg.errors.ConfigError`
that names the file and the key path. Relative TLS file paths and a local
``local_directory`` are resolved against the directory of the config file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bigseg.errors import ConfigError
from bigseg.yamlfile import format_validation_error, load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_bytes(v: Any, allow_auto: bool) -> Any:
    """Accept ``"auto"`` (when allowed), a positive int, or a size string like ``"4GiB"``."""
    if allow_auto and v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise ValueError("must be " + ("'auto', " if allow_auto else "") + "a size like '4GiB'")
    try:
        n = parse_bytes(v)
    except (ValueError, TypeError):
        raise ValueError(f"not a size like '4GiB' or a number of bytes: {v!r}") from None
    if n <= 0:
        raise ValueError("must be positive")
    return v


class LocalClusterConfig(_Strict):
    """Worker processes on this machine (``distributed.LocalCluster``, processes=True)."""

    type: Literal["local"] = "local"
    #: ``auto`` = usable cores // threads_per_worker
    n_workers: int | Literal["auto"] = "auto"
    threads_per_worker: int = Field(1, ge=1, le=1024)
    #: per worker; ``auto`` = total memory / n_workers
    memory_limit: int | str = "auto"
    host: str = "127.0.0.1"
    dashboard: bool = False
    dashboard_address: str = "127.0.0.1:8787"
    local_directory: str | None = None

    @field_validator("n_workers", mode="before")
    @classmethod
    def _n_workers(cls, v):
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or not (1 <= v <= 4096):
            raise ValueError("must be 'auto' or an integer in 1..4096")
        return v

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory(cls, v):
        return _check_bytes(v, allow_auto=True)

    def resolved_n_workers(self) -> int:
        """``n_workers`` with ``auto`` replaced by usable cores // threads_per_worker."""
        if self.n_workers != "auto":
            return int(self.n_workers)
        return max(1, usable_cores() // self.threads_per_worker)


class TLSConfig(_Strict):
    """Client-side TLS files for a ``tls://`` scheduler."""

    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None
    require_encryption: bool = True


class SchedulerClusterConfig(_Strict):
    """An already running scheduler; bigseg connects and never shuts it down."""

    type: Literal["scheduler"]
    address: str
    tls: TLSConfig | None = None
    #: seconds to wait for the connection
    timeout: float = Field(30.0, gt=0, le=3600)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str):
        if not re.fullmatch(r"([a-z]+://)?(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+)(:\d{1,5})?", v):
            raise ValueError("must look like 'tcp://HOST:PORT' or 'tls://HOST:PORT'")
        return v

    @field_validator("tls")
    @classmethod
    def _tls_needs_tls_address(cls, v, info):
        if v is not None and str(info.data.get("address", "")).startswith("tcp://"):
            raise ValueError("a tls block needs a 'tls://HOST:PORT' address, not tcp://")
        return v


class LocalGPUClusterConfig(_Strict):
    """One worker per GPU on this machine (``dask_cuda.LocalCUDACluster``)."""

    type: Literal["local-gpu"]
    #: e.g. "0,1" or [0, 1]; all visible GPUs when omitted
    CUDA_VISIBLE_DEVICES: str | list[int] | None = None
    #: e.g. "24GB"; no RMM pool when omitted
    rmm_pool_size: str | None = None
    host: str = "127.0.0.1"
    dashboard: bool = False
    dashboard_address: str = "127.0.0.1:8787"

    @field_validator("rmm_pool_size", mode="before")
    @classmethod
    def _pool(cls, v):
        return None if v is None else _check_bytes(v, allow_auto=False)


class SSHClusterConfig(_Strict):
    """Scheduler on ``hosts[0]``, one worker per remaining host (``distributed.SSHCluster``)."""

    type: Literal["ssh"]
    hosts: list[str] = Field(min_length=2)
    connect_options: dict[str, Any] = Field(default_factory=dict)
    worker_options: dict[str, Any] = Field(default_factory=dict)
    scheduler_options: dict[str, Any] = Field(default_factory=dict)
    remote_python: str | None = None


class SlurmClusterConfig(_Strict):
    """Workers submitted as SLURM jobs (``dask_jobqueue.SLURMCluster``)."""

    type: Literal["slurm"]
    queue: str | None = None
    account: str | None = None
    #: cores and memory of ONE job
    cores: int = Field(ge=1, le=4096)
    memory: str
    #: worker processes per job (cores are split between them)
    processes: int | None = Field(None, ge=1, le=4096)
    walltime: str = "01:00:00"
    #: number of jobs to scale to
    jobs: int = Field(1, ge=0, le=100000)
    job_extra_directives: list[str] = Field(default_factory=list)
    interface: str | None = None
    local_directory: str | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v):
        return _check_bytes(v, allow_auto=False)

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str):
        if not re.fullmatch(r"(\d+-)?\d{1,3}(:\d{2}){0,2}", v):
            raise ValueError("must look like 'HH:MM:SS' or 'D-HH:MM:SS'")
        return v


#: Kubernetes object names (RFC 1123 subdomain) and label values (at most 63 characters)
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class SecretKeyRef(_Strict):
    """One key of a Kubernetes Secret in the cluster's namespace."""

    name: str = Field(max_length=253, pattern=_DNS_SUBDOMAIN)
    key: str = Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class KubernetesClusterConfig(_Strict):
    """A DaskCluster resource via the Dask operator (``dask_kubernetes.operator.KubeCluster``)."""

    type: Literal["kubernetes"]
    name: str = Field("bigseg", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    image: str = "ghcr.io/dask/dask:latest"
    namespace: str | None = None
    n_workers: int = Field(2, ge=0, le=100000)
    #: e.g. {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {...}}
    resources: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    #: Kubernetes ServiceAccount of the scheduler and worker pods: the workers read and
    #: write object storage themselves, with the cloud identity bound to it (IRSA, GKE or
    #: Azure workload identity); the namespace's default account when omitted
    service_account: str | None = Field(None, max_length=253, pattern=_DNS_SUBDOMAIN)
    #: environment variables of the pods taken from Secrets, never written in this file:
    #: e.g. {"BIGSEG_PSEUDONYM_KEY": {"name": "bigseg-pseudonym-key", "key": "key"}}
    secret_env: dict[str, SecretKeyRef] = Field(default_factory=dict)
    #: labels of the scheduler and worker pods, e.g. {"azure.workload.identity/use": "true"}
    #: (AKS gives the identity only to pods with that label)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("env", "secret_env")
    @classmethod
    def _env_names(cls, v: dict):
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @field_validator("secret_env")
    @classmethod
    def _env_once(cls, v: dict, info):
        both = sorted(set(v) & set(info.data.get("env") or {}))
        if both:
            raise ValueError(f"{', '.join(both)}: set in env too; give each variable once")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]):
        for key, value in v.items():
            prefix, _, name = key.rpartition("/")
            bad_prefix = prefix and not (
                len(prefix) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, prefix)
            )
            if bad_prefix or not re.fullmatch(_LABEL_VALUE, name):
                raise ValueError(f"{key!r} is not a Kubernetes label key ([prefix/]name)")
            if value and not re.fullmatch(_LABEL_VALUE, value):
                raise ValueError(f"{key}: {value!r} is not a Kubernetes label value")
        return v


#: any cluster config model; ``type`` tells which
ClusterConfig = (
    LocalClusterConfig
    | SchedulerClusterConfig
    | LocalGPUClusterConfig
    | SSHClusterConfig
    | SlurmClusterConfig
    | KubernetesClusterConfig
)

#: ``type:`` value -> model
CLUSTER_TYPES: dict[str, type[BaseModel]] = {
    "local": LocalClusterConfig,
    "scheduler": SchedulerClusterConfig,
    "local-gpu": LocalGPUClusterConfig,
    "ssh": SSHClusterConfig,
    "slurm": SlurmClusterConfig,
    "kubernetes": KubernetesClusterConfig,
}


def usable_cores() -> int:
    """CPU cores this process may run on (respects affinity / cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _resolve_paths(doc: dict, base_dir: Path) -> dict:
    """Resolve relative client-side paths (TLS files, local dirs) against ``base_dir``."""

    def res(p):
        if not isinstance(p, str):
            return p
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else (base_dir / q).resolve())

    doc = dict(doc)
    if isinstance(doc.get("tls"), dict):
        doc["tls"] = {
            k: (res(v) if k in ("ca_file", "cert", "key") else v) for k, v in doc["tls"].items()
        }
    if doc.get("type", "local") == "local" and "local_directory" in doc:
        doc["local_directory"] = res(doc["local_directory"])
    return doc


def parse_cluster_config(doc: dict, source: str = "<cluster config>") -> ClusterConfig:
    """Validate a cluster-config mapping; ``source`` names it in error messages.

    Examples
    --------
    >>> parse_cluster_config({"n_workers": 2}).type
    'local'
    >>> parse_cluster_config({"type": "scheduler", "address": "tcp://127.0.0.1:8786"}).timeout
    30.0
    """
    doc = dict(doc)
    kind = doc.setdefault("type", "local")
    model = CLUSTER_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ConfigError(
            f"{source}: type: unknown cluster type {kind!r} (known: {', '.join(CLUSTER_TYPES)})"
        )
    try:
        return model.model_validate(doc)  # type: ignore[return-value]
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None


def load_cluster_config(path: str | Path) -> ClusterConfig:
    """Load and validate a cluster config file.

    Parameters
    ----------
    path : str or Path
        YAML file with a top-level ``type:`` key (``local`` when missing).

    Returns
    -------
    ClusterConfig
        One of the ``*ClusterConfig`` models of this module.

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or has an unknown key or bad value; the message
        names the file and the key path.

    Examples
    --------
    >>> cfg = load_cluster_config("cluster_configs/local.yaml")  # doctest: +SKIP
    >>> cfg.type  # doctest: +SKIP
    'local'
    """
    p = Path(path)
    doc = _resolve_paths(load_yaml(p), p.parent)
    return parse_cluster_config(doc, source=str(p))


def with_overrides(cfg: ClusterConfig, overrides: dict[str, Any], source: str) -> ClusterConfig:
    """Return ``cfg`` with ``overrides`` applied and validated again.

    Examples
    --------
    >>> with_overrides(LocalClusterConfig(), {"n_workers": 3}, "<test>").n_workers
    3
    """
    if not overrides:
        return cfg
    doc = {**cfg.model_dump(exclude_unset=True), "type": cfg.type, **overrides}
    return parse_cluster_config(doc, source=f"{source} (with overrides {overrides!r})")
