"""The features stage's writes overlap the segment stage (:class:`bigseg.pipeline.run.Run`):
awaited once it is done, timed with it, and never left half-published when the run fails
while they are in flight."""

from __future__ import annotations

import pandas as pd
import pytest
from test_pipeline import write_config

from bigseg.backend import resolve
from bigseg.io import commits
from bigseg.pipeline import run_stages
from bigseg.pipeline import segment as segment_stage
from bigseg.testing.outputs import committed, files


class SegmentFailed(RuntimeError):
    pass


def test_a_failed_segment_stage_publishes_no_features_and_leaves_no_staging(
    synth_data, tmp_path, local_client, monkeypatch
):
    cfg = write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out")
    fit = segment_stage.fit

    def failing(ctx, fs, prev, writer):
        # the features' writes were submitted and are still pending when this stage fails
        run_dirs = list((tmp_path / "out").glob(f"{commits.RUNS}/*/.staging/features-*"))
        assert run_dirs, "the features stage returned before its staging dir existed"
        fit(ctx, fs, prev, writer)
        raise SegmentFailed("segment stage failed after fitting")

    monkeypatch.setattr(segment_stage, "fit", failing)
    with pytest.raises(SegmentFailed):
        run_stages(cfg, local_client, resolve("cpu"), stages=("ingest", "features", "segment"))
    out = tmp_path / "out"
    assert not list(out.glob(f"{commits.RUNS}/*/.staging/features-*"))  # staging removed
    assert not list(out.glob(f"{commits.RUNS}/*/features/*"))  # nothing moved into place
    assert not committed(out).has("features")  # and nothing committed


def test_the_features_written_while_segmenting_are_the_whole_stage(small_run):
    cfg, metrics = small_run
    out = cfg.output_dir
    df = pd.concat([pd.read_parquet(p) for p in files(out, "features")], ignore_index=True)
    # every customer scored at as_of, once; the stage's report added after the wait
    assert len(df) == metrics["n_customers"] == df["customer_id"].nunique()
    assert metrics["timings"]["segment"] > 0 and metrics["timings"]["features"] > 0
