"""``bigseg score CONFIG --model VERSION``: scoring with an earlier committed model
version instead of the latest (dataset ``models/LATEST``), and a clean refusal of an
unknown one.

Two versions are trained on the same store (the second with other XGBoost settings, so
their predictions differ); scores made with ``--model <first>`` while the second is
LATEST must equal the scores made when the first was LATEST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline import checksum, read_scores, write_config

from bigseg.backend import resolve
from bigseg.cli import main
from bigseg.errors import ConfigError, ModelError
from bigseg.io.commits import PROBES
from bigseg.io.lease import LEASES, current
from bigseg.io.manifest import RECORDS
from bigseg.io.storage import local
from bigseg.pipeline import run_pipeline, run_stages
from bigseg.testing.outputs import committed, metrics

CPU = resolve("cpu")


def model_versions(out) -> list[str]:
    return committed(out).model_versions()


def latest_model(out) -> str | None:
    return committed(out).latest_model()


def records(out) -> set[Path]:
    """The run records (``_bigseg/records/<time>.json``)."""
    return set((Path(out) / RECORDS).glob("*.json"))


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, local_client):
    """(config, first version, second version, scores of the first while it was LATEST,
    scores of the second)."""
    from bigseg.synth import generate

    d = tmp_path_factory.mktemp("score_model")
    generate(1500, d, seed=5, chunk_size=1000)
    out = d / "out"
    cfg = write_config(
        d / "job.yaml",
        d,
        out,
        store={"buckets": 4},
        prediction={"targets": ["churn", "value"], "n_estimators": 20},
    )
    run_stages(cfg, local_client, CPU, stages=("ingest", "features", "segment", "train"))
    (first,) = model_versions(out)
    run_stages(cfg, local_client, CPU, stages=("score",))
    scores_first = read_scores(out)
    # a second version, other boosting settings: other predictions, same segmenter
    cfg2 = write_config(
        d / "job2.yaml",
        d,
        out,
        store={"buckets": 4},
        prediction={"targets": ["churn", "value"], "n_estimators": 5, "max_depth": 2},
    )
    run_stages(cfg2, local_client, CPU, stages=("features", "train"))
    second = latest_model(out)
    assert model_versions(out) == [first, second]
    run_stages(cfg, local_client, CPU, stages=("score",))
    scores_second = read_scores(out)
    return cfg, d / "job.yaml", first, second, scores_first, scores_second


def _snapshot(out) -> dict:
    """Every file and folder of the output with its size and time, but the lease's epochs
    (each command takes and releases the lease) and the folder of the create-only probe
    (its probe object is deleted at once); the lease must be released, not held."""
    held = current(local, out)
    assert held is None or held[1]["released"], held
    return {
        str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if not (p.is_relative_to(out / LEASES) or p.is_relative_to(out / PROBES))
    }


def test_score_with_an_earlier_version_equals_scoring_when_it_was_latest(two_versions, capsys):
    cfg, path, first, second, scores_first, scores_second = two_versions
    out = cfg.output_dir
    # the two versions really score differently, or the test below proves nothing
    assert checksum(scores_first) != checksum(scores_second)
    runs_before = records(out)
    assert main(["score", str(path), "--model", first, "--quiet"]) == 0
    assert latest_model(out) == second  # LATEST untouched
    got = read_scores(out)
    assert checksum(got) == checksum(scores_first)
    assert metrics(out)["model_version"] == first
    (rec,) = records(out) - runs_before
    assert json.loads(rec.read_text())["model_version"] == first
    # without --model, LATEST (the second version) scores again
    assert main(["score", str(path), "--quiet"]) == 0
    assert checksum(read_scores(out)) == checksum(scores_second)
    assert metrics(out)["model_version"] == second


def test_unknown_version_fails_cleanly_naming_the_available_ones(two_versions, capsys):
    cfg, path, first, second, *_ = two_versions
    out = cfg.output_dir
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["score", str(path), "--model", "v-nope", "--quiet"]) == ModelError.exit_code
    err = capsys.readouterr().err
    assert "'v-nope'" in err and first in err and second in err
    assert _snapshot(out) == before  # nothing written, and the lease released
    # a path outside models/ is not a version either
    assert main(["score", str(path), "--model", "../store"]) == ModelError.exit_code
    assert _snapshot(out) == before
    with pytest.raises(ModelError, match="v-nope"):
        run_pipeline(cfg, stages=("score",), model_version="v-nope")
    assert _snapshot(out) == before


def test_a_chosen_version_is_refused_by_stages_that_fit_models(two_versions, local_client):
    cfg, _, first, *_ = two_versions
    before = _snapshot(cfg.output_dir)
    with pytest.raises(ConfigError, match="train"):
        run_stages(
            cfg, local_client, CPU, stages=("features", "train", "score"), model_version=first
        )
    assert _snapshot(cfg.output_dir) == before
