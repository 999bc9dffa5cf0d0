"""Fault injection: scheduled batch scoring you can trust.

Real faults on real processes, at small sizes: a worker process SIGKILLed while scoring
and while XGBoost trains, the whole job SIGKILLed while it writes, a task that always
crashes its worker. The job either completes with the scores of an undisturbed run, or
fails with an error that says where, within a bounded time, and never publishes a
partial output. (An output inside an input is refused before anything is deleted:
``tests/test_store.py::test_output_inside_an_input_directory_is_refused``.)

Every kill targets a PID this module started itself (``client.run(os.getpid)`` on its
own cluster, or the process group of its own CLI subprocess).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import WorkerPlugin
from test_pipeline import checksum, read_scores, write_config

from bigseg.backend import resolve
from bigseg.engine import connect
from bigseg.errors import ClusterError
from bigseg.io import commits
from bigseg.io.lease import LEASES, current
from bigseg.io.storage import local
from bigseg.pipeline import run_stages
from bigseg.testing.outputs import committed, files
from bigseg.testing.outputs import metrics as read_metrics

BIGSEG = [sys.executable, "-m", "bigseg.cli"]
CPU = resolve("cpu")
#: how long a stage may take with a fault before the test calls it a hang
HANG_LIMIT_S = 120.0


@pytest.fixture(scope="module")
def client():
    """A cluster of this module's own: 2 worker processes under nannies (a SIGKILLed
    worker is restarted), so killing their PIDs touches nobody else's processes."""
    with connect(n_workers=2, reuse_current=False) as c:
        yield c


@pytest.fixture(scope="module")
def trained(tmp_path_factory, client):
    """ingest..train once, then one undisturbed score run: (config, scores checksum,
    seconds the undisturbed score stage took)."""
    from bigseg.synth import generate

    d = tmp_path_factory.mktemp("faults")
    generate(3000, d, seed=7, chunk_size=1000)
    cfg = write_config(
        d / "job.yaml", d, d / "out", prediction={"targets": ["churn", "value"], "n_estimators": 30}
    )
    run_stages(cfg, client, CPU, stages=("ingest", "features", "segment", "train"))
    t0 = time.perf_counter()
    run_stages(cfg, client, CPU, stages=("score",))
    took = time.perf_counter() - t0
    return cfg, checksum(read_scores(cfg.output_dir)), took


def worker_pids(client) -> dict[str, int]:
    """The PIDs of the workers that answer. A worker SIGKILLed moments ago may still be
    registered with the scheduler; it cannot answer, so it is left out rather than
    failing the broadcast."""
    return client.run(os.getpid, on_error="ignore")


def hash_committed(out: Path, prefixes: tuple[str, ...] = ("",)) -> dict:
    """The latest commit (number, datasets) and the SHA-256 of every file it lists for
    the datasets whose names start with one of ``prefixes``."""
    o = committed(out)
    names = [n for n in o.names() if n.startswith(prefixes)]
    return {
        "commit": (o.parent, o.base),
        **{
            str(p): hashlib.sha256(p.read_bytes()).hexdigest() for n in names for p in files(out, n)
        },
    }


def staged(out: Path) -> list[Path]:
    """Every entry of every run's staging (``runs/<run_id>/.staging/``)."""
    return sorted(out.glob(f"{commits.RUNS}/*/.staging/*"))


class Killer(threading.Thread):
    """Waits until a task whose key contains ``prefix`` runs, lets it run ``delay``
    seconds, then SIGKILLs the worker process running it (a PID of our own cluster)."""

    def __init__(self, client, prefix: str, delay: float, limit: float = HANG_LIMIT_S):
        super().__init__(daemon=True)
        self.client, self.prefix, self.delay, self.limit = client, prefix, delay, limit
        self.pid = self.killed_at = None

    def run(self):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.limit:
            busy = [
                a
                for a, keys in self.client.processing().items()
                if any(self.prefix in str(k) for k in keys)
            ]
            if busy:
                time.sleep(self.delay)
                self.pid = self.client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(self.pid, signal.SIGKILL)
                self.killed_at = time.perf_counter()
                return
            time.sleep(0.002)


def wait_for_workers(client, n: int = 2, timeout: float = 60) -> None:
    client.wait_for_workers(n, timeout=timeout)


# -- 1. a worker killed at a random moment during scoring ------------------------------
#: one trial per phase of the score stage: features, predictions saved per bucket
#: (phase 1, resumable), the final write of the scores (phase 2)
# one phase in the default suite, the others in `make test-slow`
PHASES = [
    "stage_scores",
    *(pytest.param(p, marks=pytest.mark.slow) for p in ("bucket_frames", "write_scores")),
]


@pytest.mark.parametrize("phase", PHASES)
def test_worker_killed_during_scoring_gives_the_same_scores(trained, client, phase):
    cfg, undisturbed, took = trained
    wait_for_workers(client)
    delay = float(np.random.default_rng().uniform(0, 0.05))  # a random moment in the task
    killer = Killer(client, phase, delay)
    t0 = time.perf_counter()
    killer.start()
    run_stages(cfg, client, CPU, stages=("score",))
    done = time.perf_counter()
    killer.join(timeout=5)
    assert killer.killed_at is not None and killer.killed_at < done, (
        f"no {phase} task was killed while scoring ({done - t0:.2f}s): no fault injected"
    )
    assert killer.pid not in worker_pids(client).values()  # it did die
    wait_for_workers(client)  # and the nanny replaced it
    assert checksum(read_scores(cfg.output_dir)) == undisturbed
    print(
        f"{phase}: killed pid {killer.pid} {killer.killed_at - t0:.2f}s into scoring "
        f"({delay * 1000:.0f} ms after such a task started), which took "
        f"{done - t0:.2f}s (undisturbed {took:.2f}s)"
    )


# -- 2. the whole job SIGKILLed while it writes -----------------------------------------
@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_job_killed_during_the_write_leaves_the_published_scores_intact(trained, tmp_path):
    cfg, undisturbed, _ = trained
    out = cfg.output_dir
    cluster = tmp_path / "two.yaml"
    cluster.write_text("type: local\nn_workers: 2\n")
    cmd = [
        *BIGSEG,
        "score",
        str(out.parent / "job.yaml"),
        "--cluster",
        str(cluster),
        "--device",
        "cpu",
        "--quiet",
    ]
    published = hash_committed(out, ("scores/", "audiences"))
    assert len(published) > 1 and committed(out).scores_dates(), "nothing committed before"
    log = tmp_path / "killed.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )  # its own group: CLI + cluster
    try:
        deadline = time.monotonic() + HANG_LIMIT_S
        caught = None
        while caught is None:
            caught = next(
                (p for p in out.glob("runs/*/.staging/as_of=*/part-*") if p.is_file()), None
            )
            if caught is None:
                assert proc.poll() is None, (
                    f"exited {proc.returncode} before writing:\n{log.read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "no scores written within the limit"
                time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its scheduler and its workers
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)  # reaped: its pid is gone, so its lease is taken over at once
    # killed in the write: the staging dir was never moved into place, nothing committed
    assert caught.parent.is_dir(), "the kill came after the publish"
    assert hash_committed(out, ("scores/", "audiences")) == published, "changed by a killed job"
    killed_run = caught.parents[2]
    assert not any(
        (out / f["path"]).is_relative_to(killed_run)
        for e in committed(out).base.values()
        for f in e["files"]
    )
    n_staged = len(list(caught.parent.iterdir()))
    # a re-run completes and reproduces the same scores, resuming every bucket (the kill
    # came in phase 2) and removing the dead run's staging
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_LIMIT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    assert checksum(read_scores(out)) == undisturbed
    # the same inputs on the same commit: the same run id, the killed run's folder reused
    assert out / commits.RUNS / commits.latest(local, out)[1]["run_id"] == killed_run
    assert not caught.parent.exists()
    assert staged(out) == []
    resume = read_metrics(out)["score_resume"]
    print(f"killed with {n_staged} part file(s) staged; the re-run resumed {resume}")


# -- 3. a worker killed while XGBoost trains -------------------------------------------
def training_tasks(client) -> dict[str, str]:
    """``{key: worker address}`` of the XGBoost training tasks running now
    (:func:`bigseg.predict.xgb.train_task`, named by the kind of model they train)."""
    return {
        str(k): addr
        for addr, keys in client.processing().items()
        for k in keys
        if str(k).startswith(("train_global-", "train_segment-"))
    }


def train_config(trained, tmp_path, name: str):
    """A copy of the trained output (store, segmenter), to train churn alone on it with
    enough boosting rounds for a kill to land inside them."""
    import shutil

    cfg0 = trained[0]
    out = tmp_path / name
    # not the lease's records (another output's), nor staging
    shutil.copytree(
        cfg0.output_dir,
        out,
        ignore=lambda d, names: (
            [n for n in names if Path(d, n) == cfg0.output_dir / LEASES]
            + [n for n in names if n == ".staging"]
        ),
    )
    return write_config(
        tmp_path / f"{name}.yaml",
        cfg0.output_dir.parent,
        out,
        prediction={
            "targets": ["churn"],
            "n_estimators": 600,
            "early_stopping_rounds": 600,
            "learning_rate": 0.01,
        },
    )


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_worker_killed_during_training_gives_the_same_model(trained, client, tmp_path):
    """Up to 5M training rows (every test here) each model trains in one Dask task. When
    the worker running one dies, Dask runs the task again on a worker left (recomputing
    the lost inputs) and the model is bit-identical to an undisturbed run's. The kill
    hits the second training task seen (the backtest's global model is the first)."""
    wait_for_workers(client)
    cfg = train_config(trained, tmp_path, "killed")
    result: dict = {}

    def train():
        try:
            result["metrics"] = run_stages(cfg, client, CPU, stages=("features", "train"))
        except BaseException as e:  # noqa: BLE001 - re-raised below
            result["error"] = e

    t0 = time.perf_counter()
    th = threading.Thread(target=train, daemon=True)
    th.start()
    seen: list[str] = []
    victim = killed = None
    while victim is None and th.is_alive() and time.perf_counter() - t0 < HANG_LIMIT_S:
        running = training_tasks(client)
        seen += [k for k in running if k not in seen]
        if len(seen) >= 2 and seen[1] in running:  # a second model is training
            time.sleep(0.2)  # into its boosting rounds
            addr = running[seen[1]]
            victim = client.run(os.getpid, workers=[addr])[addr]
            os.kill(victim, signal.SIGKILL)
            killed = time.perf_counter()
        time.sleep(0.01)
    assert victim is not None, f"no second training task seen (seen {seen}; {result})"
    th.join(max(1.0, HANG_LIMIT_S - (time.perf_counter() - t0)))
    assert not th.is_alive(), (
        f"train still running {time.perf_counter() - killed:.0f}s after a worker was killed"
    )
    if "error" in result:
        raise result["error"]
    info = result["metrics"]["churn"]["training"]["global"]
    assert info["mode"] == "task", info
    print(
        f"killed pid {victim} {killed - t0:.1f}s into the stage; train done "
        f"{time.perf_counter() - killed:.1f}s later"
    )
    wait_for_workers(client)
    ref = train_config(trained, tmp_path, "undisturbed")
    run_stages(ref, client, CPU, stages=("features", "train"))
    from bigseg.registry import load_version

    (a, _), (b, _) = (load_version(committed(c.output_dir)) for c in (cfg, ref))
    assert (a / "churn.ubj").read_bytes() == (b / "churn.ubj").read_bytes()


DISTRIBUTED_TRAIN = """
import json, sys
import numpy as np

def part(k):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(3000, 20)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=3000) > 0).astype(np.float32)
    return X[:2500], y[:2500], X[2500:], y[2500:]

if __name__ == "__main__":
    from bigseg.engine import connect
    from bigseg.predict import xgb
    xgb.COLLECTIVE_TIMEOUT_S = int(sys.argv[1])
    params = {"objective": "binary:logistic", "eval_metric": "logloss",
              "tree_method": "hist", "max_depth": 4, "eta": 0.01, "seed": 0}
    with connect(n_workers=2, reuse_current=False) as c:
        parts = [c.submit(part, k, pure=False) for k in range(8)]
        for _ in range(int(sys.argv[2])):  # the killed training, then one more (as in train)
            try:  # single_worker_rows=0: both workers train together
                print(json.dumps(xgb.train_dask(c, parts, 20, params, 1500, 1500, 0)[1]))
            except Exception as e:
                print(json.dumps({"error": type(e).__name__, "message": str(e)}))
            sys.stdout.flush()
"""


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_worker_killed_during_distributed_training_never_hangs(tmp_path):
    """Above 5M rows every worker trains its own buckets together with the others. When
    one dies, its peer fails in its communicator at once, or (seen with other timings)
    blocks in a collective operation until ``COLLECTIVE_TIMEOUT_S`` (here 5 s); bigseg
    then trains again on the workers left, or fails with a ClusterError, and the next
    training works. Run in a subprocess with its own cluster. XGBoost's tracker can
    abort its process when a worker dies (a C++ exception escaping a thread: "terminate
    called after throwing an instance of 'dmlc::Error' ... Broken pipe"); xgboost.dask
    runs it in the scheduler process, which for a local cluster is the driver, so bigseg
    runs it in a child process of the driver instead (bigseg.predict.tracker
    ``tracker_in_child``): the driver must survive whatever the tracker does."""
    import psutil

    rank = 1  # the worker killed: the one XGBoost ranked 1
    script = tmp_path / "train.py"
    script.write_text(DISTRIBUTED_TRAIN)
    log = tmp_path / "train.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(script), "5", "2"],
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        t0 = time.monotonic()
        ranks: dict[int, int] = {}  # rank -> port of the worker holding it
        while len(ranks) < 2:
            for m in re.finditer(r":(\d+) got rank (\d)", log.read_text(errors="replace")):
                ranks[int(m[2])] = int(m[1])
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - t0 < HANG_LIMIT_S, "training never started"
            time.sleep(0.02)
        time.sleep(0.3)  # into the boosting rounds
        (victim,) = [
            p.pid
            for p in psutil.Process(proc.pid).children(recursive=True)
            if any(
                c.laddr.port == ranks[rank] and c.status == psutil.CONN_LISTEN
                for c in p.net_connections("tcp")
            )
        ]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        try:
            rc = proc.wait(timeout=HANG_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"still training {HANG_LIMIT_S:.0f}s after a worker was killed:\n"
                f"{log.read_text()[-3000:]}"
            )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    took = time.monotonic() - killed
    results = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    print(f"distributed, rank {rank} killed: rc {rc}, {took:.1f}s after the kill: {results}")
    assert rc != -signal.SIGABRT, f"the driver aborted {took:.1f}s after the kill:\n{text[-3000:]}"
    assert rc == 0 and len(results) == 2, text[-3000:]
    first, then = results
    if "error" in first:
        assert first["error"] == "ClusterError" and "during training" in first["message"], first
    else:
        assert first["mode"] == "distributed" and first["worker_loss_retries"] == 1, first
    assert then.get("worker_loss_retries") == 0, then  # the cluster is usable afterwards


# -- 4. a task that always crashes its worker ------------------------------------------
class CrashOnBucket(WorkerPlugin):
    """Worker plugin: ``bigseg.predict.scoring.write_scores`` exits the worker process (as the OOM
    killer or a segfault would) when it writes bucket ``bucket``; set up again on every
    restarted worker."""

    def __init__(self, bucket: int):
        self.bucket = bucket

    def setup(self, worker):
        import bigseg.predict.scoring as scoring

        real, name = scoring.write_scores, f"part-{self.bucket:05d}.parquet"

        def write_scores(*args, **kwargs):
            if any(isinstance(a, str | os.PathLike) and str(a).endswith(name) for a in args):
                os._exit(1)
            return real(*args, **kwargs)

        scoring.write_scores = write_scores


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_task_that_always_kills_its_worker_fails_cleanly_naming_it(trained, tmp_path):
    cfg, _, _ = trained
    out = cfg.output_dir
    last = read_metrics(out)["as_of"]
    as_of = dt.date.fromisoformat(last) - dt.timedelta(days=30)  # nothing published there
    assert str(as_of) not in committed(out).scores_dates()
    before = hash_committed(out)
    # Dask gives up on a task after it killed allowed-failures + 1 workers (default 3).
    # One task at a time per worker (saturation 1.0; the default lets a 1-thread worker
    # hold 2): a task queued on the worker when the culprit kills it would count that
    # death too, fail as well, and could be reported first.
    with (
        dask.config.set(
            {
                "distributed.scheduler.allowed-failures": 1,
                "distributed.scheduler.worker-saturation": 1.0,
            }
        ),
        connect(n_workers=2, reuse_current=False) as c,
    ):
        c.register_plugin(CrashOnBucket(3), name="crash-on-bucket-3")
        t0 = time.perf_counter()
        with pytest.raises(ClusterError) as err:
            run_stages(cfg.model_copy(update={"as_of": as_of}), c, CPU, stages=("score",))
        took = time.perf_counter() - t0
    msg = str(err.value)
    print(f"failed after {took:.1f}s: {msg}")
    n = read_metrics(out)["n_buckets"]  # a small store: 4 buckets (auto_buckets)
    assert msg.startswith(f"write scores: task 3 of {n} ") and "2 times" in msg, msg
    assert str(as_of) not in committed(out).scores_dates()
    assert hash_committed(out) == before  # nothing committed, no committed file changed
    assert not list(out.glob(f"runs/*/.staging/as_of={as_of}-*"))  # staging removed
    assert not list(out.glob(f"runs/*/scores/as_of={as_of}"))
    assert current(local, out)[1]["released"]  # the lease was given back
