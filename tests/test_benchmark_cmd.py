"""`bigseg benchmark`: the end-to-end suite on a small data set, through the CLI, with two
peers; the results JSON, the peers' score files and the rendered chart and table."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from bigseg.cli import main


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_benchmark_end_to_end_small(tmp_path):
    out, data, charts = tmp_path / "results", tmp_path / "data", tmp_path / "charts"
    rc = main(
        [
            "benchmark",
            "--suite",
            "end-to-end",
            "--customers",
            "3000",
            "--peers",
            "pandas,duckdb",
            "--n-workers",
            "1",
            "--out",
            str(out),
            "--data",
            str(data),
            "--charts",
            str(charts),
            "--quiet",
        ]
    )
    assert rc == 0
    res = json.loads((out / "end-to-end-3000.json").read_text())
    hw = res["hardware"]
    assert hw["cores"] >= 1 and hw["memory_gib"] > 0 and hw["cpu"]
    assert "gpu_details" in hw
    for lib in ("bigseg", "pandas", "xgboost", "duckdb"):
        assert res["libraries"][lib]
    assert res["started"] <= res["finished"]
    assert res["command"].startswith("bigseg benchmark --suite end-to-end --customers 3000")
    suite = res["suites"]["end-to-end"]
    big = suite["bigseg"]
    assert big["workers"] == 1
    for s in ("ingest", "features", "segment", "train", "score"):
        assert big["stages"][s] > 0
    assert big["total"] > 0 and big["customers_scored"] > 0
    assert set(suite["peers"]) == {"pandas", "duckdb"}
    for name, peer in suite["peers"].items():
        assert peer["status"] == "ok", peer
        for s in ("load", "features", "segment", "train", "score", "write"):
            assert peer["stages"][s] > 0, (name, s)
        scores = pq.read_table(peer["scores"])
        assert scores.num_rows == peer["customers_scored"] > 0
        assert len(set(scores.column("customer_id").to_pylist())) == scores.num_rows
        assert set(scores.column_names) >= {
            "customer_id",
            "segment",
            "churn_probability",
            "value_prediction",
        }
        ratios = suite["ratios"][name]
        for row in ("ingest / load", "features", "segment", "train", "score + write", "total"):
            r = ratios[row]
            assert r["ratio"] > 0 and abs(r["ratio"] * r["speedup"] - 1) < 0.01
        assert ratios["total"]["bigseg_s"] == big["total"]
        # every peer scores the same customers as bigseg (consenting, with a purchase)
        assert peer["customers_scored"] == big["customers_scored"]
    assert set(suite["goals"]) == {"pandas", "duckdb", "spark"}
    assert suite["goals"]["spark"]["met"] is None  # spark was not asked for

    png = charts / "end-to-end-3000-end-to-end.png"
    table = (charts / "end-to-end-3000.md").read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| total |" in table and "bigseg / pandas" in table and "bigseg / duckdb" in table
    assert "Peers: pandas = pandas + scikit-learn + XGBoost; duckdb = DuckDB" in table

    # --render alone redraws from the JSON
    png.unlink()
    assert (
        main(
            [
                "benchmark",
                "--render",
                str(out / "end-to-end-3000.json"),
                "--charts",
                str(charts),
                "--quiet",
            ]
        )
        == 0
    )
    assert png.is_file()


def test_benchmark_reports_missing_peer(tmp_path, monkeypatch):
    from bigseg.benchmark import peers

    monkeypatch.setitem(
        peers.PEERS, "spark", peers.Peer("peer_spark.py", ("no_such_module_xyz",), "x")
    )
    res = peers.run_peer("spark", tmp_path, "2026-09-30", 90, tmp_path, "t")
    assert res == {"status": "not installed"}


def test_every_suite_has_its_own_known_peers():
    from bigseg.benchmark import PEERS, SUITE_PEERS, SUITES

    assert set(SUITE_PEERS) == set(SUITES) - {"scaling"}
    for suite, names in SUITE_PEERS.items():
        assert names and set(names) <= set(PEERS), suite
    # what each suite is compared against (issue 7)
    assert {"duckdb", "polars", "pandas", "daskdf"} <= set(SUITE_PEERS["features"])
    assert {"pandas", "daskml", "spark", "cuml"} <= set(SUITE_PEERS["segment"])
    assert {"pandas", "xgbdask"} <= set(SUITE_PEERS["predict"])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    from bigseg.benchmark.data import prepare_data
    from bigseg.engine import connect

    d = tmp_path_factory.mktemp("bench-data")
    with connect(reuse_current=False, n_workers=1) as client:
        summary = prepare_data(3000, d, 0, client)
    return d, str(summary["end_date"])


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_dask_variants_of_the_pandas_peer(small_data, tmp_path):
    """dask-ml's KMeans and xgboost.dask, each on a local cluster, against the same
    pandas features as the single-process peer; same customers, comparable models."""
    from bigseg.benchmark.peers import run_peer

    data, as_of = small_data
    base = run_peer("pandas", data, as_of, 90, tmp_path, "base", until="train")
    km = run_peer("daskml", data, as_of, 90, tmp_path, "km", until="segment")
    xd = run_peer("xgbdask", data, as_of, 90, tmp_path, "xd", until="train")
    for r in (base, km, xd):
        assert r["status"] == "ok", r
    assert km["kmeans"] == "dask-ml" and "dask-ml" in km["libraries"]
    assert km["stages"]["cluster_start"] > 0 and km["stages"]["segment"] > 0
    assert "train" not in km["stages"]  # stopped after --until
    assert xd["trainer"] == "xgboost.dask" and xd["stages"]["train"] > 0
    assert xd["train_rows"] == base["train_rows"] > 0
    # dask-ml's k-means|| start and scikit-learn's k-means++ (best of 3) land close
    assert km["kmeans_inertia"] <= 1.1 * base["kmeans_inertia"]
    for t in ("churn", "value"):
        assert xd["best_iterations"][t] > 0


def test_cuml_peer_is_recorded_when_absent(small_data, tmp_path):
    import importlib.util

    from bigseg.benchmark.peers import run_peer

    data, as_of = small_data
    res = run_peer("cuml", data, as_of, 90, tmp_path, "cu", until="segment")
    if importlib.util.find_spec("cuml") is None:
        assert res == {"status": "not installed"}
    else:
        assert res["status"] == "ok" and res["kmeans"] == "cuml"
