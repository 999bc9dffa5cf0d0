"""The edges of issue 19 item 3: each gives its documented exit code and a message that
names the file, key or rule and the fix, and loses or changes nothing (the latest commit
stays the same, every file it lists byte-identical and readable; nothing half-written is
published)."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from bigseg.cli import main
from bigseg.io.output import scores_dataset
from bigseg.testing.outputs import committed, files, metrics_path, report_path


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity (as strict parsers do)."""

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def snapshot(out: Path) -> dict:
    """The latest commit of ``out``: its number, its datasets, and the SHA-256 of every
    file it lists, read back now (each must still match the checksum committed)."""
    o = committed(out)
    assert o.committed, f"{out}: nothing committed"
    digests = {}
    for name, entry in o.datasets().items():
        for f in entry["files"]:
            digest = hashlib.sha256((out / f["path"]).read_bytes()).hexdigest()
            assert digest == f["sha256"], f"{name}: {f['path']} changed after its commit"
            digests[f["path"]] = digest
    return {"commit": o.parent, "datasets": o.datasets(), "files": digests}


def read_dataset(out: Path, name: str) -> pd.DataFrame:
    """Dataset ``name`` of the latest commit, read with pandas from exactly its files."""
    parts = files(out, name)
    assert parts, f"{out}: dataset {name} has no files"
    return pd.read_parquet([str(p) for p in parts])


def read_scores(out: Path) -> pd.DataFrame:
    """The committed scores of the one date scored."""
    (day,) = committed(out).scores_dates()
    return read_dataset(out, scores_dataset(day))


def read_metrics(out: Path) -> dict:
    """The committed ``metrics.json``, parsed strictly."""
    return strict_json(metrics_path(out).read_text())


@pytest.fixture(scope="module")
def cluster_yaml(local_client, tmp_path_factory) -> str:
    """A ``type: scheduler`` cluster config for the session's local cluster: the CLI
    connects to it instead of starting one (and leaves it running)."""
    p = tmp_path_factory.mktemp("cluster") / "cluster.yaml"
    p.write_text(f"type: scheduler\naddress: {local_client.scheduler.address}\ntimeout: 10\n")
    return str(p)


def transactions(n_customers=80, per_customer=6, seed=0, ids=None) -> pd.DataFrame:
    """Repeat buyers over two years up to 2025-12-31 (int ids unless ``ids`` given)."""
    rng = np.random.default_rng(seed)
    ids = list(range(1, n_customers + 1)) if ids is None else list(ids)
    rows = []
    for i, c in enumerate(ids):
        k = per_customer if isinstance(per_customer, int) else per_customer[i]
        days = rng.choice(730, k, replace=False)  # no duplicate rows
        for d in days:
            rows.append((c, pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(d)), 10 + i % 7))
    df = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    df["amount"] = df["amount"].astype(float)
    return df


def job(tmp_path: Path, data: dict, **extra) -> Path:
    doc = {
        "data": data,
        "horizon_days": 90,
        "seed": 1,
        "segmentation": {"k": 2},
        "prediction": {"n_estimators": 20},
        "privacy": {"min_segment_size": 1},
        "output": str(tmp_path / "out"),
        **extra,
    }
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


# -- metrics.json is strict JSON ---------------------------------------------------------------
def test_strict_json_text_writes_null_for_undefined_values():
    from bigseg.io.commit import strict_json_text

    doc = {
        "thr": float("inf"),
        "auc": float("nan"),
        "np": np.float32("nan"),
        "ok": np.float64(0.5),
        "n": np.int64(3),
        "nested": [{"x": -float("inf")}, (1.0, float("nan"))],
    }
    got = strict_json(strict_json_text(doc))
    assert got == {
        "thr": None,
        "auc": None,
        "np": None,
        "ok": 0.5,
        "n": 3,
        "nested": [{"x": None}, [1.0, None]],
    }


def test_metrics_json_is_strict_even_with_undefined_values(tmp_path):
    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.io.output import Output
    from bigseg.pipeline.record import Recorder

    cfg = load_run_config(job(tmp_path, {"transactions": {"path": "tx"}}))
    out = Output.open(cfg.output_dir)
    out.begin("strict-json")
    rec = Recorder(cfg, resolve("cpu"), out)
    rec.add({"high_value_threshold": float("inf"), "churn": {"auc": float("nan")}})
    rec.write_metrics()
    rec.add({"as_of": "2025-12-31"})
    rec.write_metrics()  # merged over the file it wrote
    n = out.commit()
    text = metrics_path(cfg.output_dir).read_text()
    assert "NaN" not in text and "Infinity" not in text
    m = strict_json(text)
    assert m["high_value_threshold"] is None and m["churn"]["auc"] is None
    assert m["as_of"] == "2025-12-31"
    record = rec.write_run_record(["score"], n)
    assert strict_json(record.read_text())["commit"] == n


# -- ids: blank ones are quarantined, spaces are part of an id, erase matches exactly ---------
PADDED = ["A", " A", "A ", "B", "C\t", "D"]


def padded_csv(path: Path) -> pd.DataFrame:
    """String ids that differ only by their spaces, plus blank ids (guest rows)."""
    df = transactions(ids=PADDED, per_customer=5)
    guests = transactions(ids=["", "   ", "", "\t"], per_customer=3, seed=1)
    both = pd.concat([df, guests], ignore_index=True)
    out = both.assign(timestamp=both["timestamp"].dt.strftime("%Y-%m-%d"))
    out.to_csv(path, index=False)
    return both


def test_blank_ids_are_quarantined_and_spaces_kept(tmp_path, cluster_yaml, caplog):
    from bigseg.store import open_store

    (tmp_path / "tx").mkdir()
    both = padded_csv(tmp_path / "tx" / "tx.csv")
    cfg = job(
        tmp_path,
        {"transactions": {"path": "tx", "format": "csv"}},
        validation={"max_bad_share": 0.5},
    )
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    # what the user sees (the CLI prints warnings on stderr): the rows left out, the rule
    said = [
        r for r in caplog.records if r.name.startswith("bigseg") and "quarantined" in r.getMessage()
    ]
    assert [r.levelname for r in said] == ["WARNING"], caplog.text
    msg = said[0].getMessage()
    assert "data.transactions: 12 of 42 rows quarantined, left out of the store" in msg, msg
    assert f"customer_id: blank: 12 (e.g. {tmp_path / 'tx' / 'tx.csv'} row" in msg, msg
    assert "is never a customer" in msg and "the quarantine dataset" in msg, msg
    out = tmp_path / "out"
    store = open_store(out)
    rejected = committed(out).members("quarantine")  # {table/file: location}
    q = pq.read_table(
        [str(p) for m, p in rejected.items() if m.startswith("transactions/")]
    ).to_pandas()
    n_blank = int(both["customer_id"].str.strip().eq("").sum())
    assert (q["_reason"] == "customer_id: blank").sum() == n_blank == 12
    assert q["_file"].str.endswith("tx.csv").all()
    ids = pd.concat(
        [store.read_bucket("transactions", k).to_pandas() for k in range(store.n_buckets)]
    )["customer_id"]
    assert sorted(ids.unique()) == sorted(PADDED)  # no "" customer, " A" is not "A"
    assert store.manifest["tables"]["transactions"]["rows"] + len(q) == len(both)
    assert store.manifest["quarantine"]["transactions"]["customer_id: blank"] == n_blank


@pytest.fixture
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("BIGSEG_PSEUDONYM_KEY", "edges-test-key-0123456789")


def test_erase_reads_crlf_and_matches_ids_exactly(
    tmp_path, local_client, cluster_yaml, pseudonym_key, capsys
):
    (tmp_path / "tx").mkdir()
    padded_csv(tmp_path / "tx" / "tx.csv")
    cfg = job(
        tmp_path,
        {"transactions": {"path": "tx", "format": "csv"}},
        validation={"max_bad_share": 0.5},
    )
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b" A\r\nA \r\n\r\nC\t\r\nZ\r\n nobody \r\n")
    assert main(["erase", str(cfg), "--ids", str(ids), "--cluster", cluster_yaml]) == 0
    out = capsys.readouterr().out
    assert "erased 3 of 5 requested" in out, out
    assert "not found in the store (2): 'Z', ' nobody '" in out, out
    from bigseg.store import open_store

    store = open_store(tmp_path / "out")
    left = pd.concat(
        [store.read_bucket("transactions", k).to_pandas() for k in range(store.n_buckets)]
    )["customer_id"]
    assert sorted(left.unique()) == ["A", "B", "D"]  # " A", "A ", "C\t" erased; "A" kept


# -- mixed formats: refused, not half-read -----------------------------------------------------
def _csv_of_other_customers(path) -> None:
    """40 customers the Parquet file beside it does not hold, as a CSV."""
    more = transactions(40, seed=2, ids=range(100, 140))
    more.assign(timestamp=more["timestamp"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)


def test_mixed_formats_without_format_exit_3_and_change_nothing(tmp_path, cluster_yaml, capsys):
    d = tmp_path / "tx"
    d.mkdir()
    transactions(40).to_parquet(d / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    before = snapshot(tmp_path / "out")
    _csv_of_other_customers(d / "b.csv")
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "more than one format" in err and "parquet: 1 file(s)" in err, err
    assert "csv: 1 file(s), e.g. b.csv" in err and "data.transactions.format" in err, err
    assert str(d) in err and "Traceback" not in err
    assert snapshot(tmp_path / "out") == before


def test_a_glob_over_mixed_formats_exit_3_and_change_nothing(tmp_path, cluster_yaml, capsys):
    d = tmp_path / "tx"
    (d / "more").mkdir(parents=True)
    transactions(40).to_parquet(d / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx/**"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    before = snapshot(tmp_path / "out")
    _csv_of_other_customers(d / "more" / "b.csv")
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert f"data.transactions.path: {d}/** matches files of more than one format" in err, err
    assert f"parquet: 1 file(s), e.g. {d}/a.parquet" in err, err
    assert f"csv: 1 file(s), e.g. {d}/more/b.csv" in err, err
    assert "data.transactions.format is not set" in err and "narrow the glob" in err, err
    assert "Traceback" not in err
    assert snapshot(tmp_path / "out") == before
    # the fix the message names: with format set, the glob reads that format's files only
    cfg = job(tmp_path, {"transactions": {"path": "tx/**", "format": "parquet"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    from bigseg.store import open_store

    assert open_store(tmp_path / "out").manifest["tables"]["transactions"]["rows"] == 40 * 6


def test_a_glob_or_prefix_over_mixed_formats_on_s3_is_refused(s3, tmp_path):
    """Object storage goes through the same check (listing only: nothing is written)."""
    import io

    from bigseg.config import TableConfig
    from bigseg.errors import DataError
    from bigseg.io.storage import storage_for
    from bigseg.store.reader import list_inputs

    st = storage_for(s3.url())
    buf = io.BytesIO()
    transactions(5).to_parquet(buf)
    st.write_bytes(s3.url("raw/tx/a.parquet"), buf.getvalue())
    st.write_bytes(s3.url("raw/tx/b.csv"), transactions(5).to_csv(index=False).encode())
    for path in ("raw/tx/*", "raw/**", "raw/tx/"):
        with pytest.raises(DataError) as e:
            list_inputs("transactions", TableConfig(path=s3.url(path)), tmp_path)
        msg = str(e.value)
        assert e.value.exit_code == 3 and "more than one format" in msg, msg
        assert "parquet: 1 file(s)" in msg and "csv: 1 file(s)" in msg, msg
        assert "data.transactions.format is not set" in msg, msg
    tc = TableConfig(path=s3.url("raw/tx/*"), format="csv")
    assert [f.path for f in list_inputs("transactions", tc, tmp_path)] == [s3.url("raw/tx/b.csv")]


# -- exit codes instead of tracebacks ------------------------------------------------------------
def test_impossible_date_in_the_config_exits_2(copied_run, tmp_path, capsys):
    path, cfg, _m = copied_run  # an output holding a committed run
    before = snapshot(cfg.output_dir)
    text = path.read_text()
    assert "as_of" not in text
    p = tmp_path / "bad.yaml"  # the run's config, with an impossible as_of on its last line
    p.write_text(text + "as_of: 2026-09-31\n")
    line = len(p.read_text().splitlines())
    for command in ("validate", "run"):
        assert main([command, str(p), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert str(p) in err and f"line {line}" in err and "as_of: 2026-09-31" in err, err
        assert "YYYY-MM-DD" in err and "Traceback" not in err
    assert snapshot(cfg.output_dir) == before


def test_output_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "tx").mkdir()
    transactions(20).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})
    (tmp_path / "out").write_text("my notes\n")
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "output:" in err and "is an existing file" in err and str(tmp_path / "out") in err
    assert "set output: to a directory path" in err and "Traceback" not in err, err
    assert (tmp_path / "out").read_text() == "my notes\n"


def test_score_as_of_not_iso_exits_2(copied_run, capsys):
    path, cfg, _m = copied_run  # an output holding a committed run
    before = snapshot(cfg.output_dir)
    assert main(["score", str(path), "--as-of", "2026/06/30", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--as-of 2026/06/30" in err and "YYYY-MM-DD" in err, err
    assert "e.g. --as-of 2026-06-30" in err and "Traceback" not in err, err
    assert snapshot(cfg.output_dir) == before


def _fail_parquet_writes():
    """On a worker: every Parquet write of a dataset part fails as on a full disk."""
    import errno as _errno

    from bigseg.io import tables

    def full(path, *a, **k):
        raise OSError(_errno.ENOSPC, "No space left on device", str(path))

    tables._real_write_parquet = tables.write_parquet
    tables.write_parquet = full


def _restore_parquet_writes():
    from bigseg.io import tables

    tables.write_parquet = getattr(tables, "_real_write_parquet", tables.write_parquet)


@pytest.fixture(scope="module")
def normal_run_logged(tmp_path_factory, local_client, cluster_yaml):
    """A whole run (CLI) on 120 repeat buyers (transactions only), asked for churn, value
    and response: ``(config, the records the bigseg loggers logged during the run)``."""
    d = tmp_path_factory.mktemp("normal")
    (d / "tx").mkdir()
    transactions(120, per_customer=8).to_parquet(d / "tx" / "a.parquet")
    targets = ["churn", "value", "response"]
    cfg = job(
        d, {"transactions": {"path": "tx"}}, prediction={"n_estimators": 20, "targets": targets}
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger, level = logging.getLogger("bigseg"), logging.getLogger("bigseg").level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # INFO too: what was said quietly is seen
    try:
        assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return cfg, records


@pytest.fixture(scope="module")
def normal_run(normal_run_logged):
    """The config of :func:`normal_run_logged`: both targets learnt."""
    return normal_run_logged[0]


def test_disk_full_mid_run_exits_8_and_keeps_the_outputs(
    normal_run, local_client, cluster_yaml, capsys
):
    out = normal_run.parent / "out"
    before = snapshot(out)
    local_client.run(_fail_parquet_writes)
    try:
        rc = main(["run", str(normal_run), "--cluster", cluster_yaml, "--quiet"])
    finally:
        local_client.run(_restore_parquet_writes)
    err = capsys.readouterr().err
    assert rc == 8, err
    assert "out of space writing" in err and "No space left on device" in err, err
    assert "Free space under output:" in err and "Traceback" not in err
    assert snapshot(out) == before


def test_disk_full_writing_the_report_exits_8(normal_run, monkeypatch, capsys):
    from bigseg.io.storage import local

    out = normal_run.parent / "out"
    before = snapshot(out)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(local, "write_bytes", full)
    assert main(["report", str(normal_run), "--quiet"]) == 8
    err = capsys.readouterr().err
    assert "out of space writing" in err and "report.html" in err, err
    assert "Free space under output:" in err and "Traceback" not in err, err
    assert snapshot(out) == before


def test_normal_run_has_both_targets(normal_run):
    out = normal_run.parent / "out"
    m = read_metrics(out)
    assert "skipped" not in m["churn"] and "skipped" not in m.get("value", {})
    s = read_scores(out)
    assert {"churn_probability", "value_prediction", "high_value"} <= set(s.columns)
    assert s["churn_probability"].notna().all() and s["value_prediction"].notna().all()


# -- a target that cannot be learnt is absent, with the reason, never NaN ---------------------
def test_one_purchase_each_skips_both_targets_with_reasons(tmp_path, cluster_yaml, caplog):
    (tmp_path / "tx").mkdir()
    transactions(200, per_customer=1).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    out = tmp_path / "out"
    m = read_metrics(out)
    for t in ("churn", "value"):
        assert "label window" in m[t]["skipped"], m[t]
        assert "set as_of within the data, or a longer horizon_days" in m[t]["skipped"], m[t]
    churn = m["churn"]["skipped"]
    assert "0 of the" in churn and "bought again in the label window" in churn, churn
    assert "repeat buyers" in m["value"]["skipped"]
    assert m["high_value_threshold"] is None
    s = read_scores(out)
    assert len(s) == 200 and s["customer_id"].is_unique
    absent = {"churn_probability", "value_prediction", "high_value"}
    assert not absent & set(s.columns), s.columns
    assert not any(c.startswith(("churn_", "value_")) for c in s.columns)
    skipped = [r for r in caplog.records if "skipped, its scores column left out" in r.message]
    assert {r.levelname for r in skipped} == {"WARNING"} and len(skipped) == 2
    assert report_path(out).is_file()


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_as_of_years_after_the_data_skips_the_targets(tmp_path, cluster_yaml):
    (tmp_path / "tx").mkdir()
    transactions(120, per_customer=8).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}}, as_of="2030-12-31")
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    out = tmp_path / "out"
    m = read_metrics(out)
    assert "0 of the 120 customers" in m["churn"]["skipped"], m["churn"]
    assert "0 of the 120 customers" in m["value"]["skipped"], m["value"]
    s = read_scores(out)
    assert "churn_probability" not in s and "value_prediction" not in s and len(s) == 120


# -- a dataset too small to segment or learn from -------------------------------------------
def test_single_customer_exits_3_and_publishes_nothing(copied_run, tmp_path, cluster_yaml, capsys):
    out = copied_run[1].output_dir  # an output holding a committed run
    before = snapshot(out)
    (tmp_path / "tx").mkdir()
    transactions(1, per_customer=30).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})  # that output, one customer's input
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "1 customer(s) with a purchase on or before as_of=" in err, err
    assert " in tx: segmenting and training need at least 2" in err, err  # the input, the rule
    assert "score them with a model trained on more (`bigseg score`)" in err, err  # the fix
    assert "Traceback" not in err
    assert snapshot(out) == before  # the committed store, models and scores stay current


# -- empty buckets -----------------------------------------------------------------------------
@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_twenty_customers_read_back_with_pandas(tmp_path, cluster_yaml):
    from bigseg.store import open_store
    from bigseg.store.buckets import bucket_of

    # 20 customers of whom none falls in bucket 0 of 8: the first bucket, the one whose
    # parts sort first, is certainly empty
    candidates = np.arange(1, 100)
    ids = candidates[bucket_of(candidates, 8) != 0][:20].tolist()
    assert len(ids) == 20
    (tmp_path / "tx").mkdir()
    transactions(ids=ids, per_customer=6).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}}, store={"buckets": 8})
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    out = tmp_path / "out"
    store = open_store(out)
    assert store.n_buckets == 8 and store.read_bucket("transactions", 0).num_rows == 0
    for d in ("features", "segments", scores_dataset(committed(out).scores_dates()[-1])):
        df = read_dataset(out, d)  # pandas on the committed files as one list
        assert sorted(df["customer_id"]) == sorted(ids), d  # every customer, once


# -- warnings that mean something ------------------------------------------------------------
def test_a_script_without_main_guard_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(
        "from bigseg.engine import connect\n\nwith connect(n_workers=1) as client:\n    pass\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr  # a config error (README, "Exit codes")
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert errors == [r.stderr.strip().splitlines()[-1]], r.stderr  # one line, the last
    assert errors[0].startswith(f"bigseg: error: {script}, line 3: "), errors
    assert 'put the bigseg calls under `if __name__ == "__main__":`' in errors[0], errors
    assert "Traceback" not in r.stderr and "Nanny" not in r.stderr, r.stderr


def test_main_guard_detection_reads_the_script(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text(
        "from bigseg.engine.mainguard import unguarded_call\n"
        "print('top', unguarded_call())\n"
        "def f():\n"
        "    return unguarded_call()\n"
        "if __name__ == '__main__':\n"
        "    print('guarded', unguarded_call(), f())\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == [f"top ('{script}', 2)", "guarded None None"]


WARNING_LINE = r" WARNING bigseg|bigseg/\S+\.py:\d+: \w*Warning|CLV fit|Gamma-Gamma q|retraining"


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_demo_first_run_emits_no_warning(tmp_path):
    """A 20,000-customer demo (about 25 s on 2 cores)."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-W", "default", "-m", "bigseg.cli", "demo", "--customers", "20000",
         "--out", str(tmp_path / "demo"), "--quiet"],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    found = [ln for ln in r.stderr.splitlines() if re.search(WARNING_LINE, ln)]
    assert not found, "\n".join(found)
    m = read_metrics(tmp_path / "demo")
    assert m["retrain"]["recommended"] is False


# -- small-data UX (item 5) ----------------------------------------------------------------
def test_day_first_dates_exit_3_naming_file_column_value_and_option(tmp_path, cluster_yaml, capsys):
    (tmp_path / "tx").mkdir()
    df = transactions(30)
    df.assign(timestamp=df["timestamp"].dt.strftime("%d/%m/%Y")).to_csv(
        tmp_path / "tx" / "orders.csv", index=False
    )
    cfg = job(tmp_path, {"transactions": {"path": "tx", "format": "csv"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "timestamp: not a timestamp" in err and "orders.csv row" in err, err
    assert "value '" in err and "data.transactions.csv.timestamp_format" in err, err
    assert "Traceback" not in err
    assert not committed(tmp_path / "out").has("store")


def decimal_comma_csv(path: Path) -> pd.DataFrame:
    """Transactions with amounts written ``12,50`` (quoted: the delimiter is a comma too);
    returns them as numbers."""
    df = transactions(30)
    df["amount"] += 0.5
    out = df.assign(
        timestamp=df["timestamp"].dt.strftime("%Y-%m-%d"),
        amount=df["amount"].map(lambda a: f"{a:.2f}".replace(".", ",")),
    )
    out.to_csv(path, index=False)
    return df


def test_decimal_comma_amounts_name_the_fix(tmp_path, cluster_yaml, capsys):
    (tmp_path / "tx").mkdir()
    decimal_comma_csv(tmp_path / "tx" / "orders.csv")
    cfg = job(tmp_path, {"transactions": {"path": "tx", "format": "csv"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "amount: not a number" in err and "orders.csv row" in err, err
    assert "value '10,50'" in err and 'set data.transactions.csv.decimal: ","' in err, err
    assert "thousands separators are not accepted" in err and "Traceback" not in err, err
    assert not committed(tmp_path / "out").has("store")


def test_currency_sign_amounts_exit_3_naming_the_fix(tmp_path, cluster_yaml, capsys):
    (tmp_path / "tx").mkdir()
    orders = tmp_path / "tx" / "orders.csv"
    df = transactions(30)
    df["amount"] += 2.5
    df.assign(
        timestamp=df["timestamp"].dt.strftime("%Y-%m-%d"),
        amount=df["amount"].map(lambda a: f"${a:.2f}"),  # $12.50
    ).to_csv(orders, index=False)
    cfg = job(tmp_path, {"transactions": {"path": "tx", "format": "csv"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert f"amount: not a number: 180 (e.g. {orders} row " in err, err
    assert ", value '$12.50')" in err, err  # the file, the column and the example value
    assert "strip the currency sign or code from the column before ingest" in err, err
    assert "csv.decimal" not in err and "Traceback" not in err, err
    assert not committed(tmp_path / "out").committed  # no store, nothing at all


def test_csv_decimal_comma_reads_amounts_exactly(tmp_path, cluster_yaml, capsys):
    from bigseg.store import open_store

    (tmp_path / "tx").mkdir()
    orders = tmp_path / "tx" / "orders.csv"
    df = decimal_comma_csv(orders)
    with orders.open("a") as f:  # a thousands separator: refused, never read as 1.2345
        f.write('7,2024-03-01,"1.234,50"\n')
    csv = {"decimal": ","}
    cfg = job(tmp_path, {"transactions": {"path": "tx", "format": "csv", "csv": csv}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    store = open_store(tmp_path / "out")
    got = pd.concat(
        [store.read_bucket("transactions", k).to_pandas() for k in range(store.n_buckets)]
    )
    key = ["customer_id", "timestamp"]
    got = got.sort_values(key).reset_index(drop=True)[[*key, "amount"]]
    want = df.assign(customer_id=df["customer_id"].astype(str)).sort_values(key)
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
    members = committed(tmp_path / "out").members("quarantine")
    q = pq.read_table([str(p) for m, p in members.items() if m.startswith("transactions/")])
    assert q.select(["amount", "_reason"]).to_pylist() == [
        {"amount": "1.234,50", "_reason": "amount: not a number with a decimal comma"}
    ]
    assert q.column("_file")[0].as_py() == str(orders)


def test_the_fix_for_an_unreadable_number_follows_its_value():
    from bigseg.store.manifest import hint

    def fix(value):
        return hint("transactions", "amount: not a number", f"tx.csv row 3, value {value!r}")

    assert 'set data.transactions.csv.decimal: ","' in fix("12,50")
    assert "strip the currency sign" in fix("$12.50") and "csv.decimal" not in fix("$12.50")
    both = fix("€12,50")  # a currency sign and a decimal comma
    assert "strip the currency sign" in both and 'csv.decimal: ","' in both, both
    assert "strip the currency sign" in fix("12.50 EUR")
    assert "thousands separator" in fix("1,234.50") and "decimal point" in fix("twelve")
    assert "strip the currency" not in fix("TBD")  # capitals but no amount: not a code
    in_parquet = hint("transactions", "amount: not a number", "t.parquet row 1, value '12,50'")
    assert 'csv.decimal: ",";' in in_parquet and "the value has" not in in_parquet
    comma = hint("transactions", "amount: not a number with a decimal comma", "x row 1")
    assert "remove csv.decimal" in comma and "(12,50)" in comma, comma


def test_iso_offsets_are_converted_to_utc_mixed_with_naive(tmp_path, cluster_yaml, caplog):
    from bigseg.store import open_store

    (tmp_path / "tx").mkdir()
    (tmp_path / "tx" / "tx.csv").write_text(
        "customer_id,timestamp,amount\n"
        "1,2024-03-01T10:00:00+02:00,5.0\n"
        "1,2024-03-02T10:00:00,6.0\n"
        "2,2024-03-03T23:30:00-01:00,7.0\n"
        "2,2024-03-04T00:00:00Z,8.0\n"
    )
    cfg = job(tmp_path, {"transactions": {"path": "tx", "format": "csv"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    assert "quarantined" not in caplog.text, caplog.text
    store = open_store(tmp_path / "out")
    t = pd.concat(
        [store.read_bucket("transactions", k).to_pandas() for k in range(store.n_buckets)]
    ).sort_values("amount")
    assert t["timestamp"].astype(str).tolist() == [
        "2024-03-01 08:00:00",
        "2024-03-02 10:00:00",
        "2024-03-04 00:30:00",
        "2024-03-04 00:00:00",
    ]
    assert "quarantine" not in store.manifest or not store.manifest["quarantine"]


def test_without_campaigns_response_is_skipped_quietly(normal_run_logged):
    cfg, records = normal_run_logged
    quiet = [r for r in records if "target 'response' skipped: no campaigns data" in r.getMessage()]
    assert [r.levelname for r in quiet] == ["INFO"], [r.getMessage() for r in records]
    loud = [
        r.getMessage()
        for r in records
        if r.levelno >= logging.WARNING and re.search(r"response|audience", r.getMessage())
    ]
    assert not loud, loud
    m = read_metrics(cfg.parent / "out")  # the skip is recorded, with its reason
    assert "no campaigns data (data.campaigns with responded_at)" in m["response"]["skipped"]
    assert "no marketing consent data" in m["audiences_skipped"]


# -- empty outputs keep the store's id type ----------------------------------------------------
STRING_IDS = [f"C{i:03d}" for i in range(60)]


def id_files(out: Path, names=None) -> dict[str, tuple[str, int]]:
    """``{file: (customer_id type, rows)}`` for every committed Parquet file with a
    ``customer_id`` column (of the datasets ``names``, default all)."""
    got = {}
    for name in names or committed(out).datasets():
        for f in files(out, name):
            if f.suffix == ".parquet" and "customer_id" in (s := pq.read_schema(f)).names:
                got[f"{name}: {f.relative_to(out)}"] = (str(s.field("customer_id").type), f)
    return {k: (t, pq.read_metadata(f).num_rows) for k, (t, f) in got.items()}


def erase_everyone(cfg: Path, ids: list[str], cluster_yaml: str) -> None:
    (cfg.parent / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    args = ["erase", str(cfg), "--ids", str(cfg.parent / "ids.txt"), "--cluster", cluster_yaml]
    assert main([*args, "--quiet"]) == 0


def test_an_emptied_store_keeps_its_string_id_type(tmp_path, cluster_yaml, pseudonym_key, capsys):
    (tmp_path / "tx").mkdir()
    transactions(ids=STRING_IDS[:3], per_customer=4).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})
    assert main(["ingest", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    out = tmp_path / "out"
    parts = id_files(out, ["store"])  # 3 customers, 4 buckets: files of no row too
    assert len(parts) == 4 and sum(n for _t, n in parts.values()) == 12, parts
    assert {t for t, _n in parts.values()} == {"string"}, parts
    erase_everyone(cfg, STRING_IDS[:3], cluster_yaml)
    parts = id_files(out, ["store"])
    assert set(parts.values()) == {("string", 0)}, parts
    before = snapshot(out)
    assert main(["features", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "the store holds no transactions" in err and "Traceback" not in err, err
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def string_id_run(tmp_path_factory, local_client, cluster_yaml) -> Path:
    """A whole run (CLI) on 60 customers with string ids and no consent data."""
    d = tmp_path_factory.mktemp("string-ids")
    (d / "tx").mkdir()
    transactions(ids=STRING_IDS, per_customer=6).to_parquet(d / "tx" / "a.parquet")
    cfg = job(d, {"transactions": {"path": "tx"}})
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    return cfg


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_empty_audiences_keep_the_string_id_type(string_id_run):
    parts = id_files(string_id_run.parent / "out", ["audiences"])
    assert parts  # no consent data: empty, but typed as the store's ids
    assert set(parts.values()) == {("string", 0)}, parts


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_scoring_a_date_before_the_first_purchase_exits_3(string_id_run, cluster_yaml, capsys):
    out = string_id_run.parent / "out"
    before = snapshot(out)
    args = ["score", str(string_id_run), "--as-of", "2023-06-30", "--cluster", cluster_yaml]
    assert main([*args, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "no customer has a purchase on or before as_of=2023-06-30" in err, err
    assert "nothing to score" in err and "Traceback" not in err, err
    assert snapshot(out) == before


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_erasing_everyone_leaves_empty_outputs_typed_as_the_store(
    string_id_run, tmp_path, cluster_yaml, pseudonym_key, capsys
):
    import shutil

    shutil.copytree(string_id_run.parent / "out", tmp_path / "out")
    shutil.copytree(string_id_run.parent / "tx", tmp_path / "tx")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})  # the run's config, on the copy
    erase_everyone(cfg, STRING_IDS, cluster_yaml)
    out = tmp_path / "out"
    parts = id_files(out)  # every file of store, features, segments, scores, audiences
    names = {k.split(":")[0] for k in parts}
    assert {"store", "features", "segments", "audiences"} <= names, names
    assert any(n.startswith("scores/") for n in names), names
    assert set(parts.values()) == {("string", 0)}, parts
    assert main(["export", str(cfg), "--to", str(tmp_path / "export"), "--quiet"]) == 0
    exported = sorted((tmp_path / "export").rglob("*.parquet"))
    assert exported and {
        (str(pq.read_schema(f).field("customer_id").type), pq.read_metadata(f).num_rows)
        for f in exported
    } == {("string", 0)}
    before = snapshot(out)
    assert main(["score", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "the store holds no transactions" in err and "Traceback" not in err, err
    assert snapshot(out) == before


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_a_run_does_not_recommend_retraining_the_model_it_just_trained(
    tmp_path, local_client, caplog
):
    from bigseg.backend import resolve
    from bigseg.config import load_run_config
    from bigseg.pipeline import run_stages

    (tmp_path / "tx").mkdir()
    transactions(120, per_customer=8).to_parquet(tmp_path / "tx" / "a.parquet")
    strict = {"max_feature_psi": 0.001}  # any drift at all is a reason
    cfg = load_run_config(job(tmp_path, {"transactions": {"path": "tx"}}, drift=strict))
    m = run_stages(cfg, local_client, resolve("cpu"))
    assert m["retrain"]["recommended"] is False and m["retrain"]["reasons"] == []
    assert m["retrain"]["not_judged"].startswith("model trained in this run")
    assert m["drift"]["features"]["max_psi"] > 0.001  # measured and reported all the same
    assert "retraining recommended" not in caplog.text
    # a later run that scores with that model judges the drift
    later = run_stages(cfg, local_client, resolve("cpu"), stages=("score",))
    assert later["retrain"]["recommended"] is True


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_too_few_customers_for_min_segment_size_merge_to_one_and_say_so(
    tmp_path, cluster_yaml, caplog
):
    (tmp_path / "tx").mkdir()
    transactions(40, per_customer=6).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(
        tmp_path,
        {"transactions": {"path": "tx"}},
        segmentation={"k": 3},
        privacy={"min_segment_size": 50},
    )
    # the whole run, on to the report
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    m = read_metrics(tmp_path / "out")
    seg = m["segmentation"]
    assert seg["k"] == 1 and seg["merged_small_segments"][0]["k"] == 3, seg
    assert seg["merged_small_segments"][-1]["k_after"] == 1
    s = read_dataset(tmp_path / "out", "segments")
    assert s["segment"].nunique() == 1 and len(s) == 40
    scores = read_scores(tmp_path / "out")
    assert len(scores) == 40 and report_path(tmp_path / "out").is_file()
    said = [r for r in caplog.records if "below privacy.min_segment_size=50" in r.message]
    assert said and said[0].levelname == "WARNING" and "only 40 customers" in said[0].message


@pytest.mark.parametrize("k", [5, "auto"])
@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_fewer_customers_than_segments_asked_for(k, tmp_path, cluster_yaml, caplog):
    (tmp_path / "tx").mkdir()
    transactions(3, per_customer=40).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}}, segmentation={"k": k})
    assert main(["run", str(cfg), "--cluster", cluster_yaml, "--quiet"]) == 0
    m = read_metrics(tmp_path / "out")
    assert m["segmentation"]["k"] <= 3 and m["n_customers"] == 3
    assert "only 3 customers, so at most 3 segments" in caplog.text
    s = read_scores(tmp_path / "out")
    assert len(s) == 3


def test_a_held_lease_is_refused_before_a_cluster_starts(tmp_path, capsys, caplog, monkeypatch):
    import os
    import socket

    import bigseg.engine
    from bigseg.io.lease import LEASES, lease
    from bigseg.io.storage import local

    (tmp_path / "tx").mkdir()
    transactions(20).to_parquet(tmp_path / "tx" / "a.parquet")
    cfg = job(tmp_path, {"transactions": {"path": "tx"}})
    (tmp_path / "out").mkdir()

    def no_cluster(*a, **k):
        raise AssertionError("a cluster was started before the lease was checked")

    monkeypatch.setattr(bigseg.engine, "connect", no_cluster)
    with lease(local, tmp_path / "out", "bigseg run"):  # a live run holds the output
        assert main(["run", str(cfg), "--quiet"]) == 6
    err = capsys.readouterr().err
    assert "another bigseg run holds this output's lease" in err and LEASES in err, err
    assert f"{socket.gethostname()}:{os.getpid()} (`bigseg run`)" in err, err
    assert "Wait for it to finish; if it died, its lease expires by itself" in err, err
    assert "Traceback" not in err
    assert not committed(tmp_path / "out").committed  # and nothing was run
