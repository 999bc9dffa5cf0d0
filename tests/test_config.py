"""Run config: defaults, and errors that name the file and the key."""

from __future__ import annotations

import pytest
import yaml

from bigseg.config import load_run_config
from bigseg.errors import ConfigError


def _write(tmp_path, doc) -> str:
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    return str(p)


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path):
    cfg = load_run_config(_write(tmp_path, {"data": {"transactions": {"path": "tx.csv"}}}))
    assert cfg.horizon_days == 90 and cfg.segmentation.k == "auto"
    assert cfg.privacy.require_consent and cfg.prediction.high_value_share == 0.2
    assert cfg.output_dir == (tmp_path / "out").resolve()
    assert cfg.data.transactions.resolved_format() == "csv"


@pytest.mark.parametrize(
    "doc, key",
    [
        ({"data": {"transactions": {"path": "x"}}, "horizn_days": 3}, "horizn_days: unknown key"),
        ({"data": {"transactions": {"path": "x"}}, "horizon_days": -1}, "horizon_days"),
        ({"data": {"transactions": {"path": "x"}}, "segmentation": {"k": 1}}, "segmentation.k"),
        (
            {"data": {"transactions": {"path": "x"}}, "segmentation": {"method": "magic"}},
            "segmentation.method",
        ),
        ({"data": {"transactions": {"path": "x", "colums": {}}}}, "data.transactions.colums"),
        (
            {"data": {"transactions": {"path": "x", "columns": {"custid": "A"}}}},
            "data.transactions.columns.custid",
        ),
        ({"data": {}}, "data.transactions: required key is missing"),
        (
            {"data": {"transactions": {"path": "x", "csv": {"decimal": "'"}}}},
            "data.transactions.csv.decimal",
        ),
        ({"data": {"transactions": {"path": "x"}}, "as_of": "yesterday"}, "as_of"),
        (
            {"data": {"transactions": {"path": "x"}}, "privacy": {"min_segment_size": "many"}},
            "privacy.min_segment_size",
        ),
    ],
)
def test_bad_key_or_value_is_named(tmp_path, doc, key):
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as e:
        load_run_config(path)
    assert path in str(e.value) and key in str(e.value)


def test_an_unknown_method_lists_the_known_ones(tmp_path):
    doc = {"data": {"transactions": {"path": "x"}}, "segmentation": {"method": "magic"}}
    with pytest.raises(ConfigError) as e:
        load_run_config(_write(tmp_path, doc))
    assert "unknown method (known: kmeans, gmm, hierarchical, hdbscan, som)" in str(e.value)


def test_the_config_knows_exactly_the_registered_methods():
    """The config checks names from the leaf module bigseg.methods (no estimator imports);
    they are the keys of the registry, in its order."""
    from bigseg.methods import METHOD_NAMES
    from bigseg.segment.methods import METHODS

    assert tuple(METHODS) == METHOD_NAMES


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(_write(tmp_path, "data: [unclosed"))
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(_write(tmp_path, "- a\n- b\n"))
