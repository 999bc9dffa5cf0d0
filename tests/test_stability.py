"""Segment ids and names persist across re-runs; the migration matrix says who moved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.pipeline import run_stages
from bigseg.segment.naming import holds
from bigseg.segment.stability import match_segments
from bigseg.testing.outputs import files, metrics


def _segments(out) -> pd.DataFrame:
    """The committed ``segments`` dataset (exactly the files the latest commit lists)."""
    return pd.concat([pd.read_parquet(f) for f in files(out, "segments")], ignore_index=True)


def test_hungarian_matching_keeps_ids_and_gives_fresh_ones():
    rng = np.random.default_rng(0)
    old = rng.normal(size=(5, 4)) * 4
    perm = np.array([3, 0, 4, 1, 2])
    new = old[perm] + rng.normal(scale=0.05, size=(5, 4))
    ids, cont = match_segments(old, new, [10, 11, 12, 13, 14])
    assert ids == [10 + p for p in perm] and cont == ids
    # one segment vanished, one appeared far away
    new2 = np.vstack([new[:4], np.full((1, 4), 50.0)])
    ids2, cont2 = match_segments(old, new2, [10, 11, 12, 13, 14])
    assert ids2[:4] == ids[:4] and cont2[4] is None and ids2[4] == 15


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_rerun_with_more_data_keeps_ids_and_names(tmp_path, local_client):
    from bigseg.synth import generate

    generate(3000, tmp_path / "d", seed=5, chunk_size=1500, end_date="2026-09-30")
    tx = pd.read_parquet(tmp_path / "d" / "raw" / "transactions")
    cut = pd.Timestamp("2026-09-23 23:59:59")
    (tmp_path / "early").mkdir()
    (tmp_path / "late").mkdir()
    tx[tx["timestamp"] <= cut].to_parquet(tmp_path / "early" / "a.parquet")
    tx[tx["timestamp"] > cut].to_parquet(tmp_path / "late" / "b.parquet")
    doc = {
        "data": {"transactions": {"path": "early"}},
        "segmentation": {"k": 5},
        "prediction": {"targets": ["churn"], "n_estimators": 20},
        "output": "out",
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    run_stages(load_run_config(tmp_path / "job.yaml"), local_client, resolve("cpu"))
    first = metrics(tmp_path / "out")
    seg1 = _segments(tmp_path / "out")
    # one more week of data: the new file lands in the input directory
    (tmp_path / "late" / "b.parquet").rename(tmp_path / "early" / "b.parquet")
    run_stages(load_run_config(tmp_path / "job.yaml"), local_client, resolve("cpu"))
    second = metrics(tmp_path / "out")
    assert second["last_ingest"]["mode"] == "incremental"
    before = {s["id"]: s["name"] for s in first["segments"]}
    after = {s["id"]: s["name"] for s in second["segments"]}
    cont = second["segmentation"]["continues_previous"]
    kept = [int(i) for i, c in cont.items() if c is not None]
    assert len(kept) >= 4  # a week barely moves the centres
    facts = {s["id"]: s["facts"] for s in second["segments"]}
    for i in kept:  # a name stays unless it stopped being true (names state facts)
        assert after[i] == before[i] or not holds(before[i], facts[i]), (before[i], facts[i])
    assert sum(after[i] == before[i] for i in kept) >= len(kept) - 1
    # most customers stay in their segment, and the matrix accounts for all of them
    mig = second["segment_migration"]
    seg2 = _segments(tmp_path / "out")
    assert sum(mig.values()) == len(seg2)
    stayed = sum(n for k, n in mig.items() if k.split("->")[0] == k.split("->")[1])
    assert stayed / len(seg2) > 0.8
    both = seg1.merge(seg2, on="customer_id", suffixes=("_1", "_2"))
    assert (both["segment_1"] == both["segment_2"]).mean() > 0.8


def test_segment_reasons_name_the_feature_that_separates_the_nearest_segments():
    from bigseg.predict.scoring import segment_reasons

    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 10.0]], dtype=np.float32)
    Z = np.array([[0.2, 0.1], [2.9, -0.2]], dtype=np.float32)
    seg = np.array([0, 1])
    r1, r2 = segment_reasons(Z, seg, centres, ["recency", "spend"], top=2)
    # both are closest to each other's segment along 'recency'
    assert r1.tolist() == ["recency: low", "recency: high"]
    assert set(r2.tolist()) <= {"spend: low", "spend: high"}
