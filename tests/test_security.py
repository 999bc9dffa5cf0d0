"""Cluster security: loopback-only listeners and no dashboard by default; a ``type:
scheduler`` config reaches a TLS-only scheduler with certificates from files, and clients
without a valid certificate are refused (an error, not a hang)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import DASK_CLI, ExternalCluster, _read_scheduler_file, _spawn, _stop, _wait_for
from distributed import Client

from bigseg.engine import cluster_check, cluster_info, connect, load_cluster_config
from bigseg.errors import ClusterError, ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "cluster_configs"
#: a refused connection must fail within this many seconds after its timeout
REFUSE_SLACK_S = 15.0

_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


# --------------------------------------------------------------------------- certificates


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed:\n{r.stderr}"


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=bigseg test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _make_cert(d: Path, name: str, ca: str) -> None:
    """``name.pem`` + ``name-key.pem`` signed by the CA ``ca`` (for server and client use)."""
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", f"{name}.pem",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A throwaway CA with a node and a client certificate, plus a second (untrusted) CA
    with its own client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    (d / "ext.cnf").write_text(_EXT)
    _make_ca(d, "ca")
    _make_cert(d, "node", "ca")
    _make_cert(d, "client", "ca")
    _make_ca(d, "rogue-ca")
    _make_cert(d, "rogue-client", "rogue-ca")
    return d


# --------------------------------------------------------------------------- TLS cluster


@pytest.fixture(scope="module")
def tls_cluster(certs, tmp_path_factory):
    """``dask scheduler`` + 1 ``dask worker`` on 127.0.0.1 speaking only TLS (mutual:
    every peer needs a certificate signed by ``ca.pem``; with TLS files the CLI sets
    ``require_encryption``). Always terminated."""
    root = tmp_path_factory.mktemp("tls_cluster")
    sched_file = root / "scheduler.json"
    tls = [
        "--tls-ca-file", str(certs / "ca.pem"),
        "--tls-cert", str(certs / "node.pem"),
        "--tls-key", str(certs / "node-key.pem"),
    ]  # fmt: skip
    common = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    cluster = ExternalCluster(
        address="", config_path=root / "unused.yaml", scheduler_file=sched_file,
        log_dir=root, n_workers=1,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        cluster.processes.append(
            _spawn(
                [str(DASK_CLI), "scheduler", "--protocol", "tls", "--port", "0", *common, *tls,
                 "--scheduler-file", str(sched_file)],
                root / "scheduler.log",
            )
        )  # fmt: skip
        cluster.address = _wait_for(
            cluster, "the scheduler file", lambda: _read_scheduler_file(sched_file), deadline
        )
        cluster.processes.append(
            _spawn(
                [str(DASK_CLI), "worker", "--nworkers", "1", "--nthreads", "1",
                 "--memory-limit", "1GiB", *common, *tls, "--scheduler-file", str(sched_file)],
                root / "worker-0.log",
            )
        )  # fmt: skip
        config = {
            "type": "scheduler",
            "address": cluster.address,
            "timeout": 10,
            "tls": {
                "ca_file": str(certs / "ca.pem"),
                "cert": str(certs / "client.pem"),
                "key": str(certs / "client-key.pem"),
            },
        }
        with connect(config) as probe:
            _wait_for(
                cluster,
                "1 worker to connect",
                lambda: len(probe.scheduler_info(n_workers=-1)["workers"]) >= 1,
                deadline,
            )
        yield cluster
    finally:
        _stop(cluster.processes)


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def test_scheduler_config_with_tls_files_connects_and_computes(tls_cluster, certs, tmp_path):
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    # the shape of cluster_configs/scheduler.yaml, paths relative to the config file
    (tmp_path / "certs").symlink_to(certs, target_is_directory=True)
    cfg_path = tmp_path / "scheduler.yaml"
    cfg_path.write_text(
        f"type: scheduler\naddress: {tls_cluster.address}\ntimeout: 10\n"
        "tls:\n  ca_file: certs/ca.pem\n  cert: certs/client.pem\n  key: certs/client-key.pem\n"
        "  require_encryption: true\n"
    )
    with connect(cfg_path) as client:
        assert client.scheduler.address == tls_cluster.address
        info = cluster_info(client)
        assert info["n_workers"] == 1
        assert all(w["address"].startswith("tls://127.0.0.1:") for w in info["workers"])
        assert client.submit(lambda x: x * 2, 21, pure=False).result(timeout=30) == 42
    assert client.status == "closed"
    info = cluster_check(cfg_path, min_workers=1, timeout=30)  # `bigseg cluster-check FILE`
    assert info["roundtrip_s"] >= 0


def test_plain_tcp_client_is_refused(tls_cluster):
    host, port = _host_port(tls_cluster.address)
    t0 = time.monotonic()
    with pytest.raises((OSError, TimeoutError)):
        Client(f"tcp://{host}:{port}", timeout=3, set_as_default=False)
    assert time.monotonic() - t0 < 3 + REFUSE_SLACK_S
    # the same through bigseg: a clean ClusterError naming the address
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=f"{host}:{port}"):
        with connect({"type": "scheduler", "address": f"tcp://{host}:{port}", "timeout": 3}):
            pass
    assert time.monotonic() - t0 < 3 + REFUSE_SLACK_S


def test_tls_client_without_certificate_is_refused_by_the_scheduler(tls_cluster, certs):
    """It trusts the CA, so it could verify the scheduler, but presents no certificate."""
    host, port = _host_port(tls_cluster.address)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.check_hostname = False
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with ctx.wrap_socket(socket.create_connection((host, port), timeout=5)) as s:
            s.settimeout(5)
            s.sendall(b"\0" * 8)  # TLS 1.3: the refusal arrives with the first read
            if not s.recv(1):
                raise ConnectionResetError("closed by the scheduler")


def test_client_certificate_from_another_ca_is_refused(tls_cluster, certs):
    cfg = {
        "type": "scheduler",
        "address": tls_cluster.address,
        "timeout": 3,
        "tls": {
            "ca_file": str(certs / "ca.pem"),
            "cert": str(certs / "rogue-client.pem"),
            "key": str(certs / "rogue-client-key.pem"),
        },
    }
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="refused the TLS connection"):
        with connect(cfg):
            pass
    assert time.monotonic() - t0 < 3 + REFUSE_SLACK_S


def test_tls_block_without_client_certificate_is_a_config_error(certs):
    cfg = {
        "type": "scheduler",
        "address": "tls://127.0.0.1:1",
        "tls": {"ca_file": str(certs / "ca.pem")},
    }
    with pytest.raises(ConfigError, match=r"tls\.cert"):
        with connect(cfg):
            pass


# --------------------------------------------------------------------------- local defaults


def _listeners(pid: int) -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


def test_shipped_local_config_is_loopback_without_dashboard():
    cfg = load_cluster_config(CONFIG_DIR / "local.yaml")
    assert cfg.host == "127.0.0.1" and cfg.dashboard is False


def test_default_local_cluster_listens_only_on_loopback_and_has_no_dashboard():
    """Every socket the default cluster opens (scheduler, its HTTP server, nannies in this
    process; workers and their HTTP servers in theirs) is on a loopback address."""
    before = _listeners(os.getpid())
    with connect(n_workers=1, reuse_current=False) as client:
        client.wait_for_workers(1, timeout=30)
        worker_pids = client.run(os.getpid)
        opened = {("client process", *a) for a in _listeners(os.getpid()) - before}
        for pid in worker_pids.values():
            opened |= {(f"worker {pid}", *a) for a in _listeners(pid)}
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        info = client.scheduler_info()
        assert all(a.startswith("tcp://127.0.0.1:") for a in info["workers"])
        assert cluster_info(client)["dashboard_link"] is None
        http_port = info["services"]["dashboard"]  # the HTTP server: health and metrics only
        base = f"http://127.0.0.1:{http_port}"
        with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/status", timeout=5)
        assert e.value.code == 404  # no dashboard pages
    assert len(opened) >= 4, opened  # scheduler, its HTTP server, nanny, worker
    exposed = [o for o in opened if not ipaddress.ip_address(o[1]).is_loopback]
    assert not exposed, f"listeners not on loopback: {exposed}"
    assert 8787 not in {o[2] for o in opened}
