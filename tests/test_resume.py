"""Resumable scoring and clean staging: a score run SIGKILLed after some buckets are
finished resumes from them and publishes the scores of an undisturbed run; a score-only
run stages no model version; staging left by dead runs is removed by the next run.

Every kill targets the process group of a CLI subprocess this module started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipeline import checksum, read_scores, write_config

from bigseg.backend import resolve
from bigseg.io.resume import ResumableStage
from bigseg.pipeline import run_stages
from bigseg.store.lock import output_lock

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
    root = out / ".staging"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_score_only_run_stages_no_model_version(trained, local_client):
    cfg, undisturbed, metrics = trained
    out = cfg.output_dir
    versions = sorted(p.name for p in (out / "models").iterdir())
    run_stages(cfg, local_client, CPU, stages=("score",))
    assert _staging(out) == []  # no model-v* copy of the segmenter, no score staging
    assert sorted(p.name for p in (out / "models").iterdir()) == versions
    assert checksum(read_scores(out)) == undisturbed
    assert metrics["score_resume"] == {
        "buckets": BUCKETS,
        "resumed": 0,
        "fingerprint": metrics["score_resume"]["fingerprint"],
    }


def test_stale_staging_of_dead_runs_is_removed_under_the_lock(trained, local_client):
    cfg, undisturbed, _ = trained
    out = cfg.output_dir
    root = out / ".staging"
    for name in (
        "features-0123456789ab",
        "model-v20990101T000000000000Z-0123456789ab",
        "as_of=1997-09-30-0123456789ab",
    ):
        (root / name).mkdir(parents=True)
        (root / name / "part-00000.parquet").write_bytes(b"half written")
    (root / ".x.json.0badc0de.tmp").write_text("{}")
    resumable = root / "score-as_of=1997-01-01-0123456789abcdef"
    resumable.mkdir()
    (resumable / "record.json").write_text(json.dumps({"fingerprint": "0123456789abcdef"}))
    # a dead run's lock: a pid that no longer exists on this host
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(
        json.dumps({"pid": dead.pid, "host": os.uname().nodename, "command": "score"})
    )
    with output_lock(out, "test"):
        # the lock holder removed the dead runs' staging, keeping the resumable one
        assert _staging(out) == [resumable.name]
    # the score stage discards a resumable staging of another fingerprint
    run_stages(cfg, local_client, CPU, stages=("score",))
    assert _staging(out) == []
    assert checksum(read_scores(out)) == undisturbed


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
            stats = list((out / ".staging").glob("score-*/stats-*.json"))
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
    stats = list((out / ".staging").glob("score-*/stats-*.json"))
    parts = list((out / ".staging").glob("score-*/part-*.arrow"))
    return len(stats), len(parts)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_killed_score_run_resumes_from_finished_buckets(trained, tmp_path):
    cfg, undisturbed, _ = trained
    out = cfg.output_dir
    published = sorted((out / "scores").rglob("*"))
    mtimes = {p: p.stat().st_mtime_ns for p in published}
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
    # nothing published changed: phase 2 never started or its staging was not moved
    assert {p: p.stat().st_mtime_ns for p in sorted((out / "scores").rglob("*"))} == mtimes
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    resumed = m["score_resume"]["resumed"]
    assert finished <= resumed <= BUCKETS and m["score_resume"]["buckets"] == BUCKETS
    runs = sorted((out / "runs").glob("*.json"))
    assert json.loads(runs[-1].read_text())["summary"]["score_resume"]["resumed"] == resumed
    assert checksum(read_scores(out)) == undisturbed
    assert _staging(out) == []
    print(f"killed with {finished} of {BUCKETS} buckets finished; re-run resumed {resumed}")
