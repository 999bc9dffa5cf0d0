"""Incremental features: after an incremental ingest only the buckets it touched are
recomputed, and the features equal a from-scratch computation on all the data."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import yaml

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.erase import erase
from bigseg.features import cache
from bigseg.pipeline import run_stages
from bigseg.testing.outputs import files

STAGES = ("ingest", "features")


def _tx(ids, n, seed, day_max=300):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n),
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, day_max, n), unit="D"),
            "amount": rng.gamma(2, 20, n).round(2),
            "channel": rng.choice(["web", "app"], n),
            "category": rng.choice(["books", "garden", "toys"], n),
        }
    )


def _job(root, out="out"):
    (root / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"transactions": {"path": "tx"}},
                "store": {"buckets": 8},
                "as_of": "2024-10-31",
                "output": out,
            }
        )
    )
    return load_run_config(root / "job.yaml")


def _features(out) -> pd.DataFrame:
    parts = [pd.read_parquet(p) for p in files(out, "features") if p.suffix == ".parquet"]
    df = pd.concat(parts, ignore_index=True)
    return df.sort_values("customer_id").reset_index(drop=True)


def _digest(out) -> dict:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(files(out, "features"))
        if p.suffix == ".parquet"
    }


def test_only_touched_buckets_recomputed(tmp_path, local_client):
    (tmp_path / "tx").mkdir()
    _tx(np.arange(1, 600), 6000, 0).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = _job(tmp_path)
    out = tmp_path / "out"

    m = run_stages(cfg, local_client, resolve("cpu"), STAGES)
    assert m["features_cache"] == {"buckets": 8, "reused": 0, "recomputed": 8}
    first = _digest(out)

    # nothing new: every bucket comes from the cache, the output is byte-identical
    m = run_stages(cfg, local_client, resolve("cpu"), STAGES)
    assert m["features_cache"] == {"buckets": 8, "reused": 8, "recomputed": 0}
    assert _digest(out) == first

    # late transactions of one customer (before as_of): one bucket is recomputed
    _tx(np.array([42]), 5, 1).to_parquet(tmp_path / "tx" / "b.parquet")
    m = run_stages(cfg, local_client, resolve("cpu"), STAGES)
    assert m["last_ingest"]["mode"] == "incremental"
    assert len(m["last_ingest"]["changed_buckets"]) == 1
    assert m["features_cache"] == {"buckets": 8, "reused": 7, "recomputed": 1}
    inc = _features(out)
    assert inc.loc[inc.customer_id == 42, "frequency"].item() > 0

    # the same features as a from-scratch run on all the data in a fresh output
    fresh = run_stages(_job(tmp_path, "fresh"), local_client, resolve("cpu"), STAGES)
    assert fresh["features_cache"]["recomputed"] == 8
    pd.testing.assert_frame_equal(inc, _features(tmp_path / "fresh"))


def test_changed_request_or_code_misses(tmp_path, local_client):
    (tmp_path / "tx").mkdir()
    _tx(np.arange(1, 300), 2000, 2).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = _job(tmp_path)
    run_stages(cfg, local_client, resolve("cpu"), STAGES)
    # another as_of: every customer's recency changes, nothing may be reused
    cfg2 = cfg.model_copy(update={"as_of": pd.Timestamp("2024-09-30").date()})
    m = run_stages(cfg2, local_client, resolve("cpu"), STAGES)
    assert m["features_cache"]["reused"] == 0
    # one entry per bucket: the old date's entries were replaced, not accumulated
    root = cache.cache_root(tmp_path / "out")
    buckets = sorted(root.glob("bucket=*"))
    assert len(buckets) == 8 and all(len(list(b.iterdir())) == 1 for b in buckets)
    # the entries' staging (inside the cache) holds nothing once they are written
    assert not list(root.glob(".staging/*"))


def test_erase_clears_the_cache(tmp_path, local_client, monkeypatch):
    monkeypatch.setenv("BIGSEG_PSEUDONYM_KEY", "feature-cache-test-key-0123")
    (tmp_path / "tx").mkdir()
    _tx(np.arange(1, 300), 2000, 3).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = _job(tmp_path)
    run_stages(cfg, local_client, resolve("cpu"), STAGES)
    root = cache.cache_root(tmp_path / "out")
    assert any(root.rglob("*.arrow"))
    ids = tmp_path / "ids.txt"
    ids.write_text("7\n8\n")
    summary = erase(cfg, ids, local_client)
    assert "cache/features" in summary["cleaned"]
    assert not root.exists()
    m = run_stages(cfg, local_client, resolve("cpu"), STAGES)
    assert m["features_cache"]["recomputed"] == 8
    assert not _features(tmp_path / "out").customer_id.isin([7, 8]).any()
