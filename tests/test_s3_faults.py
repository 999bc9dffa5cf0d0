"""Faults on an ``output:`` in object storage (moto's S3 server), as ``tests/test_resume.py``
and ``tests/test_output_commits.py`` check them on local disk: a client SIGKILLed mid-run
leaves the latest commit readable and unchanged and a re-run completes with the same
scores; a held lease refuses a second run; ``gc`` keeps every file a kept commit lists.

The output is the session's small run, uploaded as it is: a commit lists paths relative
to the output, so the copy is a valid committed output on S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from test_s3_pipeline import _scores

import bigseg
from bigseg.io.commits import latest, read_commit, referenced
from bigseg.io.lease import lease
from bigseg.io.storage import storage_for

pytestmark = pytest.mark.slow

BIGSEG = [sys.executable, "-m", "bigseg.cli"]
LIMIT_S = 180.0


def _kill_when_a_bucket_is_scored(cmd, fs, out_key: str, log) -> int:
    """Start ``cmd`` in its own process group and SIGKILL the group once the score stage
    has saved a bucket under the run's prefix; returns the buckets saved by then."""
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + LIMIT_S
    try:
        while time.monotonic() < deadline:
            fs.invalidate_cache()
            done = fs.glob(f"{out_key}/runs/*/.staging/score-*/stats-*.json")
            if done:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)
                return len(done)
            assert p.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"no bucket scored within {LIMIT_S} s")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


def test_faults_on_an_s3_output(s3, small_run, tmp_path):
    import s3fs

    local_cfg, metrics = small_run
    fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint, skip_instance_cache=True)
    fs.put(str(local_cfg.output_dir) + "/", f"{s3.name}/out/", recursive=True)
    url = s3.url("out")
    doc = yaml.safe_load((local_cfg.output_dir.parent / "job.yaml").read_text())
    doc["output"] = url
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "two.yaml").write_text("type: local\nn_workers: 2\n")
    store = storage_for(url)
    first = read_commit(store, url, 1)
    committed = _scores(bigseg.read_scores(url))
    cmd = [*BIGSEG, "score", str(tmp_path / "job.yaml"), "--cluster", str(tmp_path / "two.yaml")]
    cmd += ["--device", "cpu", "--quiet"]

    # 1. SIGKILL mid-run: nothing committed, the latest commit reads as before
    saved = _kill_when_a_bucket_is_scored(cmd, fs, f"{s3.name}/out", tmp_path / "killed.log")
    assert saved >= 1
    assert latest(store, url) == (1, first)
    assert _scores(bigseg.read_scores(url)) == committed

    # 2. a held lease refuses a second run, before its cluster starts
    with lease(store, url, "another bigseg run"):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 6 and "another bigseg run" in r.stderr, r.stderr[-2000:]
    assert latest(store, url) == (1, first)

    # 3. the re-run resumes the killed run's buckets and commits the same scores
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    n, second = latest(store, url)
    assert n == 2 and second["parent"] == 1
    resume = json.loads(
        store.read_text(f"{url}/{second['datasets']['metrics']['files'][0]['path']}")
    )
    assert resume["score_resume"]["resumed"] >= saved
    assert _scores(bigseg.read_scores(url, as_of=metrics["as_of"])) == committed

    # 4. gc keeps every file the kept commit lists and deletes the rest under runs/
    only_first = referenced(first) - referenced(second)
    assert only_first
    gc = [*BIGSEG, "gc", str(tmp_path / "job.yaml"), "--keep", "1", "--quiet"]
    r = subprocess.run(gc, capture_output=True, text=True, timeout=LIMIT_S)
    assert r.returncode == 0, r.stderr[-2000:]
    fs.invalidate_cache()
    for path in referenced(second):
        assert fs.isfile(f"{s3.name}/out/{path}"), path
    for path in only_first:
        assert not fs.exists(f"{s3.name}/out/{path}"), path
    assert fs.glob(f"{s3.name}/out/runs/*/.staging/**") == []  # the dead run's leftovers
    assert _scores(bigseg.read_scores(url)) == committed
