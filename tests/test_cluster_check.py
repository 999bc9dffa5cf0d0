"""``bigseg cluster-check CLUSTER.yaml [--config CONFIG]`` on real ``dask scheduler`` and
``dask worker`` processes: the versions of bigseg, dask, distributed, pyarrow, numpy and
xgboost on the client, the scheduler and every worker; with a run config, every worker
reads each input and creates and deletes an object under ``output:`` (local disk, and
moto's S3 server). Problems are ``problem`` lines with their fix, and exit code 5."""

from __future__ import annotations

import pandas as pd
import pytest
import xgboost
import yaml
from conftest import _stop, start_external_cluster
from distributed import Client

from bigseg.cli import main
from bigseg.engine.checks import VERSION_FIX, package_versions, version_problems


def _transactions(path) -> None:
    pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": [1.0, 2.0],
        }
    ).to_parquet(path)


def _job(path, inputs: str, output: str, **extra) -> str:
    doc = {"data": {"transactions": {"path": inputs}}, "output": output, **extra}
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _problems(out: str) -> list[str]:
    return [line[len("problem    ") :] for line in out.splitlines() if line.startswith("problem")]


def _tree(d) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def test_version_rules():
    v = {"bigseg": "0.1.0", "dask": "2025.1.0", "distributed": "2025.1.0", "xgboost": "3.1.0"}
    sched = {**v, "bigseg": None, "xgboost": None}  # the scheduler needs dask, distributed only
    worker = {**v, "xgboost": "3.2.0"}
    found = version_problems(
        {"client": v, "scheduler": sched, "workers": {"tcp://w:2": worker, "tcp://w:1": v}},
        "tcp://s:1",
    )
    assert [str(p) for p in found] == [
        f"worker tcp://w:2: xgboost 3.2.0, client 3.1.0: {VERSION_FIX}"
    ]
    # absent where it is needed: dask on the scheduler, any package on a worker
    found = version_problems(
        {
            "client": v,
            "scheduler": {**sched, "dask": None},
            "workers": {"tcp://w:1": {**v, "bigseg": None}},
        },
        "tcp://s:1",
    )
    assert [(p.where, p.what) for p in found] == [
        ("scheduler tcp://s:1", "dask is not installed (client 2025.1.0)"),
        ("worker tcp://w:1", "bigseg is not installed (client 0.1.0)"),
    ]
    # present on the scheduler, but another version: a problem too; a worker that failed
    found = version_problems(
        {
            "client": v,
            "scheduler": {**v, "xgboost": "2.1.0"},
            "workers": {"tcp://w:1": OSError("gone")},
        }
    )
    assert [(p.where, p.what) for p in found] == [
        ("scheduler", "xgboost 2.1.0, client 3.1.0"),
        ("worker tcp://w:1", "could not report its package versions (OSError: gone)"),
    ]


def test_a_healthy_cluster_passes(external_cluster, tmp_path, capsys):
    _transactions(tmp_path / "t.parquet")
    out = tmp_path / "out"
    (out / "kept").mkdir(parents=True)  # an output that exists: left as it was
    job = _job(tmp_path / "job.yaml", "t.parquet", "out")
    before = _tree(out)
    assert main(["cluster-check", str(external_cluster.config_path), "--config", job]) == 0
    printed = capsys.readouterr()
    assert _problems(printed.out) == [] and printed.err == ""
    assert "checks     versions: ok   storage: ok" in printed.out
    mine = package_versions()
    assert "versions   " + "  ".join(f"{k} {v}" for k, v in mine.items()) in printed.out
    assert "workers    2   threads 2" in printed.out and "test task  ok" in printed.out
    assert _tree(out) == before  # no token, no probe, no _bigseg/ folder left
    # an output that does not exist yet is not created by the check
    job = _job(tmp_path / "new.yaml", "t.parquet", "new-out")
    assert main(["cluster-check", str(external_cluster.config_path), "--config", job]) == 0
    assert not (tmp_path / "new-out").exists()


@pytest.mark.slow  # a cluster of its own: 20-35 s
def test_a_worker_with_another_version_is_named(tmp_path, capsys):
    # the worker imports this before it connects: it reports the version its code says
    patch = tmp_path / "old_xgboost.py"
    patch.write_text("import xgboost\n\nxgboost.__version__ = '0.0.1-old'\n")
    cluster = start_external_cluster(
        tmp_path / "cluster", n_workers=1, extra_workers=[["--preload", str(patch)]]
    )
    try:
        with Client(cluster.address, timeout=30, set_as_default=False) as c:
            seen = c.run(package_versions, ("xgboost",))
        (old,) = [w for w, v in seen.items() if v["xgboost"] == "0.0.1-old"]
        assert main(["cluster-check", str(cluster.config_path)]) == 5
    finally:
        _stop(cluster.processes)
    printed = capsys.readouterr()
    assert _problems(printed.out) == [
        f"worker {old}: xgboost 0.0.1-old, client {xgboost.__version__}: {VERSION_FIX}"
    ]
    assert "checks     versions: 1 problem" in printed.out
    assert "error: 1 problem(s)" in printed.err and "cannot run a bigseg job" in printed.err


@pytest.mark.slow  # a cluster of its own: 20-35 s
def test_workers_that_cannot_see_a_local_input_or_output_are_named(
    tmp_path, tmp_path_factory, capsys
):
    _transactions(tmp_path / "t.parquet")
    job = _job(tmp_path / "job.yaml", "t.parquet", "out")
    cluster = start_external_cluster(
        tmp_path / "cluster", n_workers=2, hide=tmp_path_factory.getbasetemp()
    )
    try:
        assert main(["cluster-check", str(cluster.config_path), "--config", job]) == 5
        with Client(cluster.address, timeout=30, set_as_default=False) as c:
            workers = sorted(c.scheduler_info(n_workers=-1)["workers"])
    finally:
        _stop(cluster.processes)
    printed = capsys.readouterr()
    found = _problems(printed.out)
    assert len(workers) == 2 and len(found) == 4, found
    for w in workers:
        read, see = [p for p in found if p.startswith(f"worker {w}: ")]
        assert f"cannot read data.transactions.path {tmp_path / 't.parquet'} (not found)" in read
        assert "mount it at the same path on every worker" in read
        assert f"does not see output: {tmp_path / 'out'} as the client does" in see
        assert "(output: s3://bucket/prefix)" in see
    assert "versions: ok   storage: 4 problems" in printed.out
    assert not (tmp_path / "out").exists()  # the client's token and its folders: removed


@pytest.mark.slow  # a cluster of its own: 20-35 s
def test_s3_inputs_and_output_on_a_cluster(s3, tmp_path, capsys):
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint)
    _transactions(tmp_path / "t.parquet")
    fs.put(str(tmp_path / "t.parquet"), f"{s3.name}/raw/t/part-0.parquet")
    opts = {"storage_options": {"endpoint_url": s3.endpoint}}
    good = _job(tmp_path / "good.yaml", s3.url("raw/t/"), s3.url("out"), **opts)
    missing = s3.url("raw/missing/")
    bad = _job(tmp_path / "bad.yaml", missing, "s3://bigseg-no-such-bucket/out", **opts)
    # started after the s3 fixture: the workers inherit its AWS environment
    cluster = start_external_cluster(tmp_path / "cluster", n_workers=2)
    try:
        assert main(["cluster-check", str(cluster.config_path), "--config", good]) == 0
        good_out = capsys.readouterr().out
        assert main(["cluster-check", str(cluster.config_path), "--config", bad]) == 5
        bad_out = capsys.readouterr().out
    finally:
        _stop(cluster.processes)
    assert _problems(good_out) == [] and "storage: ok" in good_out
    fs.invalidate_cache()
    assert fs.find(s3.name) == [f"{s3.name}/raw/t/part-0.parquet"]  # no probe, no token left
    found = _problems(bad_out)
    assert len(found) == 3, found
    for line in found[:2]:
        assert line.startswith("worker tcp://127.0.0.1:")
        assert f"cannot read data.transactions.path {missing} (not found)" in line
        assert "client's storage environment" in line
    assert found[2].startswith("client: cannot write under output: s3://bigseg-no-such-bucket/out")


def test_a_bad_run_config_is_exit_2_before_connecting(tmp_path, capsys):
    # a scheduler nobody runs: the run config is refused first, so no connection is tried
    cfg = tmp_path / "c.yaml"
    cfg.write_text("type: scheduler\naddress: tcp://127.0.0.1:9\ntimeout: 2\n")
    assert main(["cluster-check", str(cfg), "--config", "/nonexistent/job.yaml"]) == 2
    assert "/nonexistent/job.yaml" in capsys.readouterr().err
