"""Shared fixtures: a real external Dask cluster (scheduler + 2 worker processes started
with the ``dask`` CLI) and a local 2-worker client from :func:`bigseg.engine.connect`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DASK_CLI = Path(sys.executable).parent / "dask"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


@dataclass
class ExternalCluster:
    """A scheduler and workers running as separate processes, not owned by bigseg."""

    #: scheduler address, e.g. ``tcp://127.0.0.1:41234``
    address: str
    #: ``type: scheduler`` cluster config pointing at ``address``
    config_path: Path
    scheduler_file: Path
    log_dir: Path
    n_workers: int
    processes: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def logs(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of every process log, for failure messages."""
        out = []
        for p in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {p.name} ---\n{p.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        # own session: teardown can signal the nanny AND its worker child together
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process group, wait up to STOP_GRACE_S, then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        try:  # the group may outlive its leader (a nanny's worker child)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(timeout=5)


def _read_scheduler_file(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None  # not written yet, or half written


def _wait_for(cluster: ExternalCluster, what: str, check, deadline: float):
    while True:
        value = check()
        if value:
            return value
        dead = [p.args for p in cluster.processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            reason = (
                f"process exited: {dead[0]}" if dead else f"timed out after {START_TIMEOUT_S:g} s"
            )
            pytest.fail(f"external Dask cluster: waiting for {what}: {reason}\n{cluster.logs()}")
        time.sleep(0.2)


#: a worker in its own mount namespace with an empty tmpfs over the hidden directory $1 (the
#: session's pytest temporary root, which holds every test's data and output): it cannot
#: open the client's folders there, and its working and temporary directory ($1/worker,
#: inside its own tmpfs) are its own. Not all of /tmp: the checkout and its .venv may be there.
ISOLATED_WORKER = (
    'mount -t tmpfs -o size=2g tmpfs "$1" && mkdir -p "$1/worker" && cd "$1/worker" && '
    'export TMPDIR="$1/worker" && shift && exec "$@"'
)


def _worker_command(
    cluster: ExternalCluster, hide: Path | None, extra: Sequence[str] = ()
) -> list[str]:
    base = "worker --host 127.0.0.1 --nworkers 1 --nthreads 1 --no-dashboard --memory-limit 2GiB"
    args = [*base.split(), *extra]
    if hide is None:
        return [str(DASK_CLI), *args, "--scheduler-file", str(cluster.scheduler_file)]
    # the scheduler file is in the hidden directory: give the address
    return [
        "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", ISOLATED_WORKER, "sh",
        str(hide), str(DASK_CLI), *args, "--local-directory", str(hide / "worker"),
        cluster.address,
    ]  # fmt: skip


def start_external_cluster(
    root: Path,
    n_workers: int = 2,
    hide: Path | None = None,
    extra_workers: Sequence[Sequence[str]] = (),
) -> ExternalCluster:
    """Start ``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes
    on 127.0.0.1, wait until all workers are connected, and write a scheduler config.
    ``hide``: each worker in its own mount namespace that hides this directory
    (:data:`ISOLATED_WORKER`), as on a cluster whose workers share no disk with the client.
    ``extra_workers``: one more worker for each entry, with these extra ``dask worker``
    arguments (e.g. ``["--preload", "patch.py"]``); logged to ``extra-worker-<i>.log``."""
    from distributed import Client

    if not DASK_CLI.exists():
        pytest.fail(f"the dask CLI is missing: {DASK_CLI} (pip install 'dask[distributed]')")
    root.mkdir(parents=True, exist_ok=True)
    sched_file = root / "scheduler.json"
    cluster = ExternalCluster(
        address="",
        config_path=root / "scheduler.yaml",
        scheduler_file=sched_file,
        log_dir=root,
        n_workers=n_workers + len(extra_workers),
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        scheduler_args = "scheduler --host 127.0.0.1 --port 0 --no-dashboard".split()
        cluster.processes.append(
            _spawn(
                [str(DASK_CLI), *scheduler_args, "--scheduler-file", str(sched_file)],
                root / "scheduler.log",
            )
        )
        cluster.address = _wait_for(
            cluster, "the scheduler file", lambda: _read_scheduler_file(sched_file), deadline
        )
        for i in range(n_workers):
            cluster.processes.append(
                _spawn(_worker_command(cluster, hide), root / f"worker-{i}.log")
            )
        for i, extra in enumerate(extra_workers):
            cluster.processes.append(
                _spawn(_worker_command(cluster, hide, extra), root / f"extra-worker-{i}.log")
            )
        n_workers = cluster.n_workers
        with Client(cluster.address, timeout=30, set_as_default=False) as probe:
            _wait_for(
                cluster,
                f"{n_workers} workers to connect",
                lambda: len(probe.scheduler_info(n_workers=-1)["workers"]) >= n_workers,
                deadline,
            )
        cluster.config_path.write_text(
            f"# written by tests/conftest.py\ntype: scheduler\naddress: {cluster.address}\ntimeout: 10\n"
        )
        return cluster
    except BaseException:
        _stop(cluster.processes)
        raise


@pytest.fixture(scope="session")
def external_cluster(tmp_path_factory):
    """A real external cluster: ``dask scheduler`` + 2 ``dask worker`` processes.

    Yields an :class:`ExternalCluster` with ``.address`` and ``.config_path`` (a
    ``type: scheduler`` cluster config). Terminated at the end of the session.
    """
    cluster = start_external_cluster(tmp_path_factory.mktemp("external_cluster"))
    try:
        yield cluster
    finally:
        _stop(cluster.processes)


@pytest.fixture(scope="session")
def local_client():
    """A client on a local cluster of 2 worker processes (``connect(n_workers=2)``), shared by
    the whole test session: starting one costs ~4 s. A test that kills or reconfigures
    workers starts a cluster of its own (``tests/test_faults.py``)."""
    from bigseg.engine import connect

    with connect(n_workers=2, reuse_current=False) as client:
        yield client


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """3,000 generated customers (seed 7), every table."""
    from bigseg.synth import generate

    d = tmp_path_factory.mktemp("synth")
    generate(3000, d, seed=7, chunk_size=1000)
    return d


@pytest.fixture(scope="session")
def small_run(synth_data, tmp_path_factory, local_client):
    """One whole pipeline run on ``synth_data``, shared by the tests that read its outputs:
    ``(config, metrics)``; its config is ``<output>/../job.yaml``. A test that writes to an
    output copies it first (``tests/test_operations.py``)."""
    from test_pipeline import write_config

    from bigseg.backend import resolve
    from bigseg.pipeline import run_stages

    d = tmp_path_factory.mktemp("small_run")
    cfg = write_config(d / "job.yaml", synth_data, d / "out")
    return cfg, run_stages(cfg, local_client, resolve("cpu"))


@pytest.fixture
def copied_run(small_run, tmp_path):
    """A private copy of the session's small run, to write into: ``(config path, config,
    metrics)``. A commit lists paths relative to the output, so the copy is a valid output."""
    import shutil

    import yaml

    from bigseg.config import load_run_config

    cfg0, metrics = small_run
    shutil.copytree(cfg0.output_dir, tmp_path / "out")
    doc = yaml.safe_load((cfg0.output_dir.parent / "job.yaml").read_text())
    doc["output"] = str(tmp_path / "out")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "job.yaml", load_run_config(tmp_path / "job.yaml"), metrics


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's standalone S3 server, a subprocess on 127.0.0.1 and a free port, for the
    whole session (``bigseg/testing/s3server.py``); yields its endpoint URL."""
    from bigseg.testing import s3server

    server = s3server.start(tmp_path_factory.mktemp("moto"))
    try:
        yield server.endpoint
    finally:
        s3server.stop(server)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the test server, with the AWS environment (dummy credentials,
    ``AWS_ENDPOINT_URL``) set for this test: an :class:`s3server.S3Bucket`."""
    from bigseg.testing import s3server

    for name in s3server.CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3server.environment(s3_server).items():
        monkeypatch.setenv(name, value)
    return s3server.create_bucket(s3_server)
