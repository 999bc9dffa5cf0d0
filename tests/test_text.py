"""Review sentiment with VADER: scores, dedup, per-customer features, no leakage, and the
sentiment planted in the synthetic reviews."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigseg import synth
from bigseg.features import to_us
from bigseg.features.text import FEATURES, NEGATIVE, review_features, sentiment_scores

DAY = 86_400 * 1_000_000
CUT = 100 * DAY
IDS = {"int": lambda i: i, "str": lambda i: f"c{i}"}

POSITIVE_TEXT = "I love it, excellent quality!"
NEGATIVE_TEXT = "Terrible, broken and useless."


def _reviews(kind, rows, rating=True):
    """rows: (customer, day, text, rating)"""
    f = IDS[kind]
    data = {
        "customer_id": pa.array(
            [f(r[0]) for r in rows], type=pa.int64() if kind == "int" else pa.string()
        ),
        "timestamp": pa.array([round(r[1] * DAY) for r in rows], type=pa.int64()).cast(
            pa.timestamp("us")
        ),
        "text": pa.array([r[2] for r in rows], type=pa.string()),
    }
    if rating:
        data["rating"] = pa.array([r[3] for r in rows], type=pa.int8())
    return pa.table(data)


ROWS = [
    (1, 10, POSITIVE_TEXT, 5),
    (1, 20, NEGATIVE_TEXT, 1),
    (1, 30, "", 3),  # no text: counted, not scored
    (1, 150, NEGATIVE_TEXT, 1),  # after the cutoff
    (2, 50, "Great value.", None),
    (3, 101, NEGATIVE_TEXT, 1),  # only after the cutoff -> absent
]


def test_sentiment_polarity():
    s = sentiment_scores(
        [POSITIVE_TEXT, NEGATIVE_TEXT, "The package arrived on Tuesday.", None, "", "   "]
    )
    assert s.dtype == np.float64 and s.shape == (6,)
    assert s[0] > 0.5 and s[1] < -0.5 and abs(s[2]) < 0.1
    assert np.isnan(s[3:]).all()
    assert sentiment_scores([]).shape == (0,)


def test_sentiment_accepts_arrow_pandas_numpy():
    texts = [POSITIVE_TEXT, None, NEGATIVE_TEXT]
    want = sentiment_scores(texts)
    for t in (pa.array(texts), pa.chunked_array([texts[:1], texts[1:]]), pd.Series(texts),
              np.array(texts, dtype=object)):  # fmt: skip
        np.testing.assert_array_equal(sentiment_scores(t), want)


@pytest.mark.parametrize("kind", IDS)
def test_review_features_by_hand(kind):
    c = IDS[kind]
    pos, neg, great = sentiment_scores([POSITIVE_TEXT, NEGATIVE_TEXT, "Great value."])
    df = review_features(_reviews(kind, ROWS), CUT)
    assert list(df.columns) == [
        "customer_id", "review_count", "review_sentiment_mean", "review_negative_share",
        "days_since_last_negative", "review_rating_mean",
    ]  # fmt: skip
    assert all(df[col].dtype == np.float32 for col in df.columns[1:])
    assert df["customer_id"].tolist() == [c(1), c(2)]
    f = df.set_index("customer_id")
    one = f.loc[c(1)]
    assert one["review_count"] == 3
    assert one["review_sentiment_mean"] == pytest.approx((pos + neg) / 2, abs=1e-6)
    assert one["review_negative_share"] == 0.5  # of the two reviews with text
    assert one["days_since_last_negative"] == 80
    assert one["review_rating_mean"] == 3
    two = f.loc[c(2)]
    assert two["review_count"] == 1 and two["review_sentiment_mean"] == pytest.approx(great)
    assert two["review_negative_share"] == 0 and np.isnan(two["days_since_last_negative"])
    assert np.isnan(two["review_rating_mean"])  # the only rating is null


def test_negative_threshold_is_inclusive():
    assert NEGATIVE == -0.05
    f = review_features(_reviews("int", [(1, 1, NEGATIVE_TEXT, 1)]), CUT)
    assert f["review_negative_share"].tolist() == [1.0]


def test_without_rating_column_no_rating_feature():
    f = review_features(_reviews("int", ROWS, rating=False), CUT)
    assert "review_rating_mean" not in f and "review_sentiment_mean" in f
    assert set(f.columns) - {"customer_id"} == set(FEATURES) - {"review_rating_mean"}


@pytest.mark.parametrize("kind", IDS)
def test_no_leakage(kind):
    rng = np.random.default_rng(0)
    texts = np.array(
        [POSITIVE_TEXT, NEGATIVE_TEXT, "Great value.", "It is okay.", "Awful.", ""], dtype=object
    )
    n = 600
    cust = rng.integers(1, 80, n)
    day = rng.random(n) * 200
    rating = rng.integers(1, 6, n)
    txt = rng.choice(texts, n)
    rows = [
        (int(a), float(b), t, int(r)) for a, b, t, r in zip(cust, day, txt, rating, strict=True)
    ]
    # rows after the cutoff: text flipped, rating changed, moved later; new rows added
    rows2 = [
        (a, b + 3, NEGATIVE_TEXT if t != NEGATIVE_TEXT else POSITIVE_TEXT, 6 - r) if b > 100
        else (a, b, t, r)
        for a, b, t, r in rows
    ]  # fmt: skip
    rows2 += [(a, 100.001 + k, NEGATIVE_TEXT, 1) for k, a in enumerate([1, 2, 3, 500, 501])]
    a = _reviews(kind, sorted(rows, key=lambda r: (r[0], r[1])))
    b = _reviews(kind, sorted(rows2, key=lambda r: (r[0], r[1])))
    pd.testing.assert_frame_equal(review_features(a, CUT), review_features(b, CUT))


def test_precomputed_scores_give_the_same_features():
    t = _reviews("str", ROWS)
    scores = sentiment_scores(t.column("text"))
    pd.testing.assert_frame_equal(review_features(t, CUT, scores=scores), review_features(t, CUT))
    with pytest.raises(ValueError, match="scores"):
        review_features(t, CUT, scores=scores[:2])


# ---------------------------------------------------------------------------------------
# synthetic reviews
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.generate(2000, out, seed=11, chunk_size=1000)
    return pq.read_table(out / "raw" / "reviews"), pq.read_table(out / "ground_truth")


def test_dedup_matches_scoring_every_text(synthetic):
    reviews, _ = synthetic
    texts = reviews.column("text").to_pylist() + [None, "", POSITIVE_TEXT, POSITIVE_TEXT]
    assert len(set(texts)) < len(texts)
    np.testing.assert_array_equal(sentiment_scores(texts), sentiment_scores(texts, dedup=False))


def test_synthetic_sentiment_follows_rating(synthetic):
    reviews, _ = synthetic
    s = sentiment_scores(reviews.column("text"))
    rating = reviews.column("rating").to_numpy()
    assert not np.isnan(s).any()
    means = {r: s[rating == r].mean() for r in (1, 5)}
    assert means[5] > means[1] + 0.5
    assert means[5] > 0.3 and means[1] < -0.3


def test_synthetic_sentiment_by_persona(synthetic):
    reviews, truth = synthetic
    f = review_features(reviews, to_us("2026-09-30"))
    f = f.merge(truth.select(["customer_id", "persona"]).to_pandas(), on="customer_id")
    by = f.groupby("persona")["review_sentiment_mean"].mean()
    assert by["at_risk"] < by["champions"] and by["hibernating"] < by["champions"]
    assert f["review_count"].sum() == reviews.num_rows


def test_sentiment_scored_at_ingest(tmp_path, local_client):
    """Ingest stores each review's sentiment; features read it (no re-scoring) and are
    the same as scoring the texts in the feature run (a store built before the column
    existed)."""
    import yaml

    from bigseg.config import load_run_config
    from bigseg.features import bucket_frames
    from bigseg.schema import SENTIMENT
    from bigseg.store import ingest

    synth.generate(600, tmp_path, seed=4)
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {
                    "transactions": {"path": "raw/transactions"},
                    "reviews": {"path": "raw/reviews"},
                },
                "output": "out",
            }
        )
    )
    store = ingest(load_run_config(tmp_path / "job.yaml"), local_client)
    cut = {"score": to_us("2030-01-01")}
    for k in range(store.n_buckets):
        rv = store.read_bucket("reviews", k)
        stored = rv.column(SENTIMENT).to_numpy()
        np.testing.assert_array_equal(stored, sentiment_scores(rv.column("text").to_pandas()))
        with_col = bucket_frames(store, k, cut, (), 90, False)["frames"]["score"]
        # the same bucket without the stored column: scored from the texts
        for f in store.parts["reviews"][k]:
            pq.write_table(pq.read_table(f).drop_columns([SENTIMENT]), f)
        without = bucket_frames(store, k, cut, (), 90, False)["frames"]["score"]
        pd.testing.assert_frame_equal(with_col, without)
