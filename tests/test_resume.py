"""Resumable scoring and clean staging: a score run SIGKILLed after some buckets are
finished resumes from them (a re-run of the same inputs gets the same run id, so the same
folder ``runs/<run_id>/``) and commits the scores of an undisturbed run; a score-only run
stages no model version; staging left by dead runs is removed by the next lease holder
(the feature cache's) or by ``gc`` (a dead run's own folder).

Every kill targets the process group of a CLI subprocess this module started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipeline import checksum, read_scores, write_config

from bigseg.backend import resolve
from bigseg.io import commits
from bigseg.io.commit import write_text_atomic
from bigseg.io.gc import collect
from bigseg.io.layout import Layout
from bigseg.io.lease import LEASES
from bigseg.io.resume import ResumableStage
from bigseg.io.storage import local
from bigseg.pipeline import run_stages
from bigseg.store.lock import begin, output_lease
from bigseg.testing.outputs import committed, files
from bigseg.testing.outputs import metrics as read_metrics

BIGSEG = [sys.executable, "-m", "bigseg.cli"]
CPU = resolve("cpu")
BUCKETS = 16
LIMIT_S = 120.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory, local_client):
    """ingest..train once on 2,000 generated customers in 16 buckets, then one
    undisturbed score run: (config, scores checksum, metrics of that run)."""
    from bigseg.synth import generate

    d = tmp_path_factory.mktemp("resume")
    generate(2000, d, seed=11, chunk_size=1000)
    cfg = write_config(
        d / "job.yaml",
        d,
        d / "out",
        store={"buckets": BUCKETS},
        prediction={"targets": ["churn", "value"], "n_estimators": 20},
    )
    run_stages(cfg, local_client, CPU, stages=("ingest", "features", "segment", "train"))
    metrics = run_stages(cfg, local_client, CPU, stages=("score",))
    return cfg, checksum(read_scores(cfg.output_dir)), metrics


def _staging(out: Path) -> list[str]:
    """What is staged under ``out``: every run's ``.staging/`` and the feature cache's."""
    found = [*out.glob("runs/*/.staging/*"), *Layout(out).feature_cache.glob(".staging/*")]
    return sorted(str(p.relative_to(out)) for p in found)


def _last_run(out: Path) -> Path:
    """The folder of the run that made the latest commit."""
    return out / commits.RUNS / commits.latest(local, out)[1]["run_id"]


def _committed_files(out: Path) -> dict[str, int]:
    """``{path: mtime in ns}`` of every file the latest commit lists."""
    o = committed(out)
    return {str(p): p.stat().st_mtime_ns for n in o.names() for p in files(out, n)}


@pytest.mark.slow  # with its own trained output: `make test-slow` (CI runs both)
def test_score_only_run_stages_no_model_version(trained, local_client):
    cfg, undisturbed, metrics = trained
    out = cfg.output_dir
    versions, n = committed(out).model_versions(), committed(out).parent
    run_stages(cfg, local_client, CPU, stages=("score",))
    assert committed(out).parent == n + 1
    run = _last_run(out)
    assert _staging(out) == []  # no model-v* copy of the segmenter, no score staging
    assert not (run / "models").exists()  # the run wrote no model version
    assert committed(out).model_versions() == versions
    assert checksum(read_scores(out)) == undisturbed
    assert metrics["score_resume"] == {
        "buckets": BUCKETS,
        "resumed": 0,
        "fingerprint": metrics["score_resume"]["fingerprint"],
    }


@pytest.mark.slow  # with its own trained output: `make test-slow` (CI runs both)
def test_stale_staging_of_dead_runs_is_removed_under_the_lease(trained, local_client):
    cfg, undisturbed, _ = trained
    out = cfg.output_dir
    # a dead run's feature cache entries, half written
    cache_staging = Layout(out).feature_cache / ".staging"
    for name in ("bucket=00000-0123456789ab", "bucket=00001-0123456789ab"):
        (cache_staging / name).mkdir(parents=True)
        (cache_staging / name / "0.arrow").write_bytes(b"half written")
    (cache_staging / ".x.json.0badc0de.tmp").write_text("{}")
    # a dead run's own folder: never committed
    dead_run = out / "runs" / "0123456789abcdef01234567"
    for name in (
        "features-0123456789ab",
        "model-v20990101T000000000000Z-0123456789ab",
        "as_of=1997-09-30-0123456789ab",
    ):
        (dead_run / ".staging" / name).mkdir(parents=True)
        (dead_run / ".staging" / name / "part-00000.parquet").write_bytes(b"half written")
    # the next score run's own folder (a re-run of the same inputs on the same commit gets
    # the same id) with a resumable score staging of another fingerprint
    score_run = Path(begin(cfg, "bigseg score", {"model": None, "policy": None}).run_root)
    resumable = score_run / ".staging" / "score-as_of=1997-01-01-0123456789abcdef"
    resumable.mkdir(parents=True)
    (resumable / "record.json").write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    # and what a killed attempt of that run left half written
    half = score_run / ".staging" / "as_of=1997-09-30-0123456789ab"
    half.mkdir()
    (half / "part-00000.parquet").write_bytes(b"half written")
    # a dead run's lease, live for another hour: a pid that no longer exists on this host
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    epochs = commits.numbers(local, out / LEASES)
    epoch = (epochs[-1] if epochs else 0) + 1
    write_text_atomic(
        out / LEASES / commits.numbered(epoch),
        json.dumps(
            {
                "epoch": epoch,
                "holder": f"{socket.gethostname()}:{dead.pid}",
                "run": "bigseg score",
                "token": "dead",
                "expires": time.time() + 3600,
                "written": time.time(),
                "released": False,
            }
        ),
    )
    with output_lease(cfg, "test"):  # taken over at once: its holder is gone
        # the lease holder removed the cache's stale staging; the runs' folders stay
        assert sorted(_staging(out)) == sorted(
            [
                *(str(p.relative_to(out)) for p in (dead_run / ".staging").iterdir()),
                str(resumable.relative_to(out)),
                str(half.relative_to(out)),
            ]
        )
    # the score run (in that very folder) removes its killed attempt's staging, and its
    # score stage discards a resumable staging of another fingerprint
    run_stages(cfg, local_client, CPU, stages=("score",))
    assert _last_run(out) == score_run
    assert not resumable.exists() and not half.exists()
    assert checksum(read_scores(out)) == undisturbed
    # the dead run's folder is not listed by any commit: gc collects it
    assert (dead_run / ".staging").is_dir()
    kept = _committed_files(out)
    collect(local, out, keep=1)
    assert _staging(out) == [] and not dead_run.exists()
    assert _committed_files(out) == kept


def test_resumable_stage_with_another_fingerprint_starts_afresh(tmp_path):
    stage = ResumableStage(tmp_path, "as_of=2000-01-01", "a" * 64)
    stage.write_record({}, {"x": [1, 2]})
    stage.part(0).write_bytes(b"p")
    stage.stats(0).write_text("{}")
    assert ResumableStage(tmp_path, "as_of=2000-01-01", "a" * 64).done(2) == [0]
    assert ResumableStage(tmp_path, "as_of=2000-01-01", "a" * 64).globals() == {"x": [1, 2]}
    # same directory name (first 16 hex digits), another full fingerprint: not ours
    other = ResumableStage(tmp_path, "as_of=2000-01-01", "a" * 16 + "b" * 48)
    assert other.dir == stage.dir and other.record is None and other.done(2) == []
    assert list(other.dir.iterdir()) == []


def _kill_after_first_bucket(cmd: list[str], out: Path, log: Path) -> tuple[int, int]:
    """Run ``cmd`` and SIGKILL its process group once a bucket is finished in the score
    stage's resumable staging; returns (buckets finished, parts staged) at the kill."""
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )  # its own group: CLI + cluster
    try:
        deadline = time.monotonic() + LIMIT_S
        while True:
            stats = list(out.glob("runs/*/.staging/score-*/stats-*.json"))
            if stats:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, (
                f"exited {proc.returncode} before a bucket was staged:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no bucket finished within the limit"
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)  # reaped: its pid is gone, so its lock is stale
    stats = list(out.glob("runs/*/.staging/score-*/stats-*.json"))
    parts = list(out.glob("runs/*/.staging/score-*/part-*.arrow"))
    return len(stats), len(parts)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_killed_score_run_resumes_from_finished_buckets(trained, tmp_path):
    cfg, undisturbed, _ = trained
    out = cfg.output_dir
    before = committed(out)
    mtimes = _committed_files(out)
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
    finished, parts = _kill_after_first_bucket(cmd, out, tmp_path / "killed.log")
    assert finished >= 1 and parts >= finished
    # nothing committed: the latest commit is the same and its files are untouched
    after = committed(out)
    assert (after.parent, after.base) == (before.parent, before.base)
    assert _committed_files(out) == mtimes
    (killed_run,) = {p.parents[2] for p in out.glob("runs/*/.staging/score-*/stats-*.json")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    assert committed(out).parent == before.parent + 1
    assert _last_run(out) == killed_run  # the re-run took up the killed run's folder
    m = read_metrics(out)
    resumed = m["score_resume"]["resumed"]
    assert finished <= resumed <= BUCKETS and m["score_resume"]["buckets"] == BUCKETS
    records = sorted((out / commits.META / "records").glob("*.json"))
    assert json.loads(records[-1].read_text())["summary"]["score_resume"]["resumed"] == resumed
    assert checksum(read_scores(out)) == undisturbed
    assert _staging(out) == []
    print(f"killed with {finished} of {BUCKETS} buckets finished; re-run resumed {resumed}")
