"""The HTML report from a metrics dict: every section, small segments suppressed, the
projection and gains helpers."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from bigseg.features.bucket import BucketFeatures
from bigseg.report import render, write_report
from bigseg.report.gains import gains_curve
from bigseg.report.projection import MAX_POINTS, bucket_sample, pca_2d, summarize

SECTIONS = [
    "overview",
    "segments",
    "profiles",
    "projection",
    "dendrogram",
    "churn-value",
    "models",
    "drivers",
    "drift",
    "fairness",
    "migration",
    "offers",
    "model-card",
    "timings",
]
CHARTS = [
    "chart-sizes",
    "chart-profile",
    "chart-projection",
    "chart-dendrogram",
    "chart-churn",
    "chart-value",
    "chart-lift-churn",
    "chart-gains-churn",
    "chart-calibration-churn",
    "chart-importance-churn",
    "chart-drift-features",
    "chart-drift-segments",
    "chart-fairness-gender",
    "chart-migration",
]
TINY = "Tiny secret segment"


def full_metrics() -> dict:
    """A metrics.json with every section; segment 3 (TINY, 12 customers) is below the
    threshold of 50."""
    rng = np.random.default_rng(0)
    segs = []
    for i, (name, size) in enumerate(
        [("Champions", 400), ("Loyal", 900), ("At risk", 600), (TINY, 12)]
    ):
        segs.append(
            {
                "id": i,
                "name": name,
                "size": size,
                "share": size / 1912,
                "churn_probability": 0.1 + 0.2 * i,
                "value_prediction": 300.0 - 70 * i,
                "profile": {
                    "recency_days": 10.0 + 50 * i,
                    "frequency": 20.0 - 4 * i,
                    "monetary_mean": 80.0 + 7 * i,
                    "tenure_days": 400.0 - 9 * i,
                },
                "top_features": [{"feature": "recency_days", "z": 1.0 - i}],
            }
        )
    xy = rng.normal(size=(300, 2))
    proj_seg = np.repeat([0, 1, 2, 3], [100, 100, 95, 5])
    calib = [
        {
            "bin": [b / 10, (b + 1) / 10],
            "mean_predicted": b / 10 + 0.05,
            "observed_rate": b / 10 + 0.04,
            "n": 100 + b,
        }
        for b in range(10)
    ]
    feats_drift = {
        f: {"psi": psi, "level": lvl}
        for f, psi, lvl in [
            ("recency_days", 0.31, "major"),
            ("frequency", 0.12, "moderate"),
            ("monetary_mean", 0.01, "stable"),
        ]
    }
    return {
        "as_of": "2026-09-30",
        "horizon_days": 90,
        "n_customers": 1912,
        "excluded_no_consent": 37,
        "quarantine": {"transactions": {"negative amount": 5, "bad timestamp": 2}},
        "segments": segs,
        "features": {"recency_days": "days since the last purchase"},
        "segmentation": {"method": "kmeans", "k": 4},
        "projection": {
            "method": "pca",
            "features": ["recency_days", "frequency"],
            "n_fit": 300,
            "explained_variance_ratio": [0.6, 0.3],
            "axes_top_features": [
                [{"feature": "recency_days", "loading": 0.9}],
                [{"feature": "frequency", "loading": 0.8}],
            ],
            "x": xy[:, 0].round(3).tolist(),
            "y": xy[:, 1].round(3).tolist(),
            "segment": proj_seg.tolist(),
        },
        "churn": {
            "n": 1500,
            "auc": 0.81,
            "pr_auc": 0.7,
            "brier": 0.15,
            "lift_top10": 2.1,
            "capture_top10": 0.3,
            "calibration": calib,
            "gains": gains_curve(rng.random(1000) < 0.3, rng.random(1000)),
            "per_segment": {"0": {"model": "global", "auc_global": 0.8}},
        },
        "value": {"n": 1500, "mae": 50.0, "rmse": 90.0, "spearman": 0.6},
        "training_window": {
            "features_at": "2026-07-02",
            "labels": "(2026-07-02, 2026-09-30]",
            "backtest_features_at": "2026-04-03",
        },
        "drivers": {
            "churn": {
                str(i): [
                    {"feature": "recency_days", "mean_abs_shap": 1.0},
                    {"feature": "frequency", "mean_abs_shap": 0.5},
                ]
                for i in range(4)
            }
        },
        "drift": {
            "features": {"features": feats_drift, "thresholds": {"warn": 0.1, "alert": 0.25}},
            "scores": {"features": {"churn_probability": {"psi": 0.02, "level": "stable"}}},
            "segments": {
                "psi": 0.05,
                "segments": {
                    str(i): {"reference_share": 0.3, "current_share": 0.28 + 0.01 * i}
                    for i in range(4)
                },
            },
            "reference_as_of": "2026-09-30",
            "model_age_days": 0,
        },
        "retrain": {"recommended": True, "reasons": ["feature recency_days PSI 0.31 >= 0.25"]},
        "fairness": {
            "threshold": 0.8,
            "min_group_size": 30,
            "flags": ["gender: ratio 0.7"],
            "attributes": {
                "gender": {
                    "groups": {
                        "F": {
                            "reported": True,
                            "n": 900,
                            "churn_flag_rate": 0.3,
                            "high_value_flag_rate": 0.2,
                        },
                        "M": {
                            "reported": True,
                            "n": 950,
                            "churn_flag_rate": 0.2,
                            "high_value_flag_rate": 0.21,
                        },
                        "X": {"reported": False, "n": 4},
                    }
                }
            },
        },
        "segment_migration": {
            "0->0": 350,
            "0->1": 31,
            "1->1": 800,
            "2->2": 500,
            "3->3": 9,
            "1->3": 3,
            "new customer->2": 95,
        },
        "offers": {
            "segments": [
                {"id": 0, "name": "Champions", "customers": 400, "lift": {"books": 1.6}},
                {"id": 3, "name": TINY, "customers": 12, "lift": {"toys": 3.0}},
            ]
        },
        "timings": {"segment": 1.5},
    }


@pytest.fixture(scope="module")
def page() -> str:
    model = {
        "version": "v20260930T000000Z",
        "created": "2026-09-30T00:00:00+00:00",
        "libraries": {"xgboost": "3.2.0"},
        "device": "cpu",
        "seed": 0,
    }
    return render(full_metrics(), 50, model)


def _chart(page: str, cid: str) -> ET.Element:
    m = re.search(rf'<figure class="chart" id="{cid}"[^>]*>(<svg.*?</svg>)', page, re.S)
    assert m, f"{cid} missing"
    return ET.fromstring(m.group(1))


def test_every_section_and_chart_is_there(page):
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
        assert f'href="#{sid}"' in page, sid
    for cid in CHARTS:
        svg = _chart(page, cid)  # well-formed SVG
        marks = [e for e in svg.iter() if e.tag.split("}")[-1] in ("rect", "circle", "polyline")]
        assert marks, cid
    # self-contained: nothing fetched, the only script is the inline chart check
    assert (
        "src=" not in page
        and "<link" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert page.count("<script>") == 1
    # overview, drift verdict, model card
    assert "rows quarantined" in page and ">7<" in page and ">37<" in page
    assert "retraining recommended" in page and "recency_days PSI 0.31" in page
    for text in (
        "v20260930T000000Z",
        "(2026-07-02, 2026-09-30]",
        "Intended use",
        "Limitations",
        "ROC-AUC 0.810",
        "xgboost 3.2.0",
    ):
        assert text in page, text


def test_small_segments_are_suppressed_everywhere(page):
    assert TINY not in page and "toys" not in page
    assert "1 segment(s) smaller than 50 customers are suppressed" in page
    # projection: only the points of the shown segments (295 of 300)
    assert len(_chart(page, "chart-projection").findall(".//{*}g/{*}circle")) == 295
    # migration: no column for the small segment, cells under 50 suppressed
    mig = _chart(page, "chart-migration")
    labels = [t.text for t in mig.iter("{http://www.w3.org/2000/svg}text")]
    assert "31" not in labels and "<min" in labels and "800" in labels
    assert not any(t and t.startswith("3:") for t in labels)
    # the drift shares and drivers leave the small segment out as well
    drift = _chart(page, "chart-drift-segments")
    assert (
        len(
            [
                t
                for t in drift.iter("{http://www.w3.org/2000/svg}text")
                if t.text and t.text[:2] in ("0:", "1:", "2:", "3:")
            ]
        )
        == 3
    )


def test_threshold_zero_shows_all_and_missing_parts_are_left_out():
    m = full_metrics()
    assert TINY in render(m, 0)
    for k in ("projection", "drift", "retrain", "fairness", "churn", "drivers"):
        m.pop(k)
    m["segment_migration"] = None
    page = render(m, 50)
    assert 'id="chart-projection"' not in page and 'id="drift"' not in page
    assert "first segmentation" in page  # migration without a previous run says so
    assert 'id="chart-dendrogram"' in page  # k-means: dendrogram of the segment profiles


def test_write_report_reads_the_latest_model(tmp_path):
    from bigseg.io.output import LATEST_MODEL, Output, model_dataset
    from bigseg.testing.outputs import committed, report_path

    # a first run commits model v1 as the latest (dataset models/LATEST)
    first = Output.open(tmp_path)
    first.begin("run-1")
    v = first.layout.model("v1")
    v.mkdir(parents=True)
    (v / "manifest.json").write_text(
        json.dumps({"version": "v1-abc", "created": "now", "files": {"x": "y"}})
    )
    first.put(model_dataset("v1"), v, version="v1")
    first.put_pointer(LATEST_MODEL, version="v1")
    first.commit()
    # a later run's report: its model card reads the committed latest model
    out = Output.open(tmp_path)
    out.begin("run-2")
    path = write_report(out, full_metrics(), 50)
    assert out.commit() == 2
    text = path.read_text()
    assert path.name == "report.html" and "v1-abc" in text and TINY not in text
    assert path == report_path(tmp_path) and committed(tmp_path).latest_model() == "v1"
    assert not list(path.parent.glob(".report*"))


def test_gains_curve():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    g = gains_curve(y, p, points=5)
    assert [x["share"] for x in g] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert [x["captured"] for x in g] == pytest.approx([2 / 3, 2 / 3, 1, 1, 1], abs=1e-3)
    assert g[0]["lift"] == pytest.approx(10 / 3, abs=1e-3)
    assert gains_curve([0, 0], [0.1, 0.2]) == []


def test_projection_finds_the_main_axis_and_keeps_it_small():
    rng = np.random.default_rng(1)
    n = 5000
    Z = np.column_stack([rng.normal(0, 3, n), rng.normal(0, 1, n), rng.normal(0, 0.1, n)])
    xy, axes, ratio = pca_2d(Z)
    assert abs(axes[0, 0]) > 0.99 and abs(axes[1, 1]) > 0.99
    assert ratio[0] > 0.85 and ratio[0] + ratio[1] > 0.99
    assert np.allclose(xy[:, 0], Z[:, 0] - Z[:, 0].mean(), atol=0.1)
    seg = (Z[:, 0] > 0).astype(np.int32)
    out = summarize(Z, seg, ["a", "b", "c"], seed=0)
    assert len(out["x"]) == len(out["y"]) == len(out["segment"]) == MAX_POINTS
    assert set(out) >= {"x", "y", "segment", "explained_variance_ratio", "features"}
    assert out["axes_top_features"][0][0]["feature"] == "a"
    assert all(round(v, 3) == v for v in out["x"][:50])
    # the sign is fixed: segment 1 (a > 0) lies on the positive side of PC1
    x, s = np.array(out["x"]), np.array(out["segment"])
    assert (x[s == 1] > 0).mean() > 0.95
    assert summarize(Z[:5], seg[:5], ["a", "b", "c"], seed=0)["segment"] == seg[:5].tolist()
    assert len(json.dumps(out)) < 60_000


def test_bucket_sample_keeps_rows_aligned_and_drops_ids():
    df = pd.DataFrame(
        {
            "customer_id": [f"c{i:03d}" for i in range(200)],
            "recency_days": np.arange(200.0),
            "frequency": np.ones(200),
        }
    )
    scores = pd.DataFrame(
        {"customer_id": df["customer_id"], "segment": (df["recency_days"] >= 100).astype(int)}
    )
    pre = {
        "features": ["recency_days", "frequency"],
        "log": [],
        "mean": [100.0, 1.0],
        "std": [50.0, 1.0],
    }
    Z, seg = bucket_sample(BucketFeatures({"score": df}), "score", scores, pre, 0, 60, seed=3)
    assert Z.shape == (60, 2) and seg.shape == (60,)
    assert Z.dtype == np.float32 and seg.dtype == np.int32
    # each sampled row keeps its own segment: recency >= 100 <=> z >= 0 <=> segment 1
    assert ((Z[:, 0] >= 0) == (seg == 1)).all() and 0 < seg.mean() < 1
