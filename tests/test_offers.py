"""Next-best offers and audience files: lifts by hand, offers skip bought and weak
categories, consent filtering, global tiers, one file per segment, atomic publishing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigseg.predict.offers import (
    AUDIENCE_COLUMNS,
    audience_frame,
    bucket_audience,
    category_affinity,
    marketing_consent,
    next_best_offers,
    segment_category_sums,
    value_cut_points,
    write_audiences,
    write_segment_group,
)

CATS = ["Books", "Home & Garden", "Toys"]
COLS = ["category_share_books", "category_share_home_garden", "category_share_toys"]
NAN = np.nan


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """rows of (customer_id, books, home, toys)."""
    df = pd.DataFrame(rows, columns=["customer_id", *COLS])
    df[COLS] = df[COLS].astype(np.float32)
    return df


# two buckets; segment ids 0 and 2 (id 1 has no customer: ids have gaps)
BUCKET_A = _frame([(1, 1.0, 0.0, 0.0), (3, 0.0, 0.0, 1.0)])
SEG_A = np.array([0, 2])
BUCKET_B = _frame([(2, 0.5, 0.5, 0.0), (4, 0.0, 0.2, 0.8), (5, NAN, NAN, NAN), (6, NAN, NAN, NAN)])
SEG_B = np.array([0, 2, 2, 0])


@pytest.fixture
def affinity() -> dict:
    parts = [
        segment_category_sums(BUCKET_A, SEG_A, 3, CATS),
        segment_category_sums(BUCKET_B, SEG_B, 3, CATS),
    ]
    return category_affinity(parts, ids=[0, 2], names=["bookworms", "parents"])


def test_affinity_lift_by_hand(affinity):
    # known customers (a category mix): 1, 2 in segment 0; 3, 4 in segment 2
    # population mean shares: books 1.5/4, home 0.7/4, toys 1.8/4
    pop = affinity["population"]
    assert pop["customers"] == 6 and pop["known"] == 4
    assert pop["mean_share"]["Books"] == pytest.approx(0.375)
    assert pop["mean_share"]["Home & Garden"] == pytest.approx(0.175)
    assert pop["buyer_rate"]["Toys"] == pytest.approx(0.5)
    s0, s2 = affinity["segments"]
    assert (s0["id"], s0["name"], s0["customers"], s0["known"]) == (0, "bookworms", 3, 2)
    assert (s2["id"], s2["name"], s2["customers"], s2["known"]) == (2, "parents", 3, 2)
    assert s0["lift"]["Books"] == pytest.approx(0.75 / 0.375)
    assert s0["lift"]["Home & Garden"] == pytest.approx(0.25 / 0.175)
    assert s0["lift"]["Toys"] == pytest.approx(0.0)
    assert s2["lift"]["Toys"] == pytest.approx(0.9 / 0.45)
    assert s2["lift"]["Home & Garden"] == pytest.approx(0.1 / 0.175)
    assert s0["buyer_rate"] == pytest.approx({"Books": 1.0, "Home & Garden": 0.5, "Toys": 0.0})
    assert s2["buyer_rate"] == pytest.approx({"Books": 0.0, "Home & Garden": 0.5, "Toys": 1.0})
    json.dumps(affinity, allow_nan=False)  # plain JSON, no NaN


def test_affinity_reduction_equals_one_bucket(affinity):
    whole = pd.concat([BUCKET_A, BUCKET_B], ignore_index=True)
    one = category_affinity(
        [segment_category_sums(whole, np.r_[SEG_A, SEG_B], 3, CATS)],
        ids=[0, 2],
        names=["bookworms", "parents"],
    )
    assert json.dumps(one) == json.dumps(affinity)


def test_affinity_defaults_and_errors():
    parts = [segment_category_sums(BUCKET_A, SEG_A, 3, CATS)]
    aff = category_affinity(parts)
    assert [s["id"] for s in aff["segments"]] == [0, 2]  # only ids with customers
    assert aff["segments"][0]["name"] is None
    # a segment with no known customer: lifts undefined (None), not 0
    empty = category_affinity(parts, ids=[1])
    assert set(empty["segments"][0]["lift"].values()) == {None}
    with pytest.raises(ValueError, match="must lie in"):
        segment_category_sums(BUCKET_A, np.array([0, 3]), 3, CATS)
    with pytest.raises(ValueError, match="one id per"):
        segment_category_sums(BUCKET_A, np.array([0]), 3, CATS)
    with pytest.raises(ValueError, match="disagree"):
        category_affinity([parts[0], segment_category_sums(BUCKET_A, SEG_A, 4, CATS)])
    # a bucket without category columns: everyone unknown, nothing breaks
    bare = segment_category_sums(BUCKET_A[["customer_id"]], SEG_A, 3, CATS)
    assert bare["known"] == [0, 0, 0] and bare["customers"] == [1, 0, 1]


def test_offers_skip_bought_and_weak_categories(affinity):
    whole = pd.concat([BUCKET_A, BUCKET_B], ignore_index=True)
    seg = np.r_[SEG_A, SEG_B]
    off = next_best_offers(whole, seg, affinity, n=3, min_lift=1.2).set_index("customer_id")
    assert list(off.columns) == [
        "offer_1",
        "offer_2",
        "offer_3",
        "offer_1_score",
        "offer_2_score",
        "offer_3_score",
    ]
    # segment 0 offers Books (lift 2, rate 1 -> 2.0) then Home (lift 1.43, rate .5)
    # never Toys (lift 0); segment 2 offers Toys only (Home's lift 0.57 < 1.2)
    home_score = 0.25 / 0.175 * 0.5
    assert off.loc[1, "offer_1"] == "Home & Garden"  # has Books already
    assert off.loc[1, "offer_1_score"] == pytest.approx(home_score)
    assert off.loc[1, "offer_2"] is None and np.isnan(off.loc[1, "offer_2_score"])
    assert off.loc[2, "offer_1"] is None  # bought both candidates
    assert off.loc[3, "offer_1"] is None and off.loc[4, "offer_1"] is None  # had Toys
    assert off.loc[5, "offer_1"] == "Toys" and off.loc[5, "offer_1_score"] == pytest.approx(2)
    # no purchase at all: every candidate, best score first
    assert off.loc[6, ["offer_1", "offer_2", "offer_3"]].tolist() == [
        "Books",
        "Home & Garden",
        None,
    ]
    assert off.loc[6, "offer_1_score"] == pytest.approx(2.0)
    assert off.loc[6, "offer_2_score"] == pytest.approx(home_score)
    # a stricter lift drops Home & Garden
    strict = next_best_offers(whole, seg, affinity, n=1, min_lift=1.5).set_index("customer_id")
    assert list(strict.columns) == ["offer_1", "offer_1_score"]
    assert strict.loc[1, "offer_1"] is None and strict.loc[6, "offer_1"] == "Books"
    # more offers than categories; an unknown segment id gets none
    wide = next_best_offers(whole, np.r_[SEG_A, 0, 2, 2, 7], affinity, n=5)
    assert wide["offer_5"].isna().all() and wide["offer_1"].iloc[-1] is None
    with pytest.raises(ValueError):
        next_best_offers(whole, seg, affinity, n=0)


def test_offers_vectorised_on_100k_rows():
    rng = np.random.default_rng(0)
    n, cats = 100_000, [f"cat{j}" for j in range(8)]
    cols = [f"category_share_{c}" for c in cats]
    seg = rng.integers(0, 5, n)
    # each segment favours two categories; customers buy a few categories
    w = rng.random((n, 8)) * (rng.random((n, 8)) < 0.3)
    for s in range(5):
        w[seg == s, s] += rng.random((seg == s).sum()) * 3 * (rng.random((seg == s).sum()) < 0.7)
        w[seg == s, s + 3] += rng.random((seg == s).sum()) * (rng.random((seg == s).sum()) < 0.5)
    tot = w.sum(1, keepdims=True)
    shares = np.where(tot > 0, w / np.where(tot > 0, tot, 1), np.nan).astype(np.float32)
    frame = pd.DataFrame(shares, columns=cols)
    frame.insert(0, "customer_id", np.arange(n))
    half = n // 2
    parts = [
        segment_category_sums(frame[:half], seg[:half], 5, cats),
        segment_category_sums(frame[half:], seg[half:], 5, cats),
    ]
    aff = category_affinity(parts)
    off = next_best_offers(frame, seg, aff, n=3, min_lift=1.2)
    assert len(off) == n and (off["customer_id"].to_numpy() == np.arange(n)).all()
    lift = np.array([[s["lift"][c] or 0.0 for c in cats] for s in aff["segments"]])
    col_of = {c: j for j, c in enumerate(cats)}
    for j in (1, 2, 3):
        o = off[f"offer_{j}"]
        has = o.notna().to_numpy()
        assert has.any() or j == 3  # two categories stand out per segment
        k = o[has].map(col_of).to_numpy()
        rows = np.flatnonzero(has)
        assert (np.nan_to_num(shares[rows, k]) == 0).all()  # not bought yet
        assert (lift[seg[rows], k] >= 1.2).all()
    s1, s2 = off["offer_1_score"].to_numpy(), off["offer_2_score"].to_numpy()
    both = np.isfinite(s2)
    assert (s1[both] >= s2[both]).all()
    assert not np.isfinite(s1[off["offer_1"].isna().to_numpy()]).any()


def _scores(ids, seg, churn, value) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ids,
            "segment": np.asarray(seg, np.int32),
            "segment_name": [f"s{s}" for s in seg],
            "churn_probability": np.asarray(churn, np.float32),
            "value_prediction": np.asarray(value, np.float32),
        }
    )


def test_audience_consent_and_tiers():
    scores = _scores(
        [1, 2, 3, 4, 5, 6],
        [0, 0, 2, 2, 0, 2],
        [0.6, 0.3, 0.29, NAN, 0.95, 0.1],
        [10, 50, 200, 80, 0, NAN],
    )
    offers = pd.DataFrame(
        {"customer_id": [3, 1, 2], "offer_1": pd.Series(["Toys", "Books", None], dtype=object)}
    )
    consent = pd.Series(
        pd.array([True, True, True, None, False], dtype="boolean"), index=[1, 2, 3, 4, 5]
    )  # 6 missing
    cuts = (50.0, 100.0)  # global, e.g. from value_cut_points over every bucket
    aud = audience_frame(scores, offers, consent, cuts)
    assert list(aud.columns) == AUDIENCE_COLUMNS
    assert aud["customer_id"].tolist() == [1, 2, 3]  # null, False and missing excluded
    assert aud["churn_risk_tier"].tolist() == ["high", "medium", "low"]
    assert aud["value_tier"].tolist() == ["low", "medium", "high"]
    assert aud["offer"].tolist() == ["Books", None, "Toys"]
    assert aud["segment_name"].tolist() == ["s0", "s0", "s2"]
    # NaN predictions (model absent) -> no tier
    every = pd.Series(True, index=[1, 2, 3, 4, 5, 6])
    full = audience_frame(scores, None, every, cuts).set_index("customer_id")
    assert full.loc[4, "churn_risk_tier"] is None and full.loc[6, "value_tier"] is None
    assert full["offer"].isna().all()
    # no consent column in the store: privacy-safe default, nobody
    assert audience_frame(scores, offers, None, cuts).empty
    # value cut points are population quantiles; none without a value model
    assert value_cut_points(np.arange(101.0)) == pytest.approx((50.0, 80.0))
    assert all(np.isnan(value_cut_points(np.full(3, NAN))))
    assert audience_frame(scores, None, every, (NAN, NAN))["value_tier"].isna().all()


def test_marketing_consent_from_customers_table():
    t = pa.table(
        {
            "customer_id": ["a", "b", "c", "a"],
            "consent_marketing": pa.array([True, None, True, False]),
        }
    )
    c = marketing_consent(t)
    assert c.to_dict() == {"a": False, "b": False, "c": True}  # any "no" row wins
    assert marketing_consent(t.drop_columns(["consent_marketing"])) is None


def test_bucket_audience(affinity):
    whole = pd.concat([BUCKET_A, BUCKET_B], ignore_index=True)
    seg = np.r_[SEG_A, SEG_B]
    scores = _scores(whole["customer_id"], seg, np.full(6, 0.5), np.arange(6.0))
    aud = bucket_audience(
        whole, scores, affinity, pd.Series(True, index=whole["customer_id"]), (2.0, 4.0)
    )
    assert dict(zip(aud["customer_id"], aud["offer"], strict=True)) == {
        1: "Home & Garden",
        3: None,
        2: None,
        4: None,
        5: "Toys",
        6: "Books",
    }


def _audiences(n_per: int, seed: int, ids=None) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out, start = [], 0
    for _ in range(3):
        seg = rng.choice([0, 2, 5], n_per)
        cid = (
            np.arange(start, start + n_per)
            if ids is None
            else [f"{ids}{i}" for i in range(start, start + n_per)]
        )
        start += n_per
        out.append(
            pd.DataFrame(
                {
                    "customer_id": cid,
                    "segment": seg.astype(np.int32),
                    "segment_name": pd.Series([f"seg {s}" for s in seg], dtype=object),
                    "churn_risk_tier": pd.Series(rng.choice(["low", "high"], n_per), dtype=object),
                    "value_tier": pd.Series(["medium"] * n_per, dtype=object),
                    "offer": pd.Series(
                        rng.choice(np.array(["Toys", None], dtype=object), n_per), dtype=object
                    ),
                }
            )
        )
    return out


def _snapshot(d) -> dict:
    return {
        p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("ids", [None, "c"])
def test_write_audiences_one_file_per_segment(tmp_path, ids):
    frames = _audiences(40, 1, ids)
    counts = write_audiences(iter(frames), tmp_path, segment_ids=[0, 1, 2, 5], row_group_rows=16)
    d = tmp_path / "audiences"
    assert sorted(p.name for p in d.iterdir()) == [
        "segment=0.parquet",
        "segment=1.parquet",
        "segment=2.parquet",
        "segment=5.parquet",
    ]
    allrows = pd.concat(frames, ignore_index=True)
    assert counts == {s: int((allrows["segment"] == s).sum()) for s in (0, 1, 2, 5)}
    for s in (0, 2, 5):
        f = pq.ParquetFile(d / f"segment={s}.parquet")
        assert f.schema_arrow.names == AUDIENCE_COLUMNS
        assert f.metadata.num_row_groups > 1  # streamed in row groups, not one concat
        got = f.read().to_pandas()
        want = allrows[allrows["segment"] == s].reset_index(drop=True)
        assert got["customer_id"].tolist() == want["customer_id"].tolist()
        assert got["offer"].fillna("-").tolist() == want["offer"].fillna("-").tolist()
        assert (got["segment"] == s).all()
    empty = pq.read_table(d / "segment=1.parquet")
    assert empty.num_rows == 0 and empty.schema.names == AUDIENCE_COLUMNS
    assert empty.schema.field("customer_id").type == (pa.int64() if ids is None else pa.string())
    assert not any((tmp_path / ".staging").iterdir())


@pytest.mark.parametrize("ids", [None, "c"])
def test_segment_groups_write_what_one_writer_does(tmp_path, ids):
    """The score stage shares the segments out among its workers: the groups' files
    together are byte for byte the files of one streaming writer, and a null segment is
    refused, not dropped."""
    from bigseg.io import tables

    frames = _audiences(40, 1, ids)
    write_audiences(iter(frames), tmp_path / "one", segment_ids=[0, 1, 2, 5], row_group_rows=16)
    paths = []
    for k, f in enumerate(frames):
        paths.append(tmp_path / f"audience-{k}.arrow")
        tables.write_arrow_atomic(paths[-1], pa.Table.from_pandas(f, preserve_index=False))
    d = tmp_path / "groups"
    d.mkdir()
    id_type = pa.int64() if ids is None else pa.string()
    counts = {}
    for g in range(3):
        counts.update(write_segment_group(paths, g, 3, d, [0, 1, 2, 5], id_type, 16))
    assert _snapshot(d) == _snapshot(tmp_path / "one" / "audiences")
    assert counts == {s: int(sum((f["segment"] == s).sum() for f in frames)) for s in (0, 1, 2, 5)}
    t = pa.Table.from_pandas(frames[0], preserve_index=False)
    nulls = t.set_column(1, "segment", pa.array([None] * t.num_rows, pa.int32()))
    tables.write_arrow_atomic(paths[0], nulls)
    with pytest.raises(ValueError, match="null segment"):
        write_segment_group(paths, 0, 3, tmp_path / "groups", [0], id_type, 16)


def test_write_audiences_is_atomic(tmp_path):
    write_audiences(_audiences(30, 2), tmp_path)
    d = tmp_path / "audiences"
    before = _snapshot(d)
    assert len(before) == 3

    bad_type = _audiences(30, 3)
    bad_type[2]["segment"] = "x"  # not an integer segment: fails on the third frame
    missing = _audiences(30, 4)
    missing[1] = missing[1].drop(columns=["value_tier"])

    def failing():
        yield from _audiences(30, 5)[:2]
        raise RuntimeError("worker lost")

    for frames, err in (
        (bad_type, (ValueError, TypeError, pa.ArrowException)),
        (missing, ValueError),
        (failing(), RuntimeError),
    ):
        with pytest.raises(err):
            write_audiences(frames, tmp_path, row_group_rows=8)
        assert _snapshot(d) == before  # previous audiences byte-identical
        assert not any((tmp_path / ".staging").iterdir())  # staging cleaned up
    # and a good write replaces it
    write_audiences(_audiences(10, 6), tmp_path)
    assert _snapshot(d) != before
