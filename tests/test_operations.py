"""Scheduled scoring operations: one writer per output (the lease), a run record per run,
and drift against the training reference with the retrain policy's verdict."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.errors import LeaseHeld, PublishError
from bigseg.io.commits import read_commit
from bigseg.io.lease import LEASES, current
from bigseg.io.manifest import RECORDS, numbered
from bigseg.io.storage import local
from bigseg.pipeline import run_stages
from bigseg.store.lock import output_lease
from bigseg.testing.outputs import committed

ME = f"{socket.gethostname()}:{os.getpid()}"


def _cfg(tmp_path: Path):
    """A run config whose output is ``tmp_path/out`` (its inputs are never read)."""
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"data": {"transactions": {"path": "tx"}}, "output": "out"}))
    return load_run_config(p)


def _state(out: Path) -> tuple:
    """The latest commit (number and datasets), the run folders and the run records."""
    o = committed(out)
    runs = sorted(p.name for p in (out / "runs").iterdir())
    return o.parent, o.datasets(), runs, sorted((out / RECORDS).glob("*.json"))


@pytest.fixture(scope="module")
def trained(small_run, tmp_path_factory):
    """A copy of the session's small run (tests/conftest.py): the tests here score into it."""
    cfg0, metrics = small_run
    d = tmp_path_factory.mktemp("ops")
    # the lease's epochs are the session output's own, not copied
    shutil.copytree(cfg0.output_dir, d / "out", ignore=shutil.ignore_patterns("lease", ".staging"))
    doc = yaml.safe_load((cfg0.output_dir.parent / "job.yaml").read_text())
    doc["output"] = str(d / "out")
    (d / "job.yaml").write_text(yaml.safe_dump(doc))
    return d, load_run_config(d / "job.yaml"), metrics


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    cfg = _cfg(tmp_path)
    with output_lease(cfg, "bigseg score"):
        with pytest.raises(
            LeaseHeld,
            match=r"another bigseg run holds this output's lease: "
            rf"{re.escape(ME)} \(`bigseg score`\)",
        ) as refused:
            with output_lease(cfg, "bigseg run"):
                pass
    assert isinstance(refused.value, PublishError) and refused.value.exit_code == 6
    with output_lease(cfg, "bigseg run"):  # released after the first
        assert current(local, cfg.output_dir)[1]["run"] == "bigseg run"
    _, last = current(local, cfg.output_dir)
    assert last["released"] is True and last["expires"] == 0  # nothing left held


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that no longer exists
    cfg = _cfg(tmp_path)
    leases = cfg.output_dir / LEASES
    leases.mkdir(parents=True)
    # its lease would be live for an hour yet: taken over because its holder is gone
    stale = {
        "epoch": 1,
        "holder": f"{socket.gethostname()}:{p.pid}",
        "run": "bigseg score",
        "token": "dead",
        "expires": time.time() + 3600,
        "written": time.time(),
        "released": False,
    }
    (leases / numbered(1)).write_text(json.dumps(stale))
    with output_lease(cfg, "bigseg score"):
        epoch, rec = current(local, cfg.output_dir)
        assert epoch == 2 and rec["holder"] == ME and not rec["released"]


def test_a_concurrent_pipeline_run_fails_and_changes_nothing(trained, local_client):
    d, cfg, _ = trained
    before = _state(cfg.output_dir)
    assert before[0] > 0 and committed(cfg.output_dir).scores_dates()
    with output_lease(cfg, "another run"):
        with pytest.raises(LeaseHeld, match="another bigseg run"):
            run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    assert _state(cfg.output_dir) == before  # no commit, no run folder, no record


def test_every_run_leaves_a_record_to_reproduce_it(trained):
    d, cfg, m = trained
    recs = sorted((cfg.output_dir / RECORDS).glob("*.json"))
    assert recs
    r = json.loads(recs[-1].read_text())
    assert r["stages"] == ["ingest", "features", "segment", "train", "score", "report"]
    assert r["as_of"] == m["as_of"] and r["seed"] == cfg.seed
    assert r["config"]["horizon_days"] == 90 and len(r["input_fingerprint"]) == 64
    latest = committed(cfg.output_dir)
    assert r["model_version"] == latest.latest_model()
    # the record names the commit the run made, and that commit names the run
    assert r["commit"] == latest.parent
    assert read_commit(local, cfg.output_dir, r["commit"])["run_id"] == r["run_id"]
    assert {"python", "xgboost", "dask"} <= set(r["libraries"])
    assert "cpu" in json.dumps(r["hardware"]).lower()
    assert r["summary"]["n_customers"] == m["n_customers"]


def test_drift_is_measured_against_the_training_reference(trained, local_client, tmp_path):
    d, cfg, m = trained
    dr = m["drift"]
    assert dr["features"]["max_psi"] is not None and "tenure_days" not in dr["features"]["features"]
    assert set(dr["scores"]["features"]) == {
        "churn_probability",
        "value_prediction",
        "response_probability",
    }
    assert dr["segments"]["psi"] < 0.25  # same customers, one horizon later
    assert m["retrain"]["recommended"] == bool(m["retrain"]["reasons"])

    def score_with(policy: dict) -> dict:
        doc = yaml.safe_load((d / "job.yaml").read_text())
        doc["drift"] = policy
        (d / "policy.yaml").write_text(yaml.safe_dump(doc))
        cfg2 = load_run_config(d / "policy.yaml")
        return run_stages(cfg2, local_client, resolve("cpu"), stages=("score",))["retrain"]

    # a strict policy turns the measured drift into a recommendation, with reasons ...
    strict = score_with({"max_feature_psi": 0.001})
    assert strict["recommended"] is True
    assert any(r.startswith("feature drift") for r in strict["reasons"])
    # ... and with every rule off there is none
    off = score_with(
        {
            k: None
            for k in ("max_feature_psi", "max_score_psi", "max_segment_psi", "max_model_age_days")
        }
    )
    assert off == {"recommended": False, "reasons": []}
