"""The command line: help, exit codes, errors that name what is wrong."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from bigseg.cli import main
from bigseg.io.output import scores_dataset
from bigseg.testing.outputs import committed, files, metrics_path, report_path

BIGSEG = [sys.executable, "-m", "bigseg.cli"]


def test_help_lists_the_commands():
    out = subprocess.run([*BIGSEG, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in (
        "demo",
        "generate",
        "validate",
        "ingest",
        "features",
        "segment",
        "train",
        "score",
        "run",
        "report",
        "export",
        "cluster-check",
    ):
        assert cmd in out


def test_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"data": {"transactions": {"path": "x"}}, "horizon": 9}))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "horizon: unknown key" in err and str(p) in err


def test_validate_exits_3_listing_problems(tmp_path, capsys):
    (tmp_path / "tx").mkdir()
    pd.DataFrame({"customer_id": [1, 2], "amount": [1.0, 2.0]}).to_parquet(
        tmp_path / "tx" / "a.parquet"
    )
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"data": {"transactions": {"path": "tx"}}}))
    assert main(["validate", str(p), "--cluster", str(_two_worker_cfg(tmp_path))]) == 3
    err = capsys.readouterr().err
    assert "a.parquet" in err and "'timestamp'" in err


def test_validate_ok(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "customer_id": rng.integers(0, 9, 50),
            "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(50), unit="D"),
            "amount": rng.random(50),
        }
    ).to_parquet(tmp_path / "t.parquet")
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"data": {"transactions": {"path": "t.parquet"}}}))
    assert main(["validate", str(p), "--cluster", str(_two_worker_cfg(tmp_path))]) == 0
    assert "valid" in capsys.readouterr().out


def test_cluster_check_prints_workers(tmp_path, capsys):
    assert main(["cluster-check", str(_two_worker_cfg(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "127.0.0.1" in out and "2" in out


def test_unknown_cluster_file_exits_2(capsys):
    assert main(["cluster-check", "/nonexistent.yaml"]) == 2


def _two_worker_cfg(tmp_path):
    p = tmp_path / "local2.yaml"
    p.write_text("type: local\nn_workers: 2\nthreads_per_worker: 1\nmemory_limit: 2GiB\n")
    return p


def _demo(out, cluster, *extra) -> subprocess.CompletedProcess:
    args = ["demo", "--customers", "2000", "--out", str(out), "--cluster", str(cluster), *extra]
    return subprocess.run([*BIGSEG, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_demo_end_to_end_through_the_cli(tmp_path):
    out = tmp_path / "demo"
    r = _demo(out, _two_worker_cfg(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    # the paths printed are those the commit lists, and the commit is named
    assert f"metrics: {metrics_path(out)}" in r.stdout
    assert f"report:  {report_path(out)}" in r.stdout
    assert f"commit:  {committed(out).parent} " in r.stdout
    assert (out / "bigseg.yaml").is_file() and (out / "raw" / "transactions").is_dir()
    assert (out / "ground_truth").is_dir()
    (day,) = committed(out).scores_dates()
    parts = files(out, scores_dataset(day))
    assert parts and all(p.name.startswith("part-") and p.suffix == ".parquet" for p in parts)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_a_second_demo_reuses_the_data_and_republishes(tmp_path):
    out, cluster = tmp_path / "demo", _two_worker_cfg(tmp_path)
    assert _demo(out, cluster).returncode == 0
    r2 = _demo(out, cluster, "--quiet")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout == ""
    assert len(committed(out).model_versions()) == 2
