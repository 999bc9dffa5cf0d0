"""The whole pipeline with its inputs and ``output:`` on object storage (moto's S3 server),
on a real ``dask scheduler`` with two ``dask worker`` processes that share no disk with the
client (``tests/test_no_shared_disk.py`` proves the isolation): the workers read the inputs
and write every dataset to the store themselves, and the client only plans and commits.
The endpoint reaches the workers through ``storage_options`` alone (``AWS_ENDPOINT_URL``
is unset), so the options must travel with the tasks."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
import yaml
from conftest import _stop, start_external_cluster
from distributed import Client
from test_pipeline import TABLES

import bigseg
from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.io.commits import latest, referenced
from bigseg.io.storage import storage_for
from bigseg.pipeline import run_stages

pytestmark = pytest.mark.slow


def _scores(t) -> str:
    df = t.to_pandas().drop(columns=["as_of"]).sort_values("customer_id")
    df = df.reset_index(drop=True)
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()


def test_the_whole_pipeline_on_s3_with_workers_that_share_no_disk(
    s3, small_run, synth_data, tmp_path, tmp_path_factory, monkeypatch
):
    import s3fs

    def _visible(paths: list[str]) -> list[str]:  # here: shipped by value to the workers
        import os

        return [p for p in paths if os.path.exists(p)]

    fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint)
    fs.put(str(synth_data / "raw") + "/", f"{s3.name}/raw/", recursive=True)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # from the config only, on client and workers
    local_cfg, local_metrics = small_run
    doc = yaml.safe_load((local_cfg.output_dir.parent / "job.yaml").read_text())
    doc["data"] = {t: {"path": s3.url(f"raw/{t}")} for t in TABLES}
    doc["output"] = s3.url("out")
    doc["storage_options"] = {"endpoint_url": s3.endpoint}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_run_config(tmp_path / "job.yaml")

    cluster = start_external_cluster(
        tmp_path / "cluster", n_workers=2, hide=tmp_path_factory.getbasetemp()
    )
    try:
        with Client(cluster.address, timeout=30, set_as_default=False) as c:
            # on each worker: none of the client's data, output or temporary folders
            mine = [str(synth_data), str(tmp_path), str(local_cfg.output_dir)]
            seen = c.run(_visible, mine)
            assert len(seen) == 2 and all(v == [] for v in seen.values()), seen
            metrics = run_stages(cfg, c, resolve("cpu"))
    finally:
        _stop(cluster.processes)

    opts = {"endpoint_url": s3.endpoint}
    store = storage_for(s3.url("out"), opts)
    n, manifest = latest(store, s3.url("out"))
    assert n == 1 and f"scores/as_of={metrics['as_of']}" in manifest["datasets"]
    for path in referenced(manifest):
        assert store.is_file(s3.url(f"out/{path}")), path
    t = bigseg.read_scores(s3.url("out"), storage_options=opts)
    assert t.num_rows == metrics["n_customers"] == local_metrics["n_customers"]
    # the same config on local disk gives the same scores, bit for bit
    assert _scores(t) == _scores(bigseg.read_scores(local_cfg.output_dir))
    # nothing went to the client's disk but the config and the cluster's logs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster", "job.yaml"]
