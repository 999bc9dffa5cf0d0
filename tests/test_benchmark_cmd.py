"""`bigseg benchmark`: the end-to-end suite on a small data set, through the CLI, with two
peers; the results JSON, the peers' score files and the rendered chart and table."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from bigseg.cli import main


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

    monkeypatch.setitem(peers.PEERS, "spark", ("peer_spark.py", ("no_such_module_xyz",), "x"))
    res = peers.run_peer("spark", tmp_path, "2026-09-30", 90, tmp_path, "t")
    assert res == {"status": "not installed"}
