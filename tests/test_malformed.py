"""Malformed input, kind by kind: each gives a clear error or quarantine rows naming the
file, the column and the rule, and a refused ingest leaves the previous outputs
byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bigseg.config import load_run_config
from bigseg.errors import DataError
from bigseg.io.lease import LEASES
from bigseg.store import ingest
from bigseg.testing.outputs import committed


def good_tx(n=400, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(1, 60, n),
            "timestamp": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 400, n), unit="D"),
            "amount": rng.gamma(2, 20, n).round(2),
            "channel": rng.choice(["web", "app", "store"], n),
        }
    )


def csv_text(df: pd.DataFrame) -> str:
    d = df.copy()
    d["timestamp"] = d["timestamp"].dt.strftime("%Y-%m-%d")
    return d.to_csv(index=False)


# kind -> (format, writer(path), expected text in the error / quarantine reason)
def _pq(df):
    return lambda p: df.to_parquet(p)


def _bytes(b):
    return lambda p: p.write_bytes(b)


def _text(t):
    return lambda p: p.write_text(t)


def _truncated(p):
    good_tx(50).to_parquet(p)
    p.write_bytes(p.read_bytes()[:-40])


def _bad_footer(p):
    good_tx(50).to_parquet(p)
    b = bytearray(p.read_bytes())
    b[-8:-4] = b"\xff\xff\xff\x7f"  # footer length far beyond the file
    p.write_bytes(bytes(b))


def _with(col, idx, value, df=None):
    df = good_tx(100) if df is None else df
    df = df.astype({col: object}) if not isinstance(value, type(df[col].iloc[0])) else df.copy()
    df.loc[idx, col] = value
    return df


def _null_ids(p):
    df = good_tx(100)
    df["customer_id"] = df["customer_id"].astype("Int64")
    df.loc[[3, 4], "customer_id"] = pd.NA
    df.to_parquet(p)


def _null_ts(p):
    df = good_tx(100)
    df.loc[7, "timestamp"] = pd.NaT
    df.to_parquet(p)


def _amount(value):
    def w(p):
        df = good_tx(100)
        df.loc[5, "amount"] = value
        t = pa.Table.from_pandas(df, preserve_index=False)
        # pandas turns NaN into null on the way to Arrow; write a real NaN
        amounts = pa.array(df["amount"].to_numpy(), from_pandas=False)
        pq.write_table(t.set_column(t.column_names.index("amount"), "amount", amounts), p)

    return w


def _ts(value):
    def w(p):
        df = good_tx(100)
        df.loc[5, "timestamp"] = pd.Timestamp(value)
        df.to_parquet(p)

    return w


def _dupes(p):
    df = good_tx(100)
    pd.concat([df, df.iloc[:3]]).to_parquet(p)


def _float_ids(p):
    df = good_tx(100)
    df["customer_id"] = df["customer_id"] + 0.5
    df.to_parquet(p)


def _string_ids(p):
    df = good_tx(100)
    df["customer_id"] = df["customer_id"].map("C{}".format)
    df.to_parquet(p)


def _csv_bad_number(p):
    p.write_text(
        csv_text(good_tx(100)).replace("\n", "\n", 1).rstrip("\n") + "\n7,2024-03-01,twelve,web\n"
    )


def _csv_bad_date(p):
    p.write_text(csv_text(good_tx(100)) + "7,31/02/2024,12.5,web\n")


def _csv_bad_utf8(p):
    p.write_bytes(csv_text(good_tx(100)).encode() + b"7,2024-03-01,12.5,w\xe9b\xff\n")


def _csv_wrong_delimiter(p):
    p.write_text(csv_text(good_tx(100)).replace(",", ";"))


CASES = {
    "empty file": ("parquet", _bytes(b""), "cannot read as Parquet"),
    "not parquet at all": ("parquet", _text("customer_id,amount\n1,2\n"), "cannot read as Parquet"),
    "truncated parquet": ("parquet", _truncated, "cannot read as Parquet"),
    "corrupted footer": ("parquet", _bad_footer, "cannot read as Parquet"),
    "missing required column": (
        "parquet",
        _pq(good_tx(50).drop(columns=["amount"])),
        "required column 'amount'",
    ),
    "non-integral float ids": ("parquet", _float_ids, "customer ids must be integers or strings"),
    "id type differs between files": ("parquet", _string_ids, "different types across input files"),
    "null customer ids": ("parquet", _null_ids, "customer_id: null"),
    "null timestamps": ("parquet", _null_ts, "timestamp: null"),
    "NaN amount": ("parquet", _amount(np.nan), "amount: not finite"),
    "infinite amount": ("parquet", _amount(np.inf), "amount: not finite"),
    "absurd amount": ("parquet", _amount(5e9), "amount: absurd"),
    "timestamp in the future": ("parquet", _ts("2999-01-01"), "timestamp: in the future"),
    "timestamp before 1970": ("parquet", _ts("1901-06-01"), "timestamp: before 1970"),
    "duplicate rows": ("parquet", _dupes, "duplicate row"),
    "unknown category": (
        "parquet",
        _pq(_with("channel", 9, "carrier pigeon")),
        "channel: unknown category",
    ),
    "unparsable number in CSV": ("csv", _csv_bad_number, "amount: not a number"),
    "unparsable date in CSV": ("csv", _csv_bad_date, "timestamp: not a timestamp"),
    "invalid UTF-8 in CSV": ("csv", _csv_bad_utf8, "channel: invalid UTF-8"),
    "wrong CSV delimiter": ("csv", _csv_wrong_delimiter, "csv.delimiter"),
}
#: kinds whose rows are quarantined (the others stop the whole run)
ROW_LEVEL = {
    k
    for k, (_f, _w, msg) in CASES.items()
    if ":" in msg and "column" not in msg and "cannot" not in msg
}


def _setup(tmp_path: Path, fmt: str, max_bad: float) -> tuple[object, Path]:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    if fmt == "parquet":
        good_tx().to_parquet(d / "a-good.parquet")
    else:
        (d / "a-good.csv").write_text(csv_text(good_tx()))
    doc = {
        "data": {"transactions": {"path": "in", "format": fmt}},
        "validation": {
            "max_bad_share": max_bad,
            "categories": {"transactions": {"channel": ["web", "app", "store"]}},
        },
        "output": "out",
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    return load_run_config(tmp_path / "job.yaml"), d


def _quarantine(out: Path, table: str) -> pd.DataFrame:
    """The committed quarantine of ``table``: every file the latest commit lists for it."""
    members = committed(out).members("quarantine")
    parts = [pq.read_table(p) for m, p in sorted(members.items()) if m.startswith(table + "/")]
    assert parts, sorted(members)
    return pa.concat_tables(parts, promote_options="default").to_pandas()


def _snapshot(out: Path) -> dict:
    """The latest commit (number and datasets) and the SHA-256 of every file under
    ``out`` but the lease's records (every run, refused or not, takes and releases it) and
    the folders of runs that no commit lists (a failed run's files wait there for a re-run
    or ``bigseg gc``)."""
    o = committed(out)
    runs = {f["path"].split("/")[1] for e in o.base.values() for f in e["files"]}

    def kept(rel: str) -> bool:
        parts = rel.split("/")
        if parts[0] == "runs":
            return len(parts) > 2 and parts[1] in runs
        return not rel.startswith(LEASES + "/")

    return {
        "commit": (o.parent, o.base),
        **{
            rel: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file() and kept(rel := p.relative_to(out).as_posix())
        },
    }


def test_the_list_is_long_enough():
    assert len(CASES) >= 15 and len(ROW_LEVEL) >= 10


@pytest.mark.parametrize("kind", list(CASES))
def test_refused_ingest_names_the_problem_and_changes_nothing(kind, tmp_path, local_client):
    fmt, write, expected = CASES[kind]
    cfg, d = _setup(tmp_path, fmt, max_bad=0.0)
    ingest(cfg, local_client)
    before = _snapshot(cfg.output_dir)
    bad = d / ("z-bad.parquet" if fmt == "parquet" else "z-bad.csv")
    write(bad)
    with pytest.raises(DataError) as e:
        ingest(cfg, local_client)
    msg = str(e.value)
    assert expected in msg, msg
    assert "z-bad" in msg, msg  # names the file
    assert _snapshot(cfg.output_dir) == before
    assert not list(cfg.output_dir.glob("runs/*/.staging/*"))
    assert not list(cfg.output_dir.glob(".staging/*"))


@pytest.mark.parametrize("kind", sorted(ROW_LEVEL))
def test_bad_rows_go_to_quarantine_with_a_reason(kind, tmp_path, local_client):
    fmt, write, expected = CASES[kind]
    cfg, d = _setup(tmp_path, fmt, max_bad=0.5)
    bad = d / ("z-bad.parquet" if fmt == "parquet" else "z-bad.csv")
    write(bad)
    store = ingest(cfg, local_client)
    q = _quarantine(cfg.output_dir, "transactions")
    assert (q["_reason"] == expected).any(), q["_reason"].tolist()
    row = q[q["_reason"] == expected].iloc[0]
    if expected != "duplicate row":
        assert row["_file"].endswith(bad.name) and row["_row"] >= 0
    assert store.manifest["quarantine"]["transactions"][expected] >= 1
    # quarantined rows are not in the store
    n_good = store.manifest["tables"]["transactions"]["rows"]
    assert n_good + len(q) == 400 + _rows(bad, fmt)


def _rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        return pq.read_metadata(path).num_rows
    return path.read_bytes().count(b"\n") - 1


def test_quarantine_drops_pii(tmp_path, local_client):
    d = tmp_path / "in"
    d.mkdir()
    good_tx().to_parquet(d / "tx.parquet")
    pd.DataFrame(
        {
            "customer_id": [1, 2, 3],
            "age": [30, 200, 40],
            "email": ["a@x.org", "b@x.org", "c@x.org"],
            "name": ["Ann", "Bob", "Cy"],
        }
    ).to_parquet(tmp_path / "cust.parquet")
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"transactions": {"path": "in"}, "customers": {"path": "cust.parquet"}},
                "validation": {"max_bad_share": 0.5},
                "output": "out",
            }
        )
    )
    store = ingest(load_run_config(tmp_path / "job.yaml"), local_client)
    q = _quarantine(tmp_path / "out", "customers")
    assert q["_reason"].tolist() == ["age: out of range"]
    assert "email" not in q.columns and "name" not in q.columns
    assert "email" not in store.schema("customers") and "name" not in store.schema("customers")
