"""Workers that share no disk with the client: each ``dask worker`` runs in its own mount
namespace (``unshare --mount``) with an empty tmpfs over the session's pytest temporary root,
so it cannot open any of the client's temporary folders, where every test keeps its data and
output, and has a working and temporary directory of its own. A run whose
local paths the workers cannot see is refused before any work starts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest
from conftest import _stop, start_external_cluster
from distributed import Client
from test_pipeline import write_config

from bigseg.backend import resolve
from bigseg.errors import ConfigError
from bigseg.io.lease import LEASES, current
from bigseg.io.storage import local
from bigseg.pipeline import run_stages
from bigseg.testing.outputs import committed


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory):
    # logs and the scheduler config live where the client (this process) writes them
    root = tmp_path_factory.mktemp("isolated_cluster")
    cluster = start_external_cluster(root, n_workers=2, hide=tmp_path_factory.getbasetemp())
    try:
        yield cluster
    finally:
        _stop(cluster.processes)


def test_each_worker_has_its_own_disk(isolated_cluster, synth_data, tmp_path, tmp_path_factory):
    # defined here, so Dask ships them by value: the workers cannot import this test module
    def _look(paths: list[str]) -> dict:
        return {
            "sees": [p for p in paths if os.path.exists(p)],
            "tmp": tempfile.gettempdir(),
            "cwd": os.getcwd(),
        }

    def _leave(path: str) -> None:
        with open(path, "w") as f:
            f.write("only on this worker")

    client_paths = [str(tmp_path), str(synth_data), str(isolated_cluster.log_dir)]
    own = str(tmp_path_factory.getbasetemp() / "worker")
    assert all(os.path.exists(p) for p in client_paths)  # the client sees them
    with Client(isolated_cluster.address, timeout=30, set_as_default=False) as c:
        got = c.run(_look, client_paths)
        assert len(got) == 2
        for w, seen in got.items():
            assert seen["sees"] == [], (w, seen)  # none of the client's folders
            assert seen["tmp"] == own and seen["cwd"] == own, seen
        # a file one worker leaves in its temporary dir is invisible to the other and to the
        # client
        a, b = sorted(got)
        mark = f"{own}/mark"
        c.run(_leave, mark, workers=[a])
        assert c.run(_look, [mark], workers=[b])[b]["sees"] == []
        assert c.run(_look, [mark], workers=[a])[a]["sees"] == [mark]
    assert not os.path.exists(mark)


def test_a_local_output_the_workers_cannot_see_is_refused_before_any_work(
    isolated_cluster, synth_data, tmp_path
):
    cfg = write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out")
    with Client(isolated_cluster.address, timeout=30, set_as_default=False) as c:
        with pytest.raises(ConfigError) as e:
            run_stages(cfg, c, resolve("cpu"))
    msg = str(e.value)
    assert "cannot see" in msg and str(cfg.output_dir) in msg and "s3://" in msg, msg
    assert str(synth_data / "raw") in msg  # the inputs too
    # nothing was computed or left behind: the output holds no commit, no run's files, no
    # marker; only the lease's records (taken before the check, then released)
    out = tmp_path / "out"
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir())
    assert left and all(p.startswith(LEASES + "/") for p in left), left
    assert current(local, out)[1]["released"] and not committed(out).committed
    assert not (out / "runs").exists()


def test_the_cli_exits_2_naming_the_fix(isolated_cluster, synth_data, tmp_path):
    write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out")
    r = subprocess.run(
        [sys.executable, "-m", "bigseg.cli", "run", str(tmp_path / "job.yaml"),
         "--cluster", str(isolated_cluster.config_path), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot see" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_shared_disk_passes_the_check(local_client, synth_data, tmp_path):
    from bigseg.pipeline.preflight import check_workers_see

    cfg = write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out")
    check_workers_see(cfg, local_client)  # a local cluster shares the client's disk
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # marker removed
