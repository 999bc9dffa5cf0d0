"""Acceptance: on generated data, ``k: auto`` finds the planted number of personas and
the segments agree with them (adjusted Rand index >= 0.8), on the default features,
through the real pipeline (ingest, features, segment) on a local Dask cluster."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from sklearn.metrics import adjusted_rand_score

from bigseg.backend import resolve
from bigseg.config import load_run_config
from bigseg.pipeline import SEGMENT_FEATURES, run_stages
from bigseg.synth import PERSONAS, generate
from bigseg.testing.outputs import files

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")


@pytest.fixture(scope="module")
def recovered(tmp_path_factory, local_client):
    d = tmp_path_factory.mktemp("recovery")
    generate(40_000, d, seed=11, client=local_client)
    doc = {
        "data": {t: {"path": str(d / "raw" / t)} for t in TABLES},
        "horizon_days": 90,
        "seed": 0,
        "segmentation": {"method": "kmeans", "k": "auto"},
        "privacy": {"pseudonymize": False},
        "output": str(d / "out"),
    }
    (d / "job.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_run_config(d / "job.yaml")
    metrics = run_stages(cfg, local_client, resolve("cpu"), stages=("ingest", "segment"))
    seg = pd.concat(pd.read_parquet(f) for f in files(d / "out", "segments"))
    truth = pd.read_parquet(d / "ground_truth")
    return metrics, seg.merge(truth[["customer_id", "persona"]], on="customer_id")


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_k_auto_finds_the_planted_personas(recovered):
    metrics, seg = recovered
    s = metrics["segmentation"]
    assert s["k"] == len(PERSONAS), s["candidates"]
    scored = [c["k"] for c in s["candidates"]]
    assert scored == list(range(3, 11))  # every candidate scored and reported
    assert all(
        {"silhouette", "calinski_harabasz", "davies_bouldin", "stability"} <= set(c)
        for c in s["candidates"]
    )


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_segments_agree_with_the_personas(recovered):
    _, seg = recovered
    assert len(seg) > 30_000
    ari = adjusted_rand_score(seg["persona"], seg["segment"])
    assert ari >= 0.8, pd.crosstab(seg["persona"], seg["segment_name"])


def test_default_features_are_the_documented_ones():
    assert SEGMENT_FEATURES == ["recency_days", "purchase_rate", "monetary_mean", "tenure_days"]


def test_a_failing_bootstrap_fit_counts_as_disagreement():
    import numpy as np

    from bigseg.segment.choose_k import bootstrap_stability

    X = np.random.default_rng(0).normal(size=(200, 2))

    def fit_predict(train, X, i):
        if i == 1:
            raise ValueError("collapsed")
        return (X[:, 0] > 0).astype(int)

    # pairs (0,1) and (1,2) fail, (0,2) agree perfectly: mean 1/3
    assert bootstrap_stability(fit_predict, X, n_boot=3) == pytest.approx(1 / 3)
