"""bigseg.engine: cluster configs, connect() for local and external clusters, cluster_info."""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path

import pytest

from bigseg.engine import (
    CLUSTER_TYPES,
    LocalClusterConfig,
    SchedulerClusterConfig,
    cluster_check,
    cluster_info,
    connect,
    format_cluster_info,
    load_cluster_config,
    resolve_cluster_config,
)
from bigseg.errors import ClusterError, ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "cluster_configs"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.yaml"))

INFO_KEYS = {"scheduler_address", "n_workers", "total_threads", "total_memory", "workers"}
WORKER_KEYS = {"address", "nthreads", "memory_limit", "gpus"}


def _write(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- configs


def test_every_cluster_type_has_an_example_file():
    assert {p.stem for p in CONFIG_FILES} == set(CLUSTER_TYPES)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_example_configs_validate(path):
    cfg = load_cluster_config(path)
    assert cfg.type == path.stem


def test_missing_type_means_local(tmp_path):
    cfg = load_cluster_config(_write(tmp_path, "n_workers: 3\n"))
    assert isinstance(cfg, LocalClusterConfig) and cfg.n_workers == 3


def test_empty_file_is_the_local_default(tmp_path):
    cfg = load_cluster_config(_write(tmp_path, ""))
    assert cfg == LocalClusterConfig()
    assert cfg.host == "127.0.0.1" and cfg.dashboard is False


def test_unknown_key_names_file_and_key(tmp_path):
    p = _write(tmp_path, "type: local\nn_wrokers: 2\n")
    with pytest.raises(ConfigError) as e:
        load_cluster_config(p)
    assert str(p) in str(e.value) and "n_wrokers" in str(e.value)
    assert "unknown key" in str(e.value)


def test_unknown_nested_key_names_key_path(tmp_path):
    p = _write(tmp_path, "type: scheduler\naddress: tls://h:8786\ntls:\n  ca: x.pem\n")
    with pytest.raises(ConfigError, match=r"tls\.ca: unknown key"):
        load_cluster_config(p)


@pytest.mark.parametrize(
    "text, key",
    [
        ("n_workers: -3\n", "n_workers"),
        ("n_workers: many\n", "n_workers"),
        ("threads_per_worker: x\n", "threads_per_worker"),
        ("threads_per_worker: 0\n", "threads_per_worker"),
        ("memory_limit: lots\n", "memory_limit"),
        ("dashboard: maybe\n", "dashboard"),
        ("type: scheduler\naddress: 'not an address'\n", "address"),
        ("type: scheduler\naddress: tcp://h:1\ntimeout: -1\n", "timeout"),
        ("type: slurm\ncores: 4\nmemory: 8GiB\nwalltime: soon\n", "walltime"),
        ("type: slurm\ncores: 4\n", "memory"),
        ("type: ssh\nhosts: [only-one]\n", "hosts"),
        ("type: kubernetes\nname: Bad_Name\n", "name"),
        ("type: kubernetes\nservice_account: Bad_Account\n", "service_account"),
        ("type: kubernetes\nlabels: {'bad key!': x}\n", "labels"),
        ("type: kubernetes\nlabels: {app: 'not a value!'}\n", "labels"),
        (
            "type: kubernetes\nsecret_env: {KEY: {name: Bad_Secret, key: k}}\n",
            "secret_env.KEY.name",
        ),
        ("type: kubernetes\nenv: {K: '1'}\nsecret_env: {K: {name: s, key: k}}\n", "secret_env"),
        ("type: kubernetes\nenv: {'1-BAD': x}\n", "env"),
    ],
)
def test_bad_value_names_file_and_key(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_cluster_config(p)
    assert str(p) in str(e.value)
    assert f"  {key}:" in str(e.value), str(e.value)


def test_unknown_type_lists_the_known_ones(tmp_path):
    p = _write(tmp_path, "type: yarn\n")
    with pytest.raises(ConfigError, match=r"type: unknown cluster type 'yarn'.*slurm"):
        load_cluster_config(p)


def test_tls_block_needs_tls_address(tmp_path):
    p = _write(tmp_path, "type: scheduler\naddress: tcp://h:8786\ntls:\n  ca_file: ca.pem\n")
    with pytest.raises(ConfigError, match=r"tls: .*tls://"):
        load_cluster_config(p)


def test_tls_paths_resolve_against_the_config_dir(tmp_path):
    p = _write(tmp_path, "type: scheduler\naddress: tls://h:8786\ntls:\n  ca_file: ca.pem\n")
    cfg = load_cluster_config(p)
    assert isinstance(cfg, SchedulerClusterConfig)
    assert cfg.tls.ca_file == str(tmp_path / "ca.pem")


def test_missing_file_names_the_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_cluster_config(p)


def test_invalid_yaml_names_the_file(tmp_path):
    p = _write(tmp_path, "type: local\nn_workers: [1, 2\n", "broken.yaml")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_cluster_config(p)


def test_overrides_are_validated():
    assert resolve_cluster_config(n_workers=2).n_workers == 2
    with pytest.raises(ConfigError, match="n_workers"):
        resolve_cluster_config(n_workers=-1)
    cfg = SchedulerClusterConfig(type="scheduler", address="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigError, match="n_workers: unknown key"):
        resolve_cluster_config(cfg, n_workers=2)


def test_auto_workers_use_usable_cores():
    cores = len(os.sched_getaffinity(0))
    assert LocalClusterConfig().resolved_n_workers() == cores


# --------------------------------------------------------------------------- local


def test_connect_default_gives_local_worker_processes_without_dashboard(monkeypatch):
    # the default is one worker per usable core: cap it so big CI machines stay fast
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr("bigseg.engine.config.usable_cores", lambda: min(cores, 2))
    with connect(reuse_current=False) as client:
        cfg_workers = LocalClusterConfig().resolved_n_workers()
        client.wait_for_workers(cfg_workers, timeout=30)
        pids = client.run(os.getpid)
        assert len(pids) == cfg_workers
        assert os.getpid() not in pids.values()
        assert len(set(pids.values())) == len(pids)  # one process per worker
        assert all(a.startswith("tcp://127.0.0.1:") for a in pids)
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        info = cluster_info(client)
        assert info["dashboard_link"] is None
        assert all(w["nthreads"] == 1 for w in info["workers"])
        assert client.submit(sum, [1, 2, 3]).result() == 6
    assert client.status == "closed"


def test_cluster_info_keys(local_client):
    info = cluster_info(local_client)
    assert INFO_KEYS <= info.keys()
    assert info["n_workers"] == 2 == len(info["workers"])
    assert info["total_threads"] == 2
    assert info["total_memory"] == sum(w["memory_limit"] for w in info["workers"]) > 0
    for w in info["workers"]:
        assert WORKER_KEYS <= w.keys()
        assert w["address"].startswith("tcp://127.0.0.1:")
        assert isinstance(w["gpus"], int) and w["gpus"] >= 0
    text = format_cluster_info(info)
    assert info["scheduler_address"] in text and "workers    2" in text


def _worker_memory_settings():
    import os

    import pyarrow as pa
    from numpy._core.multiarray import _set_madvise_hugepage

    advised = _set_madvise_hugepage(False)  # returns the setting NumPy started with
    _set_madvise_hugepage(advised)
    return (
        os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        advised,
        pa.default_memory_pool().backend_name,
    )


def test_local_workers_keep_large_arrays_off_fresh_pages(local_client):
    """Dask sets a trim threshold for its workers; the local cluster adds an mmap
    threshold so that glibc does not map (and page-fault in) every array above 128 KiB,
    NumPy in the workers does not advise huge pages and Arrow allocates with the system
    allocator."""
    import dask
    import pyarrow as pa

    from bigseg.engine._workerenv import WORKER_MMAP_THRESHOLD

    trim = dask.config.get("distributed.nanny.pre-spawn-environ").get("MALLOC_TRIM_THRESHOLD_")
    pool = pa.system_memory_pool().backend_name
    got = set(local_client.run(_worker_memory_settings).values())
    assert got == {(str(WORKER_MMAP_THRESHOLD), None if trim is None else str(trim), False, pool)}


def test_a_configured_worker_variable_wins():
    import dask

    from bigseg.engine._workerenv import worker_environ

    key = "distributed.nanny.pre-spawn-environ."
    assert worker_environ() == {
        key + "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
        key + "NUMPY_MADVISE_HUGEPAGE": "0",
        key + "ARROW_DEFAULT_MEMORY_POOL": "system",
    }
    with dask.config.set({key + "MALLOC_MMAP_THRESHOLD_": 1 << 20}):
        assert key + "MALLOC_MMAP_THRESHOLD_" not in worker_environ()


def test_connect_without_config_reuses_the_current_client(local_client):
    with local_client.as_current(), connect() as client:
        assert client is local_client
    assert local_client.status == "running"  # not closed by the nested connect


# --------------------------------------------------------------------------- external


def test_connect_to_external_scheduler_leaves_it_running(external_cluster):
    with connect(external_cluster.config_path) as client:
        info = cluster_info(client)
        assert info["scheduler_address"] == external_cluster.address
        assert info["n_workers"] == 2
        assert client.submit(lambda x: x * 2, 21).result(timeout=30) == 42
    assert client.status == "closed"
    # the scheduler and workers are not ours: a second connect still sees them
    with connect(external_cluster.config_path) as client:
        client.wait_for_workers(2, timeout=10)
        assert sum(client.gather(client.map(lambda x: x + 1, range(10)))) == 55


def test_cluster_check_on_external_cluster(external_cluster):
    info = cluster_check(external_cluster.config_path, min_workers=2, timeout=30)
    assert info["type"] == "scheduler" and info["n_workers"] == 2
    assert info["roundtrip_s"] >= 0
    assert "test task  ok" in format_cluster_info(info)


def test_connect_to_dead_scheduler_fails_within_timeout():
    with socket.socket() as s:  # a free port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {"type": "scheduler", "address": f"tcp://127.0.0.1:{port}", "timeout": 2}
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=f"127.0.0.1:{port}"):
        with connect(cfg):
            pass
    assert time.monotonic() - t0 < 15


def test_missing_tls_file_is_a_config_error(tmp_path):
    p = _write(tmp_path, "type: scheduler\naddress: tls://127.0.0.1:1\ntls:\n  ca_file: ca.pem\n")
    with pytest.raises(ConfigError, match="tls.ca_file: file not found"):
        with connect(p):
            pass


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize(
    "name, module, extra",
    [
        ("slurm.yaml", "dask_jobqueue", "slurm"),
        ("kubernetes.yaml", "dask_kubernetes", "kubernetes"),
        ("local-gpu.yaml", "dask_cuda", "gpu"),
        ("ssh.yaml", "asyncssh", "ssh"),
    ],
)
def test_missing_backend_names_the_pip_extra(name, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with pytest.raises(ClusterError) as e:
        with connect(CONFIG_DIR / name):
            pass
    assert f"pip install 'bigseg[{extra}]'" in str(e.value)
    assert module in str(e.value)
