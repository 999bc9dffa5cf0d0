"""``drift.retrain: policy``: ``bigseg run`` over an output with a published model scores
with it first and retrains only when the drift / model-age rules recommend it."""

from __future__ import annotations

import datetime as dt

import pytest
from test_pipeline import write_config

from bigseg.backend import resolve
from bigseg.io.output import scores_dataset
from bigseg.pipeline import run_stages
from bigseg.synth import generate
from bigseg.testing.outputs import committed, files, metrics, report_path


def _versions(out) -> list[str]:
    return committed(out).model_versions()


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_run_retrains_only_when_the_policy_says_so(tmp_path, local_client):
    generate(2000, tmp_path, seed=11, chunk_size=1000)
    out = tmp_path / "out"
    extra = {
        "prediction": {"targets": ["churn", "value"], "n_estimators": 20},
        # model age only: the PSI rules compare with the training cutoff, one
        # horizon back, where this small generated data already drifts
        "drift": {
            "retrain": "policy",
            "max_model_age_days": 3,
            "max_feature_psi": None,
            "max_score_psi": None,
            "max_segment_psi": None,
        },
    }
    cfg = write_config(tmp_path / "job.yaml", tmp_path, out, **extra)
    cpu = resolve("cpu")

    m = run_stages(cfg, local_client, cpu)  # no model yet: a whole run, trains
    assert "run_policy" not in m and len(_versions(out)) == 1
    first = _versions(out)[0]
    as_of = dt.date.fromisoformat(m["as_of"])

    # same data, same date: nothing drifted, the model is 0 days old -> kept
    m = run_stages(cfg.model_copy(update={"as_of": as_of}), local_client, cpu)
    assert m["run_policy"]["retrained"] is False and m["run_policy"]["model_before"] == first
    assert _versions(out) == [first]
    assert files(out, scores_dataset(as_of)) and report_path(out).is_file()

    # a week later the model is older than max_model_age_days (3) -> retrained
    later = as_of + dt.timedelta(days=7)
    m = run_stages(cfg.model_copy(update={"as_of": later}), local_client, cpu)
    pol = m["run_policy"]
    assert pol["retrained"] is True and any("model age" in r for r in pol["reasons"])
    assert len(_versions(out)) == 2 and committed(out).latest_model() not in (None, first)
    assert files(out, scores_dataset(later))
    saved = metrics(out)
    assert saved["run_policy"]["retrained"] is True
