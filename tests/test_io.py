"""bigseg.io: the layout, local storage, atomic writes and publication."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa

from bigseg.io import commit, tables
from bigseg.io.layout import Layout
from bigseg.io.output import LATEST_MODEL, Output, model_dataset
from bigseg.io.storage import TEMPORARY, local


def test_put_if_absent_is_create_only(tmp_path):
    p = tmp_path / "lease"
    assert local.put_if_absent(p, b"first")
    assert not local.put_if_absent(p, b"second")
    assert p.read_bytes() == b"first"
    assert [c.name for c in tmp_path.iterdir()] == ["lease"]  # no temporary left


def test_atomic_writes_leave_no_temporary(tmp_path):
    commit.write_json_atomic(tmp_path / "a" / "m.json", {"x": 1, "when": tmp_path})
    assert (tmp_path / "a" / "m.json").read_text() == json.dumps(
        {"x": 1, "when": str(tmp_path)}, indent=2
    ) + "\n"
    commit.write_bytes_atomic(tmp_path / "a" / "m.json", b"new")
    assert (tmp_path / "a" / "m.json").read_bytes() == b"new"
    tables.write_parquet_atomic(tmp_path / "a" / "t.parquet", pa.table({"a": [1, 2]}))
    assert tables.read_parquet(tmp_path / "a" / "t.parquet").column("a").to_pylist() == [1, 2]
    assert not [p for p in (tmp_path / "a").iterdir() if TEMPORARY.match(p.name)]


def test_publish_replaces_and_recovers(tmp_path):
    final = tmp_path / "scores"
    with commit.staged_dir(tmp_path, final) as d:
        (d / "v").mkdir()
        commit.write_text_atomic(d / "v" / "x", "1")
    with commit.staged_dir(tmp_path, final) as d:
        commit.write_text_atomic(d / "y", "2")
    assert sorted(p.name for p in final.iterdir()) == ["y"]
    # a publish killed between its two renames: the previous version comes back
    local.rename(final, tmp_path / "scores.~old")
    commit.recover(final)
    assert (final / "y").read_text() == "2" and not (tmp_path / "scores.~old").exists()
    assert not list((tmp_path / ".staging").iterdir())


def test_link_files_shares_and_replace_file_keeps_the_original(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "b").mkdir(parents=True)
    (src / "b" / "f").write_text("old")
    (src / "skip.json").write_text("{}")
    (src / "c").write_text("not a member")
    commit.link_files(
        {"b/f": src / "b" / "f", "skip.json": src / "skip.json"}, dst, skip=("skip.json",)
    )
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*")) == ["b", "b/f"]
    assert (dst / "b" / "f").stat().st_ino == (src / "b" / "f").stat().st_ino  # shared
    commit.replace_file(dst / "b" / "f").write_text("new")
    assert (src / "b" / "f").read_text() == "old"


def test_latest_model_is_read_from_the_commit(tmp_path):
    """``models/LATEST`` is a dataset of the commit (no file): the one reader is
    :meth:`Output.latest_model`; a model version exists when a commit lists it."""
    out = Output.open(tmp_path)
    assert out.latest_model() is None and out.model_versions() == []
    lay = out.begin("r1")
    assert lay.root == tmp_path / "runs" / "r1"
    commit.write_json_atomic(lay.model_manifest("v1"), {})
    out.put(model_dataset("v1"), lay.model("v1"), version="v1")
    out.put_pointer(LATEST_MODEL, version="v1")
    # this run sees its own model before it commits, nobody else does
    assert out.latest_model() == "v1" and Output.open(tmp_path).latest_model() is None
    # a folder that no commit lists is no model version, LATEST file or not
    commit.write_json_atomic(Layout(tmp_path).model_manifest("v0"), {})
    commit.write_text_atomic(tmp_path / "models" / "LATEST", "v0\n")
    assert out.commit() == 1
    again = Output.open(tmp_path)
    assert again.latest_model() == "v1" and again.model_versions() == ["v1"]
    assert again.members(model_dataset("v1")) == {"manifest.json": lay.model_manifest("v1")}
    assert lay.scores("2024-01-31") == tmp_path / "runs" / "r1" / "scores" / "as_of=2024-01-31"


def test_store_imports_neither_features_nor_erase():
    """The cycle store/ingest -> erase -> features/cache -> store is gone."""
    code = (
        "import sys, bigseg.store, bigseg.store.validate, bigseg.store.lock;"
        "print(sorted(m for m in sys.modules if m.startswith(('bigseg.features', "
        "'bigseg.erase', 'bigseg.pipeline', 'bigseg.predict', 'bigseg.segment'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
