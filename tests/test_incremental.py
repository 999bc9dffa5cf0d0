"""Incremental ingest: new files append into the buckets they touch; untouched bucket
files are not rewritten; re-running with nothing new changes nothing; features at a
cutoff do not see rows added after it."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import yaml

from bigseg.config import load_run_config
from bigseg.features import bucket_frames, to_us
from bigseg.store import buckets, ingest, open_store
from bigseg.testing.outputs import committed


def _tx(ids, day0, n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n),
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(day0 + rng.integers(0, 100, n), unit="D"),
            "amount": rng.gamma(2, 20, n).round(2),
            "channel": rng.choice(["web", "app"], n),
        }
    )


def _inodes(out):
    """``{member: (path, inode)}`` of the committed store's part files."""
    members = committed(out).members("store")
    return {m: (str(p), os.stat(p).st_ino) for m, p in members.items() if m.endswith(".parquet")}


def test_new_files_touch_only_their_buckets(tmp_path, local_client):
    d = tmp_path / "tx"
    d.mkdir()
    _tx(np.arange(1, 400), 0, 4000, 0).to_parquet(d / "a.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {"data": {"transactions": {"path": "tx"}}, "store": {"buckets": 16}, "output": "out"}
        )
    )
    cfg = load_run_config(tmp_path / "job.yaml")
    first = ingest(cfg, local_client)
    assert first.manifest["last_ingest"]["mode"] == "full"
    out = tmp_path / "out"
    before, n = _inodes(out), committed(out).parent
    # nothing new: the same store, not even re-published (no new commit)
    again = ingest(cfg, local_client)
    assert again.manifest == first.manifest and _inodes(out) == before
    assert committed(out).parent == n
    # a new file with two customers only (later dates): touches at most two buckets
    _tx(np.array([7, 12]), 300, 20, 1).to_parquet(d / "b.parquet")
    inc = ingest(cfg, local_client)
    li = inc.manifest["last_ingest"]
    assert li["mode"] == "incremental" and li["new_files"] == 1
    assert 1 <= len(li["changed_buckets"]) <= 2
    assert committed(out).parent == n + 1 and inc.root != first.root  # a new run's store
    after = _inodes(out)
    for rel, file in before.items():  # every old file is still the same file, not a copy
        assert after[rel] == file
    assert len(after) == len(before) + len(li["changed_buckets"])
    assert inc.manifest["tables"]["transactions"]["rows"] == 4020
    # buckets with two parts read back sorted by customer then time
    for k in li["changed_buckets"]:
        t = inc.read_bucket("transactions", k).to_pandas()
        keys = list(zip(t["customer_id"], t["timestamp"], strict=True))
        assert keys == sorted(keys)
    # the same result as a full ingest of both files
    _assert_as_full_ingest(inc, d, tmp_path / "full", 16, local_client)


def _assert_as_full_ingest(store, d, where, n_buckets: int, client) -> None:
    """``store`` holds what a full ingest of the files in ``d`` into ``n_buckets``
    buckets (a fresh output under ``where``) does, bucket by bucket."""
    where.mkdir()
    (where / "job.yaml").write_text(
        yaml.safe_dump(
            {"data": {"transactions": {"path": str(d)}}, "store": {"buckets": n_buckets},
             "output": "out"}
        )
    )  # fmt: skip
    full = ingest(load_run_config(where / "job.yaml"), client)
    for k in range(n_buckets):
        a = store.read_bucket("transactions", k).to_pandas()
        b = full.read_bucket("transactions", k).to_pandas()
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def _one_file_job(tmp_path, n_ids: int, n_rows: int):
    """``tx/a.parquet`` and a job ingesting ``tx`` with the automatic bucket count."""
    d = tmp_path / "tx"
    d.mkdir()
    _tx(np.arange(1, n_ids), 0, n_rows, 0).to_parquet(d / "a.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump({"data": {"transactions": {"path": "tx"}}, "output": "out"})
    )
    return d, load_run_config(tmp_path / "job.yaml")


def test_a_changed_file_triggers_a_full_rebuild(tmp_path, local_client):
    d, cfg = _one_file_job(tmp_path, 100, 500)
    ingest(cfg, local_client)
    _tx(np.arange(1, 100), 0, 300, 5).to_parquet(d / "a.parquet")  # rewritten in place
    st = ingest(cfg, local_client)
    assert st.manifest["last_ingest"]["mode"] == "full"
    assert st.manifest["tables"]["transactions"]["rows"] == 300


def test_a_store_that_outgrows_its_buckets_is_rebuilt_with_more(
    tmp_path, local_client, monkeypatch
):
    d, cfg = _one_file_job(tmp_path, 400, 4000)
    first = ingest(cfg, local_client)
    assert first.n_buckets == 4  # a small input on 2 workers
    # the input is now 3 buckets' worth: still 4, nothing new, nothing rebuilt
    monkeypatch.setattr(buckets, "BUCKET_INPUT_BYTES", (d / "a.parquet").stat().st_size // 3)
    assert ingest(cfg, local_client).manifest == first.manifest
    # a second file as large: ~6 buckets' worth wants 8, twice the store's count
    _tx(np.arange(1, 600), 200, 4000, 1).to_parquet(d / "b.parquet")
    grown = ingest(cfg, local_client)
    assert grown.n_buckets == 8 and grown.manifest["last_ingest"]["mode"] == "full"
    assert grown.manifest["tables"]["transactions"]["rows"] == 8000
    _assert_as_full_ingest(grown, d, tmp_path / "fresh", 8, local_client)
    # wanting fewer again never shrinks a store: a new file is appended incrementally
    monkeypatch.undo()
    _tx(np.array([7, 12]), 300, 20, 2).to_parquet(d / "c.parquet")
    inc = ingest(cfg, local_client)
    assert inc.n_buckets == 8 and inc.manifest["last_ingest"]["mode"] == "incremental"


def test_features_at_a_cutoff_ignore_rows_ingested_later(tmp_path, local_client):
    d = tmp_path / "tx"
    d.mkdir()
    _tx(np.arange(1, 200), 0, 3000, 0).to_parquet(d / "a.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {"data": {"transactions": {"path": "tx"}}, "store": {"buckets": 4}, "output": "out"}
        )
    )
    cfg = load_run_config(tmp_path / "job.yaml")
    ingest(cfg, local_client)
    cut = {"score": to_us("2024-04-01")}
    before = [
        bucket_frames(open_store(tmp_path / "out"), k, cut, (), 90, False)["frames"]["score"]
        for k in range(4)
    ]
    # later rows for the same customers, and new customers, all after the cutoff
    _tx(np.arange(1, 400), 120, 3000, 9).to_parquet(d / "b.parquet")
    ingest(cfg, local_client)
    after = [
        bucket_frames(open_store(tmp_path / "out"), k, cut, (), 90, False)["frames"]["score"]
        for k in range(4)
    ]
    for a, b in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(a, b)
