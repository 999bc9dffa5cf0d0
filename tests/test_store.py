"""The bucketed store: stable hashing, ingest layouts, errors that name file and column,
atomic publication."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bigseg.config import load_run_config
from bigseg.errors import DataError, PublishError
from bigseg.io.commit import publish_dir, recover
from bigseg.store import ingest, open_store
from bigseg.store.buckets import auto_buckets, bucket_of, hash_ids, outgrown
from bigseg.store.validate import validate_inputs
from bigseg.testing.outputs import committed, files


def test_hash_is_stable_and_pinned():
    # pinned values: a change here would silently move every customer to another bucket
    # integer ids: SplitMix64; its published first output for seed 0 is 0xE220A8397B1DCDAF
    assert int(hash_ids(np.array([0], dtype=np.int64))[0]) == 0xE220A8397B1DCDAF
    assert bucket_of(np.array([0, 1, 2, 3, 42], dtype=np.int64), 8).tolist() == [7, 1, 6, 5, 5]
    assert bucket_of(pa.array(["00001", "00002", "abc"]), 8).tolist() == [6, 3, 0]
    # int32 input and chunked arrays hash like int64
    assert (
        bucket_of(np.arange(100, dtype=np.int32), 16)
        == bucket_of(np.arange(100, dtype=np.int64), 16)
    ).all()
    chunked = pa.chunked_array([["a", "bb"], ["ccc"]])
    assert (hash_ids(chunked) == hash_ids(pa.array(["a", "bb", "ccc"]))).all()


def test_bucket_is_the_hash_modulo_the_count():
    # power-of-two counts take a mask, the others a division: both are hash % n
    ids = np.random.default_rng(0).integers(-(2**62), 2**62, 10_000)
    for n in (1, 3, 8, 100, 4096):
        assert (bucket_of(ids, n) == (hash_ids(ids) % np.uint64(n)).astype(np.int32)).all()


def test_hash_spreads_ids_evenly():
    counts = np.bincount(bucket_of(np.arange(100_000), 16), minlength=16)
    assert counts.min() > 0.9 * 100_000 / 16
    s = np.bincount(bucket_of(pa.array([f"{i:07d}" for i in range(50_000)]), 8), minlength=8)
    assert s.min() > 0.9 * 50_000 / 8


def test_auto_buckets():
    assert auto_buckets(0, 1) == 4
    assert auto_buckets(0, 2) == 4
    assert auto_buckets(300 * 2**20, 2) == 8  # 5 buckets' worth, rounded to a power of two
    assert auto_buckets(0, 16) == 32
    assert auto_buckets(10 * 2**30, 2) == 256  # 10 GiB of input: ~64 MiB per bucket
    assert auto_buckets(10**15, 2) == 4096


def test_a_store_is_rebuilt_only_once_it_wants_twice_its_buckets():
    assert not outgrown(4, 4) and not outgrown(8, 4)  # never shrunk
    assert outgrown(4, 8) and outgrown(4, 16)


def _job(tmp_path, data: dict, **extra) -> object:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({"data": data, "output": "out", **extra}))
    return load_run_config(tmp_path / "job.yaml")


def _tx(n=2000, n_cust=300, seed=0, id_fmt=None):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, n_cust, n)
    return pd.DataFrame(
        {
            "customer_id": [id_fmt.format(i) for i in ids] if id_fmt else ids,
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 500, n), unit="D"),
            "amount": rng.gamma(2, 20, n).round(2),
        }
    )


def test_ingest_buckets_are_sorted_and_partition_customers(local_client, tmp_path):
    df = _tx()
    (tmp_path / "tx").mkdir()
    for i in range(3):
        df.iloc[i * 700 : (i + 1) * 700].to_parquet(tmp_path / "tx" / f"p{i}.parquet")
    cfg = _job(tmp_path, {"transactions": {"path": "tx"}}, store={"buckets": 4})
    store = ingest(cfg, local_client)
    assert store.n_buckets == 4 and store.manifest["id_type"] == "int64"
    seen = []
    for k in range(4):
        t = store.read_bucket("transactions", k).to_pandas()
        assert (bucket_of(t["customer_id"].to_numpy(), 4) == k).all()
        keys = list(zip(t["customer_id"], t["timestamp"], strict=True))
        assert keys == sorted(keys)
        seen.append(t)
    back = (
        pd.concat(seen).sort_values(["customer_id", "timestamp", "amount"]).reset_index(drop=True)
    )
    want = df.sort_values(["customer_id", "timestamp", "amount"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, want, check_dtype=False)
    assert store.manifest["tables"]["transactions"]["rows"] == len(df)
    # the store's encodings: delta for ids and times, no dictionary tried on numbers
    f = next(p for p in files(tmp_path / "out", "store") if p.parent.parent.name == "transactions")
    k = int(f.parent.name[len("bucket=") :])
    assert str(f) in {str(p) for p in store.parts["transactions"][k]}
    rg = pq.read_metadata(f).row_group(0)
    enc = {rg.column(i).path_in_schema: rg.column(i).encodings for i in range(rg.num_columns)}
    assert "DELTA_BINARY_PACKED" in enc["customer_id"] and "DELTA_BINARY_PACKED" in enc["timestamp"]
    assert not any("DICTIONARY" in e for e in enc["amount"])


def test_store_encodings_by_column_type():
    from bigseg.store.ingest import store_encodings

    schema = pa.schema(
        [
            ("customer_id", pa.int64()),
            ("t", pa.timestamp("us")),
            ("amount", pa.float64()),
            ("channel", pa.string()),
            ("ok", pa.bool_()),
            ("age", pa.int16()),
        ]
    )
    assert store_encodings(schema) == {
        "use_dictionary": ["channel"],
        "column_encoding": {
            "customer_id": "DELTA_BINARY_PACKED",
            "t": "DELTA_BINARY_PACKED",
            "age": "DELTA_BINARY_PACKED",
        },
    }
    assert store_encodings(pa.schema([("x", pa.float64())])) == {
        "use_dictionary": False,
        "column_encoding": None,
    }


def test_hive_partitions_and_csv_formats(local_client, tmp_path):
    df = _tx(id_fmt="C{:05d}")
    df["year"] = df["timestamp"].dt.year
    pq.write_to_dataset(
        pa.Table.from_pandas(df.drop(columns=["year"]).assign(yr=df["year"]), preserve_index=False),
        tmp_path / "hive",
        partition_cols=["yr"],
    )
    out = df.assign(d=df["timestamp"].dt.strftime("%d/%m/%Y"))[["customer_id", "d", "amount"]]
    out.to_csv(tmp_path / "tx.csv", sep="|", index=False)
    cfg = _job(
        tmp_path,
        {
            "transactions": {
                "path": "tx.csv",
                "columns": {"timestamp": "d"},
                "csv": {"delimiter": "|", "timestamp_format": "%d/%m/%Y"},
            }
        },
    )
    store = ingest(cfg, local_client)
    assert store.manifest["id_type"] == "string"
    got = pd.concat(
        store.read_bucket("transactions", k).to_pandas() for k in range(store.n_buckets)
    )
    assert sorted(got["customer_id"]) == sorted(df["customer_id"])
    assert got["timestamp"].min() == df["timestamp"].min().normalize()
    cfg2 = _job(tmp_path, {"transactions": {"path": "hive"}})
    store2 = ingest(cfg2, local_client)
    assert store2.manifest["tables"]["transactions"]["rows"] == len(df)


def test_missing_column_names_file_and_column(local_client, tmp_path):
    _tx().rename(columns={"amount": "Total"}).to_parquet(tmp_path / "tx.parquet")
    cfg = _job(tmp_path, {"transactions": {"path": "tx.parquet"}})
    with pytest.raises(DataError) as e:
        ingest(cfg, local_client)
    msg = str(e.value)
    assert "tx.parquet" in msg and "'amount'" in msg and "Total" in msg


def test_bad_values_and_null_ids_are_named(local_client, tmp_path):
    df = _tx(50).astype({"amount": str})
    df.loc[3, "amount"] = "twelve"
    df.to_csv(tmp_path / "a.csv", index=False)
    df2 = _tx(50)
    df2["customer_id"] = df2["customer_id"].astype("Int64")
    df2.loc[5, "customer_id"] = pd.NA
    df2.to_parquet(tmp_path / "b.parquet")
    # 1 bad row of 50 is more than the default 1%: refused, naming file, row, column, rule
    cfg = _job(tmp_path, {"transactions": {"path": "a.csv"}})
    with pytest.raises(
        DataError, match=r"amount: not a number: 1 \(e\.g\. .*a\.csv row 3, value 'twelve'\)"
    ):
        ingest(cfg, local_client)
    cfg = _job(tmp_path, {"transactions": {"path": "b.parquet"}})
    with pytest.raises(DataError, match=r"customer_id: null: 1 \(e\.g\. .*b\.parquet row 5\)"):
        ingest(cfg, local_client)
    # with a tolerance of 5% the rows are quarantined, the rest ingested
    cfg = _job(tmp_path, {"transactions": {"path": "a.csv"}}, validation={"max_bad_share": 0.05})
    store = ingest(cfg, local_client)
    assert store.manifest["tables"]["transactions"]["rows"] == 49
    q = _committed_table(tmp_path / "out", "quarantine", "transactions").to_pandas()
    assert q[["amount", "_reason", "_row"]].values.tolist() == [
        ["twelve", "amount: not a number", 3]
    ]
    assert q["_file"].iloc[0].endswith("a.csv")


def test_duplicates_across_files_name_the_later_file_and_row(local_client, tmp_path):
    df = _tx(200)
    (tmp_path / "tx").mkdir()
    df.to_parquet(tmp_path / "tx" / "a.parquet")
    # rows 7 and 40 of a.parquet again, at rows 2 and 4 of b.parquet
    later = pd.concat([_tx(2, seed=1), df.iloc[[7]], _tx(1, seed=2), df.iloc[[40]]])
    later.to_parquet(tmp_path / "tx" / "b.parquet", index=False)
    cfg = _job(
        tmp_path,
        {"transactions": {"path": "tx"}},
        store={"buckets": 4},
        validation={"max_bad_share": 0.05},
    )
    store = ingest(cfg, local_client)
    assert store.manifest["tables"]["transactions"]["rows"] == 203
    q = _committed_table(tmp_path / "out", "quarantine", "transactions").to_pandas()
    assert (q["_reason"] == "duplicate row").all()
    got = sorted(zip(q["_file"].map(lambda f: f.rsplit("/", 1)[-1]), q["_row"], strict=True))
    assert got == [("b.parquet", 2), ("b.parquet", 4)]


def test_validate_reports_every_problem_at_once(local_client, tmp_path):
    (tmp_path / "tx").mkdir()
    _tx(20).to_parquet(tmp_path / "tx" / "good.parquet")
    (tmp_path / "tx" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    _tx(20).drop(columns=["timestamp"]).to_parquet(tmp_path / "tx" / "nots.parquet")
    cfg = _job(tmp_path, {"transactions": {"path": "tx"}})
    res = validate_inputs(cfg, local_client)
    text = "\n".join(res["problems"])
    assert len(res["problems"]) == 2
    assert "broken.parquet" in text and "nots.parquet" in text and "'timestamp'" in text


def test_failed_ingest_leaves_previous_store_untouched(local_client, tmp_path):
    (tmp_path / "tx").mkdir()
    _tx().to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = _job(tmp_path, {"transactions": {"path": "tx"}})
    store = ingest(cfg, local_client)
    out = tmp_path / "out"
    before = committed(out)
    digests = _digests(out)
    assert any(p.endswith("_manifest.json") for p in digests)
    (tmp_path / "tx" / "z-truncated.parquet").write_bytes(
        (tmp_path / "tx" / "a.parquet").read_bytes()[:200]
    )
    with pytest.raises(DataError, match="z-truncated.parquet"):
        ingest(cfg, local_client)
    # nothing committed: the latest commit is the same, its files unchanged and readable
    after = committed(out)
    assert (after.parent, after.base) == (before.parent, before.base)
    assert _digests(out) == digests
    assert not list(out.glob("runs/*/.staging/*")) and not list(out.glob(".staging/*"))
    again = open_store(out)
    assert again.manifest == store.manifest
    for k in range(again.n_buckets):
        assert again.read_bucket("transactions", k).num_rows > 0


def _committed_table(out, name: str, under: str) -> pa.Table:
    """Every Parquet file the latest commit lists for dataset ``name`` below ``under/``
    (the files of one table), concatenated."""
    members = committed(out).members(name)
    parts = [
        pq.read_table(p)
        for m, p in sorted(members.items())
        if m.startswith(under + "/") and m.endswith(".parquet")
    ]
    assert parts, (name, under, sorted(members))
    return pa.concat_tables(parts, promote_options="default")


def _digests(out) -> dict[str, str]:
    """SHA-256 of every file the latest commit lists (store and quarantine)."""
    o = committed(out)
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for name in o.names()
        for p in files(out, name)
    }


def test_output_inside_an_input_directory_is_refused(local_client, tmp_path):
    (tmp_path / "tx").mkdir()
    _tx().to_parquet(tmp_path / "tx" / "a.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump({"data": {"transactions": {"path": "tx"}}, "output": "tx/out"})
    )
    with pytest.raises(PublishError, match="inside input path"):
        ingest(load_run_config(tmp_path / "job.yaml"), local_client)
    assert sorted(p.name for p in (tmp_path / "tx").iterdir()) == ["a.parquet"]


def test_interrupted_swap_is_recovered(tmp_path):
    final = tmp_path / "scores"
    final.mkdir()
    (final / "v").write_text("1")
    staging = tmp_path / "s1"
    staging.mkdir()
    (staging / "v").write_text("2")
    publish_dir(staging, final)
    assert (final / "v").read_text() == "2"
    # simulate a crash between the two renames of the next publish
    (final.parent / "scores.~old").mkdir()
    final.rename(final.parent / "scores.~old2")
    (final.parent / "scores.~old").rmdir()
    (final.parent / "scores.~old2").rename(final.parent / "scores.~old")
    assert not final.exists()
    recover(final)
    assert (final / "v").read_text() == "2"


def test_manifest_records_inputs(local_client, tmp_path):
    _tx().to_parquet(tmp_path / "t.parquet")
    store = ingest(_job(tmp_path, {"transactions": {"path": "t.parquet"}}), local_client)
    m = committed(tmp_path / "out").read_json("store", "_manifest.json")
    assert m["inputs"][0]["path"].endswith("t.parquet") and m == store.manifest


def test_categorical_text_stays_text_through_dictionary_encoded_ingest(local_client, tmp_path):
    """Parquet inputs' categorical columns are read dictionary-encoded and kept so into
    the store's files (:data:`bigseg.schema.CATEGORICAL`); each row group brings its own
    dictionary. The store still holds text, equal to the input's, with the category
    rule and duplicate detection working on the encoded columns (a CSV input's text is
    encoded by merge: ``test_hive_partitions_and_csv_formats``)."""
    (tmp_path / "tx").mkdir()
    rng = np.random.default_rng(3)
    n = 3000
    df = _tx(n, 400, seed=3)
    df["channel"] = rng.choice(["web", "app", "store"], n)
    df["category"] = rng.choice(["books", "garden", "toys", "music"], n)
    df.loc[:499, "channel"] = "app"  # the first row group's dictionary starts elsewhere
    df.loc[7, "channel"] = "fax"  # not a known channel: quarantined
    rows = pd.concat([df, df.iloc[[11]]])  # a row again, in another row group: a duplicate
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp_path / "tx" / "a.parquet",
                   row_group_size=500)  # fmt: skip
    cfg = _job(
        tmp_path,
        {"transactions": {"path": "tx"}},
        store={"buckets": 4},
        validation={"categories": {"transactions": {"channel": ["web", "app", "store"]}}},
    )
    store = ingest(cfg, local_client)
    assert store.manifest["tables"]["transactions"]["schema"]["channel"] == "string"
    assert store.manifest["quarantine"]["transactions"] == {
        "channel: unknown category": 1,
        "duplicate row": 1,
    }
    got = []
    for k in range(4):
        t = store.read_bucket("transactions", k)
        assert t.schema.field("channel").type == pa.string()
        assert t.schema.field("category").type == pa.string()
        got.append(t.to_pandas())
    got = pd.concat(got)
    keys = ["customer_id", "timestamp", "amount", "channel", "category"]
    want = df.drop(index=7)[keys].sort_values(keys).reset_index(drop=True)
    back = got[keys].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, want, check_dtype=False)
