"""Right to erasure: ``bigseg erase`` removes customers from every output (store, features,
segments, scores, audiences, quarantine, older commits, dead runs' folders, leftovers) in
one commit, keeps them out of later ingests, is idempotent, and a failure in the middle
commits nothing (the previous commit stays readable) and a re-run completes it."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

import bigseg.erase as erase_mod
from bigseg.backend import resolve
from bigseg.cli import build_parser, main
from bigseg.config import load_run_config
from bigseg.erase import erase
from bigseg.errors import ConfigError, DataError
from bigseg.io import commits
from bigseg.io.lease import LEASES
from bigseg.io.storage import local
from bigseg.pipeline import run_stages
from bigseg.privacy import ENV, pseudonymize
from bigseg.store import ingest, open_store
from bigseg.store.erasure import LOG_DIR, LOG_NAME
from bigseg.testing.outputs import committed

KEY = "erase-test-key-0123456789"
TABLES = ("transactions", "customers", "events", "campaigns", "reviews")
N_ERASED = 100  # of 3,000 customers (the acceptance run erases 1,000 of a larger base)


def _get_env(name: str) -> str | None:
    return os.environ.get(name)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture(scope="module", autouse=True)
def _key_on_every_worker(local_client):
    """The key in this process and in the session's running workers, for this module only."""
    before = local_client.run(_get_env, ENV)  # each worker's own value, to restore
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, KEY)
        local_client.run(_set_env, ENV, KEY)
        yield
    for w, v in before.items():
        local_client.run(_set_env, ENV, v, workers=[w], on_error="ignore")


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory):
    """3,000 synthetic customers twice: int ids (``ints/``) and string ids 'CUST-000123'
    (``strs/``), each with an extra transactions file of rejected rows (infinite amounts,
    exact duplicates) for erased and kept customers alike."""
    from bigseg.synth import generate

    d = tmp_path_factory.mktemp("erase_data")
    generate(3000, d / "gen", seed=7, chunk_size=1000)
    ids = pd.read_parquet(d / "gen" / "raw" / "customers")["customer_id"].sort_values()
    erased = ids.to_numpy()[::30][:N_ERASED]
    kept = ids.to_numpy()[1::30][:20]
    for kind, conv in (
        ("ints", None),
        ("strs", lambda a: pa.array([f"CUST-{i:06d}" for i in a.to_pylist()])),
    ):
        for t in TABLES:
            (d / kind / t).mkdir(parents=True)
            for f in sorted(glob.glob(str(d / "gen" / "raw" / t / "*.parquet"))):
                tab = pq.read_table(f)
                if conv is not None:
                    i = tab.column_names.index("customer_id")
                    tab = tab.set_column(i, "customer_id", conv(tab.column(i)))
                pq.write_table(tab, d / kind / t / Path(f).name)
        tx = pq.read_table(d / kind / "transactions")
        raw_ids = pd.Series(tx.column("customer_id").to_pylist())
        want = set(erased[:15].tolist()) | set(kept[:10].tolist())
        if conv is not None:
            want = {f"CUST-{i:06d}" for i in want}
        pick = np.flatnonzero(raw_ids.isin(want).to_numpy())
        first = pd.Series(pick).groupby(raw_ids.iloc[pick].to_numpy()).first().to_numpy()
        dup = tx.take(pa.array(first))
        inf = dup.set_column(
            dup.column_names.index("amount"), "amount", pa.array(np.full(dup.num_rows, np.inf))
        )
        pq.write_table(pa.concat_tables([dup, inf]), d / kind / "transactions" / "part-bad.parquet")
    return {"dir": d, "erased": erased, "kept": kept}


def _config(path: Path, raw: Path, out: Path, **extra):
    doc = {
        "data": {t: {"path": str(raw / t)} for t in TABLES},
        "horizon_days": 90,
        "seed": 3,
        "segmentation": {"k": 5},
        "prediction": {"n_estimators": 30},
        "output": str(out),
        **extra,
    }
    path.write_text(yaml.safe_dump(doc))
    return load_run_config(path)


def _group(name: str, member: str) -> str:
    """store/<table>, quarantine/<table>, or the dataset's name (scores/as_of=...)."""
    return f"{name}/{member.split('/')[0]}" if name in ("store", "quarantine") else name


def _committed_parquet(out: Path) -> list[tuple[str, Path]]:
    """``(group, file)`` of every Parquet file the latest commit lists."""
    o = committed(out)
    return [
        (_group(name, m), Path(p))
        for name in o.names()
        for m, p in sorted(o.members(name).items())
        if m.endswith(".parquet")
    ]


def _counts(out: Path, needles: set[str]) -> dict[str, tuple[int, int]]:
    """Per committed dataset (per table for the store and quarantine): (rows, rows whose
    customer_id, as text, is a needle). What readers see; the scans by _leaks and _id_cells
    read every file under ``out``, committed or not."""
    res: dict[str, list[int]] = {}
    for group, p in _committed_parquet(out):
        t = pq.read_table(p)
        g = res.setdefault(group, [0, 0])
        g[0] += t.num_rows
        if "customer_id" in t.column_names:
            ids = pc.utf8_trim_whitespace(t.column("customer_id").cast(pa.string()))
            g[1] += pc.sum(pc.is_in(ids, value_set=pa.array(sorted(needles)))).as_py() or 0
    return {k: tuple(v) for k, v in res.items()}


def _leaks(out: Path, needles: list[str]) -> list[str]:
    """(file: needle) for every needle found in any file under ``out``: Parquet with
    every column as text, every other file as raw bytes."""
    rx = re.compile("|".join(map(re.escape, needles)))
    hits = []
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            text = pq.read_table(p).to_pandas().astype(str).to_csv()
        else:
            text = p.read_bytes().decode("latin-1")
        hits += [f"{p.relative_to(out)}: {m}" for m in sorted(set(rx.findall(text)))]
    return hits


def _id_cells(out: Path, values: set[str]) -> list[str]:
    """Files whose customer_id column holds one of ``values`` (ids as text)."""
    hits = []
    for p in sorted(out.rglob("*.parquet")):
        t = pq.read_table(p)
        if "customer_id" in t.column_names:
            ids = set(t.column("customer_id").cast(pa.string()).to_pylist())
            if ids & values:
                hits.append(str(p.relative_to(out)))
    return hits


def _present(out: Path, needles: set[str]) -> set[str]:
    """The needles that are a customer id in some table of the committed store."""
    found = set()
    for group, p in _committed_parquet(out):
        if group.startswith("store/"):
            ids = pq.read_table(p, columns=["customer_id"]).column(0).cast(pa.string())
            found |= needles & set(ids.to_pylist())
    return found


def _raw_rows(raw: Path, ids: set) -> dict[str, int]:
    """Rows per table of the raw inputs that belong to ``ids``."""
    out = {}
    for t in TABLES:
        col = pq.read_table(raw / t, columns=["customer_id"]).column(0).to_pylist()
        out[t] = sum(1 for v in col if v in ids)
    return {t: n for t, n in out.items() if n}


def _files(out: Path) -> dict[str, tuple]:
    """``{path: (inode, mtime)}`` of every file under ``out`` but the lease's records
    (every command takes and releases the lease)."""
    return {
        str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.relative_to(out).as_posix().startswith(LEASES + "/")
    }


def _commit(out: Path) -> tuple[int, dict]:
    """The latest commit: its number and datasets."""
    o = committed(out)
    return o.parent, o.base


def _models(out: Path) -> dict:
    """The committed model versions: their manifest entries, and (inode, mtime) of each
    file they list."""
    o = committed(out)
    names = [n for n in o.names() if n.startswith("models/")]
    return {
        "entries": {n: o.entry(n) for n in names},
        "files": {
            str(p): (Path(p).stat().st_ino, Path(p).stat().st_mtime_ns)
            for n in names
            for p in o.files(n)
        },
    }


def _log_objects(out: Path) -> list[Path]:
    """The erasure log: one object per request that added ids."""
    return sorted((out / LOG_DIR).glob("*.json"))


def _check_erased(out: Path, before: dict, after: dict) -> None:
    """Every directory lost exactly the erased customers' rows; the manifest agrees."""
    for g, (rows, hit) in before.items():
        assert after[g] == (rows - hit, 0), g
    m = open_store(out).manifest
    for t, (rows, _hit) in (
        (k.split("/")[1], v) for k, v in after.items() if k.startswith("store/")
    ):
        assert m["tables"][t]["rows"] == rows, t


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_erase_plain_string_ids_everywhere_and_for_good(raw_data, tmp_path, local_client, capsys):
    raw = raw_data["dir"] / "strs"
    erased = [f"CUST-{i:06d}" for i in raw_data["erased"]]
    kept = [f"CUST-{i:06d}" for i in raw_data["kept"]]
    cfg_path = tmp_path / "job.yaml"
    cfg = _config(cfg_path, raw, tmp_path / "out")
    run_stages(cfg, local_client, resolve("cpu"))
    out = cfg.output_dir
    before = _counts(out, set(erased))
    present = _present(out, set(erased))
    for g in (
        "store/transactions",
        "store/customers",
        "features",
        "segments",
        "audiences",
        "quarantine/transactions",
    ):
        assert before[g][1] > 0, g  # the erased customers are really there
    assert any(k.startswith("scores/") and v[1] for k, v in before.items())
    assert _leaks(out, erased)  # the scan finds them before
    models = _models(out)
    assert models["entries"] and models["files"]
    # the commit the erase builds on lists the rows: gc must drop it and its files
    parent = committed(out).parent
    # leftovers of interrupted runs that hold copies of the rows: a run that died before
    # committing (its staging and a dataset it wrote), a publish interrupted inside the
    # committed run's folder, temporary files, the staging of an older bigseg
    feature_file = next(p for g, p in _committed_parquet(out) if g == "features")
    segments = next(p for g, p in _committed_parquet(out) if g == "segments").parent
    live_run = feature_file.parents[1]
    dead_run = out / "runs" / "0123456789abcdef01234567"
    (dead_run / ".staging" / "features-0123456789ab").mkdir(parents=True)
    shutil.copy(feature_file, dead_run / ".staging" / "features-0123456789ab" / "part-0.parquet")
    shutil.copytree(segments, dead_run / "segments")
    shutil.copytree(segments, live_run / "segments.~old")
    (live_run / ".metrics.json.0badc0de.tmp").write_text(json.dumps({"x": erased[:5]}))
    (out / ".metrics.json.0badc0de.tmp").write_text(json.dumps({"x": erased[:5]}))
    stale = out / ".staging" / "features-0123456789ab"
    stale.mkdir(parents=True)
    shutil.copy(feature_file, stale / "part-00000.parquet")
    leftovers = [
        dead_run,
        live_run / "segments.~old",
        live_run / ".metrics.json.0badc0de.tmp",
        out / ".metrics.json.0badc0de.tmp",
        stale,
    ]

    ids_file = tmp_path / "erase.txt"
    # ids exactly as ingest keeps them (spaces would be part of an id), CRLF line ends
    ids_file.write_bytes(("\r\n".join(erased) + "\r\n\r\nCUST-999999\r\n").encode())
    assert main(["erase", str(cfg_path), "--ids", str(ids_file)]) == 0
    printed = capsys.readouterr().out
    assert f"erased {len(present)} of {N_ERASED + 1} requested" in printed
    for g, (_rows, hit) in before.items():
        if hit:
            assert re.search(rf"{re.escape(g)}\s+{hit:,} rows removed", printed), g

    after = _counts(out, set(erased))
    _check_erased(out, before, after)
    assert after["quarantine/transactions"][0] > 0  # the kept customers' rejected rows stay
    assert _counts(out, set(kept))["quarantine/transactions"][1] > 0
    # every file: runs/ (every run's folder), _bigseg/ (commits, records, erasure log),
    # the report and the models included
    assert not _leaks(out, erased)
    # their files deleted (gc may leave the empty folders of a kept run's prefix)
    left = [p for p in leftovers if p.is_file() or any(f.is_file() for f in p.rglob("*"))]
    assert not left and not list((out / ".staging").iterdir())
    # one commit left (the erase's): no older commit lists the erased rows
    assert commits.numbers(local, out / commits.COMMITS) == [parent + 1]
    # models hold no customer rows (the scan above covers them): not rewritten
    assert _models(out) == models
    m = open_store(out).manifest
    assert m["last_erasure"]["ids_requested"] == N_ERASED + 1
    assert len(_log_objects(out)) == 1 and not (out / LOG_NAME).exists()

    # a second erasure of the same ids changes nothing, not even the log (no new commit)
    files, state = _files(out), _commit(out)
    again = erase(cfg, ids_file, local_client)
    assert again["rows_removed"] == {} and again["newly_logged"] == 0
    assert again["customers_found"] == 0 and _files(out) == files and _commit(out) == state

    # re-ingesting: the same files are up to date; touched files force a full rebuild,
    # and the whole pipeline on it brings nobody back
    assert ingest(cfg, local_client).manifest["created"] == m["created"]
    for p in raw.rglob("*.parquet"):
        os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 60))
    run_stages(cfg, local_client, resolve("cpu"))
    last = open_store(out).manifest["last_ingest"]
    assert last["mode"] == "full"
    assert last["erased_rows_skipped"] == _raw_rows(raw, set(erased))
    assert not _leaks(out, erased)
    assert _counts(out, set(kept))["quarantine/transactions"][1] > 0


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_erase_pseudonymised_int_ids_survives_failures(
    raw_data, tmp_path, local_client, monkeypatch
):
    raw = raw_data["dir"] / "ints"
    erased = [int(i) for i in raw_data["erased"]]
    cfg = _config(tmp_path / "job.yaml", raw, tmp_path / "out", privacy={"pseudonymize": True})
    run_stages(cfg, local_client, resolve("cpu"))
    out = cfg.output_dir
    pseudo = pseudonymize(pa.array(erased), KEY.encode()).to_pylist()
    before = _counts(out, set(pseudo))
    present = _present(out, set(pseudo))
    assert before["store/transactions"][1] > 0 and before["quarantine/transactions"][1] > 0
    assert _leaks(out, pseudo)
    m0 = open_store(out).manifest
    assert m0["raw_id_type"] == "int64" and m0["id_type"] == "string"
    ids_file = tmp_path / "erase.txt"  # zero-padded text is still customer 42 in an int store
    ids_file.write_text("\n".join(f"{i:07d}" if n % 2 else str(i) for n, i in enumerate(erased)))

    def readable(expect_store_rows: bool):
        for p in out.rglob("*.parquet"):
            pq.read_table(p)
        s = open_store(out)
        for t in s.tables:
            n = sum(s.read_bucket(t, k).num_rows for k in range(s.n_buckets))
            assert n == s.manifest["tables"][t]["rows"]
            if expect_store_rows:
                assert n == before[f"store/{t}"][0]

    # 1. a write fails half-way through a dataset: nothing is committed, the previous
    # commit is whole and readable
    state = _commit(out)
    real, calls = erase_mod._filter_file, Counter()

    def failing(src, dst, match, trim):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(src, dst, match, trim)

    monkeypatch.setattr(erase_mod, "_filter_file", failing)
    with pytest.raises(OSError, match="disk full"):
        erase(cfg, ids_file, None)
    monkeypatch.setattr(erase_mod, "_filter_file", real)
    assert _commit(out) == state and _counts(out, set(pseudo)) == before
    assert not list(out.glob("runs/*/.staging/*")) and not list(out.glob(".staging/*"))
    readable(True)
    assert len(_log_objects(out)) == 1  # logged first: ingest already keeps them out

    # 2. the process dies after every dataset was rewritten, before the commit: readers
    # still see the previous commit, every dataset as it was (all or nothing)
    real_finish = erase_mod.finish

    def killed(output, held):
        raise RuntimeError("killed")

    monkeypatch.setattr(erase_mod, "finish", killed)
    with pytest.raises(RuntimeError, match="killed"):
        erase(cfg, ids_file, local_client)
    monkeypatch.setattr(erase_mod, "finish", real_finish)
    assert _commit(out) == state and _counts(out, set(pseudo)) == before
    readable(True)

    # 3. a re-run completes it, in one commit that replaces every older one
    res = erase(cfg, ids_file, local_client)
    assert res["rows_removed"] == {g: v[1] for g, v in before.items() if v[1]}
    assert res["customers_found"] == len(present) and res["newly_logged"] == 0
    assert commits.numbers(local, out / commits.COMMITS) == [state[0] + 1]
    after = _counts(out, set(pseudo))
    _check_erased(out, before, after)
    readable(False)
    # every file under output: runs/ (the previous commit's files and both failed
    # attempts' included) and _bigseg/
    assert not _leaks(out, pseudo)  # pseudonyms, in any file
    assert not _id_cells(out, {str(i) for i in erased})  # raw ids, in any id column
    (log_file,) = _log_objects(out)  # one request logged them; the re-runs added none
    log_text = log_file.read_text()
    assert KEY not in log_text and len(json.loads(log_text)["hashes"]) == N_ERASED
    assert not (out / LOG_NAME).exists()  # the legacy log is never written

    # 4. idempotent
    files, state = _files(out), _commit(out)
    assert erase(cfg, ids_file, local_client)["rows_removed"] == {}
    assert _files(out) == files and _commit(out) == state

    # 5. a full re-ingest of the raw files (rejected rows included) keeps them out
    for p in raw.rglob("*.parquet"):
        os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 60))
    store = ingest(cfg, local_client)
    assert store.manifest["last_ingest"]["erased_rows_skipped"] == _raw_rows(raw, set(erased))
    assert committed(out).parent == state[0] + 1
    assert not _leaks(out, pseudo)  # the new store and quarantine, and every other file


def test_erase_errors(raw_data, tmp_path, local_client, monkeypatch, capsys):
    raw = raw_data["dir"] / "ints"
    cfg_path = tmp_path / "job.yaml"
    cfg = _config(cfg_path, raw, tmp_path / "out")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("5\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert "erase" in build_parser().format_help()
    # exit 3: no ids file, an empty one, no store under output
    assert main(["erase", str(cfg_path), "--ids", str(tmp_path / "nope.txt")]) == 3
    assert "nope.txt: ids file not found" in capsys.readouterr().err
    assert main(["erase", str(cfg_path), "--ids", str(empty)]) == 3
    assert "lists no customer id" in capsys.readouterr().err
    assert main(["erase", str(cfg_path), "--ids", str(ids_file)]) == 3
    assert "no bucketed store" in capsys.readouterr().err

    ingest(cfg, local_client)
    with pytest.raises(DataError, match="'CUST-1' is not an integer"):
        erase(cfg, ["CUST-1"])
    monkeypatch.delenv(ENV)
    assert main(["erase", str(cfg_path), "--ids", str(ids_file)]) == 2
    assert ENV in capsys.readouterr().err
    monkeypatch.setenv(ENV, "another-key-0123456789")
    erase(cfg, ids_file)  # in this process
    # the log needs its key: ingest refuses to run without it or with another one
    for p in raw.rglob("*.parquet"):
        os.utime(p, (p.stat().st_atime, p.stat().st_mtime + 120))
    monkeypatch.setenv(ENV, KEY)
    with pytest.raises(ConfigError, match="another"):
        ingest(cfg, local_client)
    monkeypatch.delenv(ENV)
    with pytest.raises(ConfigError, match=ENV):
        ingest(cfg, local_client)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_erase_1000_customers_acceptance(raw_data, tmp_path, local_client):
    """Acceptance: 1,000 of the 3,000 customers erased (pseudonymised int ids); a scan of
    every file under output/ finds none of their ids, raw or pseudonymised, and every
    per-customer output lost exactly the erased customers it held."""
    raw = raw_data["dir"] / "ints"
    ids = pd.read_parquet(raw / "customers", columns=["customer_id"])["customer_id"]
    erased = [int(i) for i in ids.sort_values().to_numpy()[::3][:1000]]
    assert len(erased) == 1000
    cfg = _config(tmp_path / "job.yaml", raw, tmp_path / "out", privacy={"pseudonymize": True})
    run_stages(cfg, local_client, resolve("cpu"))
    out = cfg.output_dir
    pseudo = pseudonymize(pa.array(erased), KEY.encode()).to_pylist()
    before = _counts(out, set(pseudo))
    assert before["store/customers"][1] == 1000  # every one of them is a customer there
    for g in ("features", "segments"):  # those with consent and a purchase (~4 in 5)
        assert before[g][1] > 700, (g, before[g])
    ids_file = tmp_path / "erase.txt"
    ids_file.write_text("\n".join(map(str, erased)) + "\n")
    res = erase(cfg, ids_file, local_client)
    assert res["customers_found"] == 1000
    after = _counts(out, set(pseudo))
    _check_erased(out, before, after)  # rows dropped by exactly the erased customers' rows
    for g in ("features", "segments", *[k for k in before if k.startswith("scores/")]):
        # one row per customer: down by exactly the erased customers they held
        assert before[g][0] - after[g][0] == before[g][1], g
    assert after["store/customers"][0] == before["store/customers"][0] - 1000
    assert not _leaks(out, pseudo)  # pseudonyms, in any file (Parquet as text, others raw)
    assert not _id_cells(out, {str(i) for i in erased})  # raw ids, in any id column
