"""The pipeline publishes through the commit log (``DESIGN.md`` §7, issue 17): every
dataset listed file by file in ``_bigseg/commits/<n>.json``, read back through it, one
commit per run, the lease before the cluster, ``gc`` and the adoption of an output
written before the commit log."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import bigseg
from bigseg.backend import resolve
from bigseg.cli import main
from bigseg.errors import DatasetMissing, LeaseHeld
from bigseg.io.commits import COMMITS, latest, read_commit, referenced
from bigseg.io.lease import lease
from bigseg.io.output import Output
from bigseg.io.storage import local
from bigseg.pipeline import run_pipeline, run_stages
from bigseg.testing import outputs


@pytest.fixture
def copied(copied_run):
    """A private copy of the session's small run: ``(config, metrics)``."""
    return copied_run[1], copied_run[2]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_a_run_commits_every_dataset_file_by_file(small_run):
    cfg, metrics = small_run
    out = cfg.output_dir
    n, manifest = latest(local, out)
    assert n == 1 and manifest["parent"] == 0
    names = set(manifest["datasets"])
    assert {"store", "quarantine", "features", "segments", "audiences", "metrics"} <= names
    assert {"report", "models/LATEST", f"scores/as_of={metrics['as_of']}"} <= names
    version = manifest["datasets"]["models/LATEST"]["version"]
    assert f"models/{version}" in names
    for path in referenced(manifest):  # every listed file is there, with its checksum
        entry = next(
            f for e in manifest["datasets"].values() for f in e["files"] if f["path"] == path
        )
        assert path.startswith(f"runs/{manifest['run_id']}/")
        assert (out / path).stat().st_size == entry["size"]
        assert _sha(out / path) == entry["sha256"]
    # nothing is published outside the commit's run folder but bigseg's own objects
    assert sorted(p.name for p in out.iterdir()) == ["_bigseg", "cache", "runs"]


def test_read_scores_reads_exactly_the_committed_files(small_run):
    cfg, metrics = small_run
    t = bigseg.read_scores(cfg.output_dir)
    assert t.num_rows == metrics["n_customers"]
    assert t.column_names[:2] == ["customer_id", "as_of"]
    assert {str(d) for d in t.column("as_of").to_pylist()} == {metrics["as_of"]}
    listed = outputs.files(cfg.output_dir, f"scores/as_of={metrics['as_of']}")
    assert t.num_rows == sum(pq.read_metadata(p).num_rows for p in listed)
    with pytest.raises(DatasetMissing, match="no scores as of 1999-01-01"):
        bigseg.read_scores(cfg.output_dir, as_of="1999-01-01")


@pytest.mark.slow
def test_a_second_run_commits_on_top_and_carries_the_rest_forward(copied, local_client):
    cfg, metrics = copied
    out = cfg.output_dir
    _, first = latest(local, out)
    run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    n, second = latest(local, out)
    assert n == 2 and second["parent"] == 1 and second["run_id"] != first["run_id"]
    for name in ("store", "features", "segments", "models/LATEST"):
        assert second["datasets"][name] == first["datasets"][name]  # carried, not copied
    scores = f"scores/as_of={metrics['as_of']}"
    assert second["datasets"][scores]["files"][0]["path"].startswith(f"runs/{second['run_id']}/")
    # the first commit still reads as it did: its files were never rewritten
    for path in referenced(read_commit(local, out, 1)):
        assert (out / path).is_file()


def test_a_held_lease_refuses_a_run_before_the_cluster_starts(copied):
    cfg, _ = copied
    out = cfg.output_dir
    before = latest(local, out)
    with lease(local, out, "another bigseg run"):
        with pytest.raises(LeaseHeld, match="another bigseg run"):
            # a cluster config that cannot start: the lease must refuse first
            run_pipeline(cfg, cluster="/nonexistent/cluster.yaml", device="cpu")
    assert latest(local, out) == before


def test_gc_keeps_every_file_a_kept_commit_references(copied, local_client, capsys):
    cfg, _ = copied
    out = cfg.output_dir
    run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    first, second = read_commit(local, out, 1), read_commit(local, out, 2)
    only_first = referenced(first) - referenced(second)
    assert only_first  # commit 2 rewrote the scores and the metrics
    stray = out / "runs" / "dead-run" / "scores" / "part-00000.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"a run that died before committing")
    assert main(["gc", str(out.parent / "job.yaml"), "--keep", "1", "--quiet"]) == 0
    for path in referenced(second):
        assert (out / path).is_file(), path
    for path in only_first:
        assert not (out / path).exists(), path
    assert not stray.exists()
    assert [p.name for p in (out / COMMITS).iterdir()] == [f"{2:020d}.json"]
    assert bigseg.read_scores(out).num_rows > 0


def _legacify(out: Path) -> dict:
    """Turn a committed output into the layout bigseg wrote before the commit log (fixed
    folders, ``models/LATEST``, ``erasure_log.jsonl``); returns the old checksums."""
    o = Output.open(out)
    sums = {}
    for name in o.names():
        e = o.entry(name)
        if name == "models/LATEST":
            (out / "models").mkdir(exist_ok=True)
            (out / "models" / "LATEST").write_text(e["version"] + "\n")
            continue
        for rel, loc in o.members(name).items():
            dst = out / (f"{name}.json" if name == "metrics" else "report.html")
            if name not in ("metrics", "report"):
                dst = out / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(loc, dst)
            sums[str(dst.relative_to(out))] = _sha(dst)
    entry = {"version": 1, "key_fingerprint": "fp", "hashes": ["a" * 32], "count": 1}
    (out / "erasure_log.jsonl").write_text(json.dumps(entry) + "\n")
    shutil.rmtree(out / "_bigseg")
    shutil.rmtree(out / "runs")
    return sums


def test_an_output_from_before_the_commit_log_is_adopted_as_commit_1(copied, local_client):
    cfg, metrics = copied
    out = cfg.output_dir
    sums = _legacify(out)
    assert (out / "scores").is_dir() and (out / "models" / "LATEST").is_file()
    run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    adopted = read_commit(local, out, 1)
    assert adopted["run_id"].startswith("adopted-")
    for legacy_path, digest in sums.items():  # every old file, listed with its bytes
        name = legacy_path.split("/", 1)[0]
        assert any(f["sha256"] == digest for e in adopted["datasets"].values() for f in e["files"])
        assert not (out / name).exists(), f"{name} left beside the commit"
    assert adopted["datasets"]["models/LATEST"]["version"] == metrics["model_version"]
    assert latest(local, out)[0] == 2  # the score run built on the adopted state
    # the erasure log is never moved or rewritten
    assert json.loads((out / "erasure_log.jsonl").read_text())["hashes"] == ["a" * 32]
    assert bigseg.read_scores(out).num_rows == metrics["n_customers"]


@pytest.mark.slow
def test_segment_then_train_as_separate_commands(copied, local_client):
    """`bigseg segment` commits its segmenter as a version of its own; `bigseg score`
    refuses it (no models yet, exit 7); `bigseg train` takes it up and scoring works."""
    from bigseg.errors import ModelError

    cfg, _ = copied
    out = cfg.output_dir
    run_stages(cfg, local_client, resolve("cpu"), stages=("segment",))
    o = Output.open(out)
    seg_only = o.latest_model()
    assert o.read_json(f"models/{seg_only}", "manifest.json")["segmenter_only"] is True
    with pytest.raises(ModelError, match="segmenter only"):
        run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    run_stages(cfg, local_client, resolve("cpu"), stages=("train",))
    trained = Output.open(out).latest_model()
    assert trained != seg_only
    run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    assert bigseg.read_scores(out).num_rows > 0
