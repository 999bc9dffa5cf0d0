"""Segment names state facts: the rule table on crafted facts, every name of a real run
consistent with the facts it records, and CDNOW (real customers, all first bought in Q1
1997) with no "New customers" a year later and "Loyal" only where churn was lower."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bigseg.config import load_run_config
from bigseg.pipeline.segment import _continuity
from bigseg.segment.fitted import FittedSegmenter
from bigseg.segment.naming import (
    DESCRIBED,
    RULES,
    base_name,
    describe,
    holds,
    name_segments,
    render_table,
)
from bigseg.testing.outputs import metrics

ROOT = Path(__file__).resolve().parents[1]
POP = {
    "horizon_days": 90,
    "population_observed_churn": 0.4,
    "population_median_spend_per_year": 100,
}


def _f(recency, tenure, one_time, spend, churn) -> dict:
    return {
        **POP,
        "median_recency_days": recency,
        "median_tenure_days": tenure,
        "one_time_share": one_time,
        "median_spend_per_year": spend,
        "observed_churn": churn,
    }


#: facts that each rule, and no earlier one, should name
EXAMPLES = {
    "Champions": _f(30, 500, 0.2, 200, 0.1),
    "New customers": _f(20, 40, 0.9, 100, None),
    "Loyal customers": _f(60, 500, 0.3, 100, 0.2),
    "At risk": _f(150, 500, 0.3, 120, 0.6),
    "Big spenders": _f(150, 500, 0.7, 250, 0.6),
    "Hibernating": _f(300, 500, 0.3, 60, 0.9),
    "Bargain hunters": _f(30, 500, 0.3, 40, 0.5),
    "Promising": _f(30, 400, 0.7, 80, 0.5),
    "Needs attention": _f(150, 400, 0.7, 80, 0.6),
}


def _violate(facts: dict, cond) -> dict:
    """``facts`` with ``cond``'s fact just on the wrong side of its threshold."""
    ref = 1.0 if cond.of is None else facts[cond.of]
    t = cond.value * ref
    step = abs(t) * 0.01 + 1e-6
    wrong = {"<": t, "<=": t + step, ">": t, ">=": t - step}[cond.op]
    return {**facts, cond.fact: wrong}


def test_the_examples_cover_every_rule():
    assert set(EXAMPLES) == {r.name for r in RULES}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_each_rule_fires_exactly_when_its_conditions_hold(rule):
    facts = EXAMPLES[rule.name]
    assert base_name(facts) == (rule.name, rule.name)
    for cond in rule.conditions:
        assert not rule.holds(_violate(facts, cond)), cond
        assert base_name(_violate(facts, cond))[0] != rule.name, cond
        # an unknown fact (no customer to measure it on) never satisfies a condition
        assert base_name({**facts, cond.fact: None})[0] != rule.name, cond
    # at the threshold itself an inclusive condition still holds
    for cond in rule.conditions:
        if cond.op in ("<=", ">="):
            at = {**facts, cond.fact: cond.value * (1 if cond.of is None else facts[cond.of])}
            assert cond.holds(at)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (_f(300, 500, 0.8, 50, 0.9), "Lapsed one-time buyers"),
        (_f(30, 500, 0.3, 80, None), "Recent repeat buyers"),
        (_f(150, 500, 0.8, 80, 0.2), "Lapsing one-time buyers"),
        (_f(None, None, None, None, None), "Customers"),
    ],
)
def test_a_segment_no_rule_names_is_described_plainly(facts, expected):
    assert not any(r.holds(facts) for r in RULES)
    assert base_name(facts) == (expected, DESCRIBED)
    assert describe(facts) == expected


def test_names_are_unique_and_qualifiers_keep_them_true():
    lo, hi = _f(300, 500, 0.3, 60, 0.9), _f(300, 500, 0.3, 90, 0.9)
    names, rules = name_segments([lo, hi, EXAMPLES["Champions"]])
    assert names == ["Hibernating (low spend)", "Hibernating (high spend)", "Champions"]
    assert rules == ["Hibernating", "Hibernating", "Champions"]
    three, _ = name_segments([lo, hi, _f(400, 500, 0.3, 20, 0.9)])
    assert sorted(three) == ["Hibernating #1", "Hibernating #2", "Hibernating #3"]
    assert all(holds(n, f) for n, f in zip(names, [lo, hi, EXAMPLES["Champions"]], strict=True))
    assert holds("Loyal customers (new)", EXAMPLES["Loyal customers"])
    assert not holds("New customers", EXAMPLES["Loyal customers"])


def test_a_continued_segment_keeps_its_name_only_while_it_is_true():
    z = np.eye(3, dtype=np.float32) * 5
    prev = FittedSegmenter({}, {}, {}, ("Loyal customers", "New customers", "At risk"), (4, 5, 6))
    facts = [EXAMPLES["Loyal customers"], EXAMPLES["Promising"], EXAMPLES["At risk"]]
    names, rules = name_segments(facts)
    naming = [
        {"name": n, "name_rule": r, "facts": f} for n, r, f in zip(names, rules, facts, strict=True)
    ]
    ids, cont, out = _continuity(prev, z, z, naming)
    assert ids == [4, 5, 6] and cont == [4, 5, 6]
    # a year on, the "new" customers are not new: the name goes, the id stays
    assert [n["name"] for n in out] == ["Loyal customers", "Promising", "At risk"]


def test_the_docs_show_the_table_of_the_code():
    doc = (ROOT / "docs" / "segment-names.md").read_text()
    assert render_table() in doc
    assert "docs/segment-names.md" in (ROOT / "README.md").read_text()


def test_every_name_of_a_run_is_true_of_the_facts_it_records(small_run):
    cfg, _ = small_run
    segs = metrics(cfg.output)["segments"]
    assert len({s["name"] for s in segs}) == len(segs)
    for s in segs:
        f = s["facts"]
        assert holds(s["name"], f), s
        assert s["name_rule"] == base_name(f)[1], s
        assert f["customers_sampled"] > 0 and f["labelled_customers_sampled"] > 0
        assert f["horizon_days"] == cfg.horizon_days
        assert 0 <= f["observed_churn"] <= 1 and 0 <= f["one_time_share"] <= 1
    # the facts are the segments' own: the sampled customers add up to the sample, and
    # the largest segment's share of it is close to its share of the customers
    big = max(segs, key=lambda s: s["size"])
    n = sum(s["facts"]["customers_sampled"] for s in segs)
    assert abs(big["facts"]["customers_sampled"] / n - big["share"]) < 0.02


CDNOW = Path(pytest.importorskip("lifetimes").__file__).parent / "datasets" / "CDNOW_master.txt"


@pytest.fixture(scope="module")
def cdnow_csv(tmp_path_factory) -> Path:
    """CDNOW's transactions as a user would hand them over: a CSV with their own column
    names and dates as YYYYMMDD."""
    df = pd.read_csv(
        CDNOW, sep=r"\s+", header=None, names=["cust", "day", "cds", "dollars"], dtype=str
    )
    p = tmp_path_factory.mktemp("cdnow") / "cdnow.csv"
    df.rename(columns={"cust": "CustomerID", "day": "OrderDate", "dollars": "Total"}).to_csv(
        p, index=False
    )
    return p


def _cdnow_run(csv: Path, tmp: Path, as_of: str, client) -> list[dict]:
    from bigseg.backend import resolve
    from bigseg.pipeline import run_stages

    doc = {
        "data": {
            "transactions": {
                "path": str(csv),
                "columns": {
                    "customer_id": "CustomerID",
                    "timestamp": "OrderDate",
                    "amount": "Total",
                },
                "csv": {"timestamp_format": "%Y%m%d"},
            }
        },
        "as_of": as_of,
        "horizon_days": 90,
        "seed": 0,
        "segmentation": {"k": 6},  # k: auto fits 8 k's: slower, and the names are the point
        "prediction": {"targets": ["churn"], "n_estimators": 20},
        "output": str(tmp / "out"),
    }
    (tmp / "job.yaml").write_text(yaml.safe_dump(doc))
    t = time.perf_counter()
    run_stages(load_run_config(tmp / "job.yaml"), client, resolve("cpu"))
    print(f"CDNOW at {as_of}: {time.perf_counter() - t:.1f}s")
    for s in metrics(tmp / "out")["segments"]:
        print(s["name"], s["size"], {k: v for k, v in s["facts"].items() if "pop" not in k})
    return metrics(tmp / "out")["segments"]


def _assert_true_names(segs: list[dict]) -> None:
    for s in segs:
        f = s["facts"]
        assert holds(s["name"], f), s
        # every CDNOW customer first bought in Q1 1997: none is new at these cutoffs
        assert not s["name"].startswith("New"), s
        assert f["median_tenure_days"] >= 90, s
        if s["name"].startswith("Loyal"):
            assert f["observed_churn"] < f["population_observed_churn"], s


@pytest.mark.slow
def test_cdnow_a_year_on_has_no_new_customers_and_loyal_is_loyal(cdnow_csv, tmp_path, local_client):
    segs = _cdnow_run(cdnow_csv, tmp_path, "1998-03-31", local_client)
    _assert_true_names(segs)
    assert any(s["name"].startswith("Loyal") for s in segs)


@pytest.mark.slow  # two more whole runs on 23,570 customers
@pytest.mark.parametrize("as_of", ["1997-09-30", "1997-12-31"])
def test_cdnow_earlier_cutoffs(cdnow_csv, tmp_path, local_client, as_of):
    _assert_true_names(_cdnow_run(cdnow_csv, tmp_path, as_of, local_client))
