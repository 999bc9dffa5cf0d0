"""The Polars and dask.dataframe benchmark peers compute the same features as the pandas
peer (the reference), and the Polars peer runs end to end to the scores Parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, str]:
    from bigseg.benchmark.data import prepare_data
    from bigseg.engine import connect

    d = tmp_path_factory.mktemp("peer-data")
    with connect(reuse_current=False, n_workers=1) as c:
        summary = prepare_data(3000, d, 0, c)
    return d, str(summary["end_date"])


def run_peer(script: str, data: tuple[Path, str], out: Path, *extra: str) -> dict:
    d, as_of = data
    cmd = [
        sys.executable,
        str(PEERS / script),
        "--data",
        str(d),
        "--as-of",
        as_of,
        "--out",
        str(out / f"{Path(script).stem}.json"),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-4000:]}"
    res = json.loads((out / f"{Path(script).stem}.json").read_text())
    assert res["status"] == "ok"
    for stage in ("load", "features"):
        assert res["stages"][stage] > 0, (script, res["stages"])
    return res


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("peer-pandas")
    feats = out / "features.parquet"
    run_peer("peer_pandas.py", data, out, "--until", "features", "--features-out", str(feats))
    return pd.read_parquet(feats)


@pytest.mark.parametrize(
    "script", ["peer_polars.py", pytest.param("peer_daskdf.py", marks=pytest.mark.slow)]
)
def test_same_features_as_pandas(script, data, reference, tmp_path):
    pytest.importorskip("polars" if script == "peer_polars.py" else "distributed")
    feats = tmp_path / "features.parquet"
    res = run_peer(script, data, tmp_path, "--until", "features", "--features-out", str(feats))
    if script == "peer_daskdf.py":
        assert list(res["stages"])[0] == "cluster_start"
    got = pd.read_parquet(feats)
    assert len(reference) > 0
    assert list(got.columns) == list(reference.columns)
    np.testing.assert_array_equal(
        got["customer_id"].to_numpy(), reference["customer_id"].to_numpy()
    )
    for c in reference.columns:
        np.testing.assert_allclose(
            got[c].to_numpy(np.float64),
            reference[c].to_numpy(np.float64),
            equal_nan=True,
            err_msg=f"{script}: column {c}",
            **TOLERANCE,
        )


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_polars_end_to_end(data, reference, tmp_path):
    pytest.importorskip("polars")
    scores = tmp_path / "scores.parquet"
    res = run_peer("peer_polars.py", data, tmp_path, "--until", "write", "--scores", str(scores))
    assert {"segment", "train", "score", "write"} <= set(res["stages"])
    s = pd.read_parquet(scores)
    assert list(s.columns) == ["customer_id", "segment", "churn_probability", "value_prediction"]
    assert s["customer_id"].is_unique
    assert sorted(s["customer_id"]) == sorted(reference["customer_id"])
    assert s["churn_probability"].between(0, 1).all()
    assert (s["value_prediction"] >= 0).all()
