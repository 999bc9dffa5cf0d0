"""XGBoost's collective tracker for ``xgboost.dask``, run in a child process of the
driver (:func:`tracker_in_child`), so a tracker that aborts when a worker dies mid-boosting
takes only the child with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys

from bigseg.errors import ClusterError

log = logging.getLogger(__name__)

#: seconds a tracker child may take to start (import xgboost, bind its port)
TRACKER_START_TIMEOUT_S = 60.0

#: XGBoost's collective tracker, run in a child process of the driver
#: (:func:`tracker_in_child`): it prints the workers' collective arguments as one JSON
#: line, sends the rest of its console output to stderr, and waits for the training to
#: end; it also ends when its stdin closes (the driver finished or died), so no tracker
#: outlives its training.
_TRACKER_CHILD = r"""
import json, os, sys, threading
sys.modules["sklearn"] = None  # xgboost works without it; importing it would take ~2 s
from xgboost.tracker import RabitTracker

n_workers, host, timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tracker = RabitTracker(n_workers=n_workers, host_ip=host, port=0, sortby="task",
                       timeout=timeout)
tracker.start()
sys.stdout.write(json.dumps(tracker.worker_args()) + "\n")
sys.stdout.flush()
os.dup2(2, 1)

def driver_gone():
    sys.stdin.buffer.read()
    os._exit(0)

threading.Thread(target=driver_gone, daemon=True).start()
tracker.wait_for()
os._exit(0)
"""


def _tracker_host(client) -> str | None:
    """Host for a tracker in a child of this process: the scheduler's when the cluster
    is on this machine (a loopback scheduler address, or a LocalCluster this process
    started); None for a remote cluster, whose workers may not reach this machine."""
    from distributed import LocalCluster
    from distributed.comm import get_address_host

    try:
        host = get_address_host(client.scheduler.address).strip("[]")
    except Exception:  # noqa: BLE001 - inproc or unusual addresses: keep XGBoost's way
        return None
    if host in ("127.0.0.1", "localhost", "::1") or isinstance(
        getattr(client, "cluster", None), LocalCluster
    ):
        return host
    return None


@contextlib.contextmanager
def tracker_in_child(client):
    """Run XGBoost's collective tracker in a child process of the driver, for clusters
    on this machine.

    xgboost.dask starts the tracker inside the scheduler process, which for a local
    cluster is the driver itself. When a worker dies mid-boosting, the tracker's C++
    thread can fail on the dead worker's socket ("Broken pipe") with an exception that
    escapes the thread: ``std::terminate`` then aborts (SIGABRT) the whole driver, and
    with it the scheduler, the other workers and the run. In a child process such an
    abort only ends the child: the surviving workers fail in their communicator (or at
    its timeout), :func:`bigseg.predict.xgb.train_dask` notices the lost worker and
    trains again with a new tracker. xgboost.dask (3.x) has no public hook for a tracker of the
    caller's, so its ``_get_rabit_args`` is replaced for the duration of the call; with
    another xgboost layout, or a remote cluster, XGBoost's own tracker is used."""
    from xgboost import dask as dxgb
    from xgboost.collective import Config as CollConfig

    original = getattr(dxgb, "_get_rabit_args", None)
    host = _tracker_host(client)
    if original is None or host is None:
        yield
        return
    children: list[subprocess.Popen] = []

    def start(n_workers: int, timeout: int) -> dict:
        proc = subprocess.Popen(
            [sys.executable, "-c", _TRACKER_CHILD, str(n_workers), host, str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        children.append(proc)
        line = _read_line(proc, TRACKER_START_TIMEOUT_S)
        if not line:
            raise ClusterError(
                f"the XGBoost tracker process did not start (exit code "
                f"{proc.poll()}); see its messages above on stderr"
            )
        return json.loads(line)

    async def get_rabit_args(client, n_workers, dconfig=None, coll_cfg=None):
        coll_cfg = CollConfig() if coll_cfg is None else coll_cfg
        timeout = 0 if coll_cfg.tracker_timeout is None else int(coll_cfg.tracker_timeout)
        env = await asyncio.get_running_loop().run_in_executor(None, start, n_workers, timeout)
        return coll_cfg.get_comm_config(env)

    dxgb._get_rabit_args = get_rabit_args
    try:
        yield
    finally:
        dxgb._get_rabit_args = original
        for proc in children:
            _stop_tracker(proc)


def _read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    """First stdout line of ``proc`` (b"" if it exits first or ``timeout`` passes)."""
    import threading

    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        proc.kill()
        return b""
    return got[0]


def _stop_tracker(proc: subprocess.Popen) -> None:
    """Close the tracker child's stdin (it exits at once if still waiting) and reap it;
    an abort of the child (a worker died mid-training) is logged, not raised."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    with contextlib.suppress(OSError):
        proc.stdout.close()
    if rc not in (0, None):
        log.warning(
            "the XGBoost tracker process exited with code %s (a worker left during training?)", rc
        )
