"""Model registry: safe formats only, tampering and schema changes are refused."""

from __future__ import annotations

import json
import pickle

import pytest

from bigseg.errors import ModelError
from bigseg.io.output import Output
from bigseg.registry import VersionWriter, latest_version, load_version, schema_hash
from bigseg.testing.outputs import committed


def _publish(out, features=("a", "b")):
    """A model version written by a run of its own and committed; its folder."""
    o = Output.open(out)
    o.begin("run-1")
    w = VersionWriter(o)
    w.write_json("segmenter.json", {"k": 3})
    w.write_bytes("churn.ubj", b"{UBJ bytes}")
    d = w.publish({"features": list(features), "schema_hash": schema_hash(list(features))})
    o.commit()
    return d


def test_publish_and_load(tmp_path):
    d = _publish(tmp_path)
    assert d == tmp_path / "runs" / "run-1" / "models" / d.name
    assert latest_version(committed(tmp_path)) == d.name
    vdir, m = load_version(committed(tmp_path), features=["a", "b"])
    assert vdir == d and set(m["files"]) == {"segmenter.json", "churn.ubj"}
    assert "xgboost" in m["libraries"] and len(m["files"]["churn.ubj"]) == 64
    assert not list((tmp_path / "runs" / "run-1" / ".staging").iterdir())


def test_tampered_file_is_refused(tmp_path):
    d = _publish(tmp_path)
    (d / "churn.ubj").write_bytes(b"{evil}")
    with pytest.raises(ModelError, match=r"churn\.ubj: SHA-256 does not match"):
        load_version(committed(tmp_path))


def test_pickle_is_refused_even_with_a_matching_hash(tmp_path):
    from bigseg.registry import sha256_file

    d = _publish(tmp_path)
    (d / "segmenter.json").write_bytes(pickle.dumps({"k": 3}))
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["segmenter.json"] = sha256_file(d / "segmenter.json")
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="pickle"):
        load_version(committed(tmp_path))
    m["files"]["model.pkl"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="only .json"):
        load_version(committed(tmp_path))


def test_feature_schema_mismatch_is_refused(tmp_path):
    _publish(tmp_path, features=("a", "b"))
    with pytest.raises(ModelError, match="retrain"):
        load_version(committed(tmp_path), features=["a", "c"])


def test_no_model_yet(tmp_path):
    with pytest.raises(ModelError, match="no model yet"):
        load_version(committed(tmp_path))
