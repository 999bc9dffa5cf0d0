"""Scheduled scoring operations: one writer per output (lock), a run record per run, and
drift against the training reference with the retrain policy's verdict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.errors import PublishError
from bigseg.pipeline import run_stages
from bigseg.store.lock import output_lock


@pytest.fixture(scope="module")
def trained(small_run, tmp_path_factory):
    """A copy of the session's small run (tests/conftest.py): the tests here score into it."""
    cfg0, metrics = small_run
    d = tmp_path_factory.mktemp("ops")
    shutil.copytree(cfg0.output_dir, d / "out", ignore=shutil.ignore_patterns(".lock", ".staging"))
    doc = yaml.safe_load((cfg0.output_dir.parent / "job.yaml").read_text())
    doc["output"] = str(d / "out")
    (d / "job.yaml").write_text(yaml.safe_dump(doc))
    return d, load_run_config(d / "job.yaml"), metrics


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    with output_lock(tmp_path, "score"):
        with pytest.raises(
            PublishError,
            match=r"another bigseg run is writing this output "
            r"\(pid \d+ .*`score`",
        ):
            with output_lock(tmp_path, "run"):
                pass
    with output_lock(tmp_path, "run"):  # released after the first
        pass
    assert not (tmp_path / ".lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that no longer exists
    import socket

    (tmp_path / ".lock").write_text(
        json.dumps(
            {"pid": p.pid, "host": socket.gethostname(), "command": "score", "started": "then"}
        )
    )
    with output_lock(tmp_path, "score"):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_a_concurrent_pipeline_run_fails_and_changes_nothing(trained, local_client):
    d, cfg, _ = trained
    before = sorted(p.name for p in (cfg.output_dir / "scores").iterdir())
    with output_lock(cfg.output_dir, "another run"):
        with pytest.raises(PublishError, match="another bigseg run"):
            run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    assert sorted(p.name for p in (cfg.output_dir / "scores").iterdir()) == before


def test_every_run_leaves_a_record_to_reproduce_it(trained):
    d, cfg, m = trained
    recs = sorted((cfg.output_dir / "runs").glob("*.json"))
    assert recs
    r = json.loads(recs[-1].read_text())
    assert r["stages"] == ["ingest", "features", "segment", "train", "score", "report"]
    assert r["as_of"] == m["as_of"] and r["seed"] == cfg.seed
    assert r["config"]["horizon_days"] == 90 and len(r["input_fingerprint"]) == 64
    assert r["model_version"] == (cfg.output_dir / "models" / "LATEST").read_text().strip()
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
