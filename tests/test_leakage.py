"""No future data reaches a score: cutting the input at ``as_of`` leaves the scores
unchanged (issue 19 item 1). Every stage that could look past ``as_of`` (features,
labels of the stacked windows, CLV fits, vocabularies, campaign responses, the
backtest's choice of model, BG/NBD or blend) is in the path."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_pipeline import TABLES, read_scores, write_config

from bigseg.backend import resolve
from bigseg.pipeline import run_stages

#: the time column of each table (``bigseg/schema.py``)
TIME = {"transactions": "timestamp", "events": "timestamp", "campaigns": "sent_at",
        "reviews": "timestamp"}  # fmt: skip


def _cut(src, dst, as_of: dt.date) -> int:
    """Copy every raw table of ``src`` to ``dst`` without any row after ``as_of``, and
    without a campaign response after it (a response is known only when it happens).
    Returns the transactions dropped."""
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    dropped = 0
    for t in TABLES:
        df = pd.read_parquet(src / "raw" / t)
        (dst / "raw" / t).mkdir(parents=True)
        if t in TIME:
            keep = df[TIME[t]] < end
            dropped += int((~keep).sum()) if t == "transactions" else 0
            df = df[keep]
        if "responded_at" in df:
            df.loc[df["responded_at"] >= end, "responded_at"] = pd.NaT
        pq.write_table(pa_table(df), dst / "raw" / t / "part-0.parquet")
    return dropped


def pa_table(df: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)


@pytest.mark.slow
def test_cutting_the_input_at_as_of_leaves_the_scores_unchanged(synth_data, tmp_path, local_client):
    last = pd.read_parquet(synth_data / "raw" / "transactions", columns=["timestamp"])
    as_of = (last["timestamp"].max() - pd.Timedelta(days=120)).date()
    cut = tmp_path / "cut"
    assert _cut(synth_data, cut, as_of) > 0  # the future was there, and is gone
    scores, metrics = [], []
    for name, data in (("full", synth_data), ("cut", cut)):
        cfg = write_config(tmp_path / f"{name}.yaml", data, tmp_path / name, as_of=str(as_of))
        metrics.append(run_stages(cfg, local_client, resolve("cpu")))
        scores.append(read_scores(tmp_path / name))
    full, short = scores
    assert len(full) > 1000
    pd.testing.assert_frame_equal(full, short)
    assert metrics[0]["churn"]["training_windows"] == metrics[1]["churn"]["training_windows"]
