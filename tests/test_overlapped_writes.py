"""The features stage's writes overlap the segment stage (:class:`bigseg.pipeline.run.Run`):
``features/`` is written while the segments are fitted, awaited once that stage is done,
timed with it, and never left half-published when the run fails while it is in flight."""

from __future__ import annotations

import pandas as pd
import pytest
from test_pipeline import write_config

from bigseg.backend import resolve
from bigseg.io import commits
from bigseg.pipeline import run_stages
from bigseg.pipeline import segment as segment_stage
from bigseg.testing.outputs import committed, files


class StageFailed(RuntimeError):
    pass


@pytest.mark.parametrize(
    ("module", "name", "stages", "writing"),
    [
        (segment_stage, "fit", ("ingest", "features", "segment"), "features"),
    ],
)
def test_a_failed_stage_publishes_no_dataset_the_stage_before_was_writing(
    synth_data, tmp_path, local_client, monkeypatch, module, name, stages, writing
):
    cfg = write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out")
    out = tmp_path / "out"
    real = getattr(module, name)

    def failing(*args):
        # the stage before's writes were submitted and are pending when this one fails
        assert list(out.glob(f"{commits.RUNS}/*/.staging/{writing}-*"))
        real(*args)
        raise StageFailed(f"{name} failed after it ran")

    monkeypatch.setattr(module, name, failing)
    with pytest.raises(StageFailed):
        run_stages(cfg, local_client, resolve("cpu"), stages=stages)
    assert not list(out.glob(f"{commits.RUNS}/*/.staging/{writing}-*"))  # staging removed
    assert not list(out.glob(f"{commits.RUNS}/*/{writing}/*"))  # nothing moved into place
    assert not committed(out).has(writing)  # and nothing committed


def test_the_datasets_written_while_the_next_stage_ran_are_whole(small_run):
    cfg, metrics = small_run
    out = cfg.output_dir
    read = lambda name: pd.concat([pd.read_parquet(p) for p in files(out, name)])  # noqa: E731
    feats, segs = read("features"), read("segments")
    # every customer at as_of, once, in both; the stages' reports added after the wait
    assert len(feats) == len(segs) == metrics["n_customers"] == feats["customer_id"].nunique()
    assert set(feats["customer_id"]) == set(segs["customer_id"])
    assert metrics["projection"] and "segment_migration" in metrics
