"""``bigseg export`` (issue 18): the committed scores as one plain, hive-partitioned
Parquet dataset that DuckDB reads by listing folders, the same rows as
``bigseg.read_scores``; idempotent (a second export changes no file), a new commit adds
only its partition, and the destination is refused where it would mix with the output.
Local disk and moto's S3 server alike (the S3 test is in ``make test-slow``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import bigseg
from bigseg.backend import resolve
from bigseg.cli import main
from bigseg.io.commits import latest
from bigseg.io.export import MARKER
from bigseg.io.output import Output
from bigseg.io.storage import local
from bigseg.pipeline import run_stages


@pytest.fixture
def copied(copied_run):
    """A private copy of the session's small run: ``(config path, config, metrics)``."""
    return copied_run


def _all_scores(output, **kw) -> pa.Table:
    """Every committed ``as_of`` through ``bigseg.read_scores``, sorted like the export."""
    out = Output.open(output, storage_options=kw.get("storage_options"))
    t = pa.concat_tables([bigseg.read_scores(output, d, **kw) for d in out.scores_dates()])
    return t.sort_by([("as_of", "ascending"), ("customer_id", "ascending")])


def _duckdb(glob: str, like: pa.Table, con=None) -> pa.Table:
    """What DuckDB reads from the export, with hive partitioning, in ``like``'s column
    order and types (DuckDB returns its own string and float kinds)."""
    con = con or duckdb.connect()
    cols = ", ".join(f'"{c}"' for c in like.column_names)
    got = con.sql(
        f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning = true) "
        "ORDER BY as_of, customer_id"
    ).to_arrow_table()
    assert got.schema.field("as_of").type == pa.date32()  # typed from the folder name
    return got.cast(like.schema)


def _snapshot(root: Path) -> dict:
    """Every file under ``root`` with its inode and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.slow
def test_export_to_a_local_folder(copied, local_client, tmp_path, capsys):
    cfg_path, cfg, metrics = copied
    to = tmp_path / "lake" / "scores"
    day = metrics["as_of"]
    assert main(["export", str(cfg_path), "--to", str(to)]) == 0
    assert f"as_of={day}: written" in capsys.readouterr().out

    # one folder per as_of: byte copies of exactly the committed files, and a marker
    n, manifest = latest(local, cfg.output_dir)
    listed = manifest["datasets"][f"scores/as_of={day}"]["files"]
    part = to / f"as_of={day}"
    assert sorted(p.name for p in to.iterdir()) == [f"as_of={day}"]  # no staging left
    names = [f"part-{i:05d}.parquet" for i in range(len(listed))]
    assert sorted(p.name for p in part.iterdir()) == sorted([*names, MARKER])
    assert [_sha(part / n) for n in names] == [f["sha256"] for f in listed]
    assert "as_of" not in pq.read_schema(part / names[0]).names  # the folder supplies it
    marker = json.loads((part / MARKER).read_text())
    assert marker["commit"] == n and [f["source"] for f in marker["files"]] == [
        f["path"] for f in listed
    ]

    # DuckDB, listing folders, reads exactly what read_scores reads through the commit
    want = _all_scores(cfg.output_dir)
    assert want.num_rows == metrics["n_customers"]
    assert _duckdb(f"{to}/**/*.parquet", want).equals(want)
    assert _duckdb(f"{to}/as_of=*/*.parquet", want).equals(want)

    # exporting the same commit again changes no file
    before = _snapshot(to)
    assert main(["export", str(cfg_path), "--to", str(to)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert _snapshot(to) == before

    # a score commit at another date: the re-export adds that partition only
    earlier = dt.date.fromisoformat(day) - dt.timedelta(days=30)
    run_stages(
        cfg.model_copy(update={"as_of": earlier}), local_client, resolve("cpu"), stages=("score",)
    )
    assert main(["export", str(cfg_path), "--to", str(to), "--quiet"]) == 0
    after = _snapshot(to)
    assert {k: v for k, v in after.items() if k.startswith(f"as_of={day}/")} == before
    assert {k.split("/")[0] for k in after} == {f"as_of={earlier}", f"as_of={day}"}
    want = _all_scores(cfg.output_dir)
    assert set(want.column("as_of").to_pylist()) == {earlier, dt.date.fromisoformat(day)}
    assert _duckdb(f"{to}/**/*.parquet", want).equals(want)
    res = bigseg.export(cfg_path, to)  # the Python API: nothing left to write
    assert res["written"] == [] and res["unchanged"] == [str(earlier), day]
    assert _snapshot(to) == after

    # --as-of exports one date; another date's partition stays as it was
    assert main(["export", str(cfg_path), "--to", str(tmp_path / "one"), "--as-of", day]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == [f"as_of={day}"]


@pytest.mark.slow
def test_a_partition_that_differs_is_rewritten_whole(copied, tmp_path):
    cfg_path, cfg, metrics = copied
    to = tmp_path / "export"
    assert main(["export", str(cfg_path), "--to", str(to), "--quiet"]) == 0
    part = to / f"as_of={metrics['as_of']}"
    good = _snapshot(to)
    (part / "part-00000.parquet").unlink()  # a lost file, a stray one
    shutil.copy(part / "part-00001.parquet", part / "part-00099.parquet")
    other = to / "as_of=1999-01-01"  # a partition of a date not committed: left alone
    other.mkdir()
    (other / "part-00000.parquet").write_bytes(b"theirs")
    assert main(["export", str(cfg_path), "--to", str(to), "--quiet"]) == 0
    assert sorted(p.name for p in part.iterdir()) == sorted(k.split("/")[1] for k in good)
    assert (other / "part-00000.parquet").read_bytes() == b"theirs"
    shutil.rmtree(other)
    want = _all_scores(cfg.output_dir)
    assert _duckdb(f"{to}/**/*.parquet", want).equals(want)

    # a committed file that no longer matches its checksum: exit 3, the export unchanged
    (part / MARKER).write_text("{}")  # force a rewrite
    kept = _snapshot(to)
    n, manifest = latest(local, cfg.output_dir)
    first = manifest["datasets"][f"scores/as_of={metrics['as_of']}"]["files"][0]["path"]
    damaged = cfg.output_dir / first
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert main(["export", str(cfg_path), "--to", str(to), "--quiet"]) == 3
    assert _snapshot(to) == kept
    assert sorted(p.name for p in to.iterdir()) == [part.name]  # staging cleared


def test_export_refuses_bad_destinations_and_missing_scores(copied, tmp_path, capsys):
    cfg_path, cfg, metrics = copied
    out = cfg.output_dir

    def run(*argv) -> tuple[int, str]:
        code = main(["export", str(cfg_path), *argv])
        return code, capsys.readouterr().err

    code, err = run("--to", str(out / "export"))
    assert code == 2 and "inside the output" in err
    code, err = run("--to", str(out.parent))
    assert code == 2 and "around the output" in err
    code, err = run("--to", str(tmp_path / "x"), "--as-of", "2026-13-01")
    assert code == 2 and "--as-of 2026-13-01: not a date" in err
    assert main(["score", str(cfg_path), "--as-of", "2026-13-01"]) == 2  # the same parser
    assert "--as-of 2026-13-01: not a date" in capsys.readouterr().err
    code, err = run("--to", str(tmp_path / "x"), "--as-of", "1999-01-01")
    assert code == 3 and "no scores as of 1999-01-01" in err and metrics["as_of"] in err
    shutil.copytree(out / "_bigseg", tmp_path / "other" / "_bigseg")
    code, err = run("--to", str(tmp_path / "other"))
    assert code == 2 and "another bigseg output" in err
    assert not (tmp_path / "x").exists()

    doc = yaml.safe_load(cfg_path.read_text())
    doc["output"] = str(tmp_path / "empty")
    cfg_path.write_text(yaml.safe_dump(doc))
    code, err = run("--to", str(tmp_path / "x"))
    assert code == 3 and "no scores committed yet" in err


@pytest.mark.slow  # ~12 s on moto: beyond the default suite's budget (docs/testing.md)
def test_export_on_s3(s3, small_run, tmp_path, monkeypatch, capsys):
    """The output on S3, exported to another prefix by server-side copies, with the
    endpoint from the config's storage_options alone. DuckDB here has no httpfs
    extension (offline), so it reads ``s3://`` through s3fs registered as its
    filesystem: the same listing and hive partitioning, over the S3 API."""
    import s3fs

    local_cfg, metrics = small_run
    fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint, skip_instance_cache=True)
    fs.put(str(local_cfg.output_dir) + "/", f"{s3.name}/out/", recursive=True)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = {"endpoint_url": s3.endpoint}
    doc = yaml.safe_load((local_cfg.output_dir.parent / "job.yaml").read_text())
    doc["output"] = s3.url("out")
    doc["storage_options"] = options
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    to = s3.url("export")
    assert main(["export", str(tmp_path / "job.yaml"), "--to", to]) == 0
    assert f"as_of={metrics['as_of']}: written" in capsys.readouterr().out

    want = _all_scores(s3.url("out"), storage_options=options)
    assert want.num_rows == metrics["n_customers"]
    con = duckdb.connect()
    con.register_filesystem(fs)
    assert _duckdb(f"{to}/**/*.parquet", want, con).equals(want)
    _, manifest = latest(local, local_cfg.output_dir)
    listed = manifest["datasets"][f"scores/as_of={metrics['as_of']}"]["files"]
    part = f"{s3.name}/export/as_of={metrics['as_of']}"
    for i, f in enumerate(listed):
        assert (
            hashlib.sha256(fs.cat_file(f"{part}/part-{i:05d}.parquet")).hexdigest() == (f["sha256"])
        )

    # the same commit again: no object rewritten
    def objects() -> dict:
        fs.invalidate_cache()
        return {
            k: v["ETag"] + str(v["LastModified"]) for k, v in fs.find(part, detail=True).items()
        }

    before = objects()
    assert len(before) == len(listed) + 1
    assert main(["export", str(tmp_path / "job.yaml"), "--to", to, "--quiet"]) == 0
    assert objects() == before

    # a stray part file makes the partition differ: rewritten, the stray deleted
    fs.pipe_file(f"{part}/part-00042.parquet", b"stray")
    assert main(["export", str(tmp_path / "job.yaml"), "--to", to, "--quiet"]) == 0
    assert set(objects()) == set(before)
    assert _duckdb(f"{to}/as_of=*/*.parquet", want, con).equals(want)
