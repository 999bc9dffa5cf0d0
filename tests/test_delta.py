"""Delta Lake inputs (``format: delta``, :mod:`bigseg.io.delta`): real tables written here
with deltalake (delta-rs). A table's snapshot gives the same store and scores as the same
rows in Parquet; a pinned version reads that version; incremental ingest follows new
versions; tables whose files do not mean what they hold (deletion vectors, column mapping)
are refused naming the feature; without the package, ``format: delta`` is exit 2."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from bigseg.config import TableConfig, load_run_config, parse_run_config
from bigseg.errors import ConfigError, DataError
from bigseg.io import delta
from bigseg.store import ingest, open_store
from bigseg.store.reader import list_inputs, read_file


def _tx(n: int, seed: int, day0: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2024-01-01") + pd.to_timedelta(day0 + rng.integers(0, 100, n), unit="D")
    return pa.table(
        {
            "customer_id": rng.integers(1, 300, n),
            "timestamp": pa.array(ts.values.astype("datetime64[us]")),
            "amount": rng.gamma(2, 20, n).round(2),
            "channel": rng.choice(["web", "app", "store"], n),
        }
    )


def _rows(files, tc) -> pa.Table:
    """Every good row of ``files``, canonical columns, in a stable order."""
    t = pa.concat_tables(c.good for f in files for c in read_file(f, tc))
    return t.sort_by([(c, "ascending") for c in ("customer_id", "timestamp", "amount")])


def _delta(path, **kw) -> TableConfig:
    return TableConfig(path=str(path), format="delta", **kw)


def _config(tmp_path: Path, table: dict, **extra):
    doc = {"data": {"transactions": table}, "store": {"buckets": 8}, "output": "out", **extra}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    return load_run_config(tmp_path / "job.yaml")


def test_config_keys_and_bad_values_are_exit_2():
    ok = parse_run_config(
        {"data": {"transactions": {"path": "t", "format": "delta", "delta": {"version": 3}}}}
    )
    assert ok.data.transactions.delta.version == 3
    assert ok.data.transactions.resolved_format() == "delta"
    for bad, msg in [
        ({"format": "delta", "delta": {"version": -1}}, r"delta.version"),
        ({"format": "delta", "delta": {"version": "3"}}, r"delta.version"),
        ({"format": "delta", "delta": {"version": True}}, r"delta.version"),
        ({"format": "delta", "delta": {"snapshot": 3}}, r"delta.snapshot"),
        ({"format": "parquet", "delta": {"version": 1}}, r"delta: only for format: delta"),
        ({"delta": {"version": 1}}, r"data.transactions.delta: only for format: delta"),
    ]:
        doc = {"data": {"transactions": {"path": "t", **bad}}}
        with pytest.raises(ConfigError, match=msg) as e:
            parse_run_config(doc, source="job.yaml")
        assert e.value.exit_code == 2


def test_without_the_package_format_delta_is_exit_2_naming_the_extra(monkeypatch):
    real = delta.importlib.util.find_spec
    monkeypatch.setattr(
        delta.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "deltalake" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'bigseg\[delta\]'") as e:
        parse_run_config({"data": {"transactions": {"path": "t", "format": "delta"}}})
    assert e.value.exit_code == 2 and "data.transactions.format" in str(e.value)
    parse_run_config({"data": {"transactions": {"path": "t"}}})  # other formats need nothing


def test_snapshot_versions_and_partition_values(tmp_path):
    t0, t1 = _tx(500, 0), _tx(300, 1, day0=200)
    root = tmp_path / "tx"
    write_deltalake(root, t0, partition_by=["channel"])
    write_deltalake(root, t1, mode="append", partition_by=["channel"])
    # naive timestamps are timestamp_ntz in Delta: a reader feature bigseg honours
    assert "timestampNtz" in DeltaTable(root).protocol().reader_features
    latest = list_inputs("transactions", _delta(root), tmp_path)
    # one input per data file of the snapshot, read as Parquet; the partition column is
    # not in the files, it comes from the log
    assert len(latest) == len(DeltaTable(root).file_uris()) == 6
    assert all(f.format == "parquet" and Path(f.path).is_file() for f in latest)
    assert {f.partition["channel"] for f in latest} == {"web", "app", "store"}
    assert "channel" not in pq.read_schema(latest[0].path).names
    got = _rows(latest, _delta(root))
    want = pa.concat_tables([t0, t1]).sort_by(
        [(c, "ascending") for c in ("customer_id", "timestamp", "amount")]
    )
    assert got.select(want.column_names).equals(want)
    # a pinned version reads that version's rows only
    v0 = _delta(root, delta={"version": 0})
    first = list_inputs("transactions", v0, tmp_path)
    assert _rows(first, v0).num_rows == t0.num_rows
    # data files never change: the old version's inputs are inputs of the new one too,
    # so incremental ingest reads only what a version added
    assert {json.dumps(f.fingerprint()) for f in first} < {
        json.dumps(f.fingerprint()) for f in latest
    }
    with pytest.raises(ConfigError, match=r"delta.version: 7, but the latest version .* is 1"):
        list_inputs("transactions", _delta(root, delta={"version": 7}), tmp_path)


def test_wrong_path_or_format_is_named(tmp_path):
    root = tmp_path / "tx"
    write_deltalake(root, _tx(50, 2))
    # given as a Parquet directory, it would read files the table removed: refused
    with pytest.raises(ConfigError, match=r"is a Delta table .*format: delta") as e:
        list_inputs("transactions", TableConfig(path=str(root)), tmp_path)
    assert e.value.exit_code == 2
    with pytest.raises(DataError, match=r"does not exist"):
        list_inputs("transactions", _delta(tmp_path / "none"), tmp_path)
    with pytest.raises(DataError, match=r"is not a Delta table"):
        list_inputs("transactions", _delta(tmp_path), tmp_path)


def _z85(data: bytes) -> str:
    """Z85 (the Delta protocol's base85 for inline deletion vectors)."""
    chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
    out = []
    for i in range(0, len(data), 4):
        v = struct.unpack(">I", data[i : i + 4])[0]
        out += [chars[v // 85**k % 85] for k in range(4, -1, -1)]
    return "".join(out)


def _delete_rows_by_deletion_vector(root: Path, rows: list[int]) -> None:
    """Commit a deletion vector (inline, as the Delta protocol defines it) that deletes
    ``rows`` of the table's one data file, as Spark or Databricks would: delta-rs writes
    none. The vector is a RoaringBitmapArray: magic, one 32-bit bitmap with key 0 in the
    portable format (cookie 12346, one array container)."""
    add = pa.table(DeltaTable(root).get_add_actions(flatten=True)).to_pylist()[0]
    rows = sorted(rows)
    bitmap = struct.pack("<IIHHI", 12346, 1, 0, len(rows) - 1, 16)
    bitmap += b"".join(struct.pack("<H", r) for r in rows)
    dv = struct.pack("<IQI", 1681511377, 1, 0) + bitmap
    assert len(dv) % 4 == 0
    now = int(time.time() * 1000)
    file = {"path": add["path"], "partitionValues": {}, "size": add["size_bytes"]}
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE"}},
        {"remove": {**file, "deletionTimestamp": now, "dataChange": True}},
        {
            "add": {
                **file,
                "modificationTime": add["modification_time"],
                "dataChange": True,
                "stats": json.dumps({"numRecords": add["num_records"]}),
                "deletionVector": {
                    "storageType": "i",
                    "pathOrInlineDv": _z85(dv),
                    "sizeInBytes": len(dv),
                    "cardinality": len(rows),
                },
            }
        },
    ]
    log = root / "_delta_log" / f"{DeltaTable(root).version() + 1:020d}.json"
    log.write_text("".join(json.dumps(a) + "\n" for a in actions))


def test_deletion_vectors_are_refused_naming_the_feature(tmp_path):
    root = tmp_path / "tx"
    write_deltalake(root, _tx(40, 3), configuration={"delta.enableDeletionVectors": "true"})
    assert "deletionVectors" in DeltaTable(root).protocol().reader_features
    # enabled but none in the snapshot: every file means what it holds, so it is read
    assert len(list_inputs("transactions", _delta(root), tmp_path)) == 1
    _delete_rows_by_deletion_vector(root, [1, 5])
    dvs = pa.RecordBatchReader.from_stream(DeltaTable(root).deletion_vectors()).read_all()
    assert dvs.column("selection_vector")[0].as_py()[:6] == [True, False, True, True, True, False]
    with pytest.raises(DataError, match=r"deletion vectors \(deletionVectors\).*REORG") as e:
        list_inputs("transactions", _delta(root), tmp_path)
    assert e.value.exit_code == 3 and "export the snapshot to Parquet" in str(e.value)
    # the version before the delete has none: readable
    assert len(list_inputs("transactions", _delta(root, delta={"version": 0}), tmp_path)) == 1


def test_column_mapping_is_refused_naming_the_feature(tmp_path):
    root = tmp_path / "tx"
    write_deltalake(root, _tx(40, 4), configuration={"delta.columnMapping.mode": "name"})
    with pytest.raises(DataError, match=r"column mapping \(columnMapping.*= name\)") as e:
        list_inputs("transactions", _delta(root), tmp_path)
    assert e.value.exit_code == 3


def test_other_reader_features_are_refused_naming_them(tmp_path):
    """A reader feature bigseg does not know it honours (here variant shredding, which
    delta-rs reads) is refused by name; one delta-rs itself cannot read is refused too."""
    root = tmp_path / "tx"
    write_deltalake(root, _tx(40, 8))
    for feature, match in [
        ("variantShredding-preview", r"reader feature\(s\) variantShredding-preview"),
        ("fooBar", r"cannot read the Delta log .*fooBar"),
    ]:
        p = DeltaTable(root).protocol()  # the features it has, and one more
        protocol = {"minReaderVersion": 3, "minWriterVersion": 7}
        protocol["readerFeatures"] = [*p.reader_features, feature]
        protocol["writerFeatures"] = [*p.writer_features, feature]
        log = root / "_delta_log" / f"{DeltaTable(root).version() + 1:020d}.json"
        log.write_text(json.dumps({"protocol": protocol}) + "\n")
        with pytest.raises(DataError, match=match) as e:
            list_inputs("transactions", _delta(root), tmp_path)
        assert e.value.exit_code == 3
        log.unlink()


def test_incremental_ingest_follows_the_versions(tmp_path, local_client):
    root = tmp_path / "tx"
    t0, t1 = _tx(2000, 5), _tx(300, 6, day0=150)
    write_deltalake(root, t0, partition_by=["channel"])
    cfg = _config(tmp_path, {"path": "tx", "format": "delta"})
    first = ingest(cfg, local_client)
    assert first.manifest["last_ingest"]["mode"] == "full"
    assert first.manifest["tables"]["transactions"]["rows"] == t0.num_rows
    assert ingest(cfg, local_client).manifest == first.manifest  # same version: nothing new
    write_deltalake(root, t1, mode="append", partition_by=["channel"])  # version 1: new files
    inc = ingest(cfg, local_client).manifest
    assert inc["last_ingest"]["mode"] == "incremental" and inc["last_ingest"]["new_files"] == 3
    assert inc["tables"]["transactions"]["rows"] == t0.num_rows + t1.num_rows
    DeltaTable(root).delete("amount > 60")  # version 2: files removed and rewritten
    kept = pa.concat_tables([t0, t1]).filter(pa.compute.field("amount") <= 60).num_rows
    after = ingest(cfg, local_client).manifest
    assert after["last_ingest"]["mode"] == "full"  # an ingested input disappeared: rebuilt
    assert after["tables"]["transactions"]["rows"] == kept


@pytest.mark.slow  # the S3 bonus; the default suite keeps within its time budget
def test_delta_on_s3(s3, tmp_path):
    """A table on an S3-compatible store: delta-rs reads the log with options mapped from
    bigseg's (an http:// endpoint allows plain HTTP), the files stream through fsspec."""
    t = _tx(400, 7)
    opts = {"AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    write_deltalake(s3.url("lake/tx"), t, partition_by=["channel"], storage_options=opts)
    tc = _delta(s3.url("lake/tx"))
    files = list_inputs("transactions", tc, tmp_path)
    assert files and all(f.path.startswith(s3.url("lake/tx/channel=")) for f in files)
    assert _rows(files, tc).num_rows == t.num_rows
    assert delta.delta_options(s3.url(), {"region": "eu-west-1", "use_ssl": False}) == {
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
    }


@pytest.mark.slow  # a second whole pipeline run (~10 s); the default suite is near its budget and
# test_snapshot_versions_and_partition_values checks the rows equal at the reader
def test_same_scores_as_the_same_rows_in_parquet(small_run, synth_data, tmp_path, local_client):
    """The acceptance case: the generated transactions as a Delta table (partitioned by
    channel, one version per Parquet file) give the scores the Parquet files give."""
    from test_pipeline import read_scores, write_config

    from bigseg.backend import resolve
    from bigseg.pipeline import run_stages
    from bigseg.schema import TABLES

    parts = sorted((synth_data / "raw" / "transactions").glob("*.parquet"))
    root = tmp_path / "tx"
    for i, p in enumerate(parts):
        write_deltalake(
            root, pq.read_table(p), mode="append" if i else "error", partition_by=["channel"]
        )
    assert DeltaTable(root).version() == len(parts) - 1
    data = {t: {"path": str(synth_data / "raw" / t)} for t in TABLES}
    data["transactions"] = {"path": str(root), "format": "delta"}
    cfg = write_config(tmp_path / "job.yaml", synth_data, tmp_path / "out", data=data)
    run_stages(cfg, local_client, resolve("cpu"))
    ingested = [i["path"] for i in open_store(cfg.output_dir).manifest["inputs"]]
    assert sum(p.startswith(str(root)) for p in ingested) == len(DeltaTable(root).file_uris())
    parquet_cfg, _ = small_run
    want = read_scores(parquet_cfg.output_dir)
    got = read_scores(cfg.output_dir)
    pd.testing.assert_frame_equal(got, want)
