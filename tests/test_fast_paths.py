"""The shortcuts taken for speed give exactly what the general code gives: run-based
factorisation of sorted integer ids, counting instead of sorting for dense pairs,
duplicate checks only inside runs of equal sort keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from bigseg.features import behaviour as B
from bigseg.store import rules


def test_sorted_integer_ids_factorize_like_the_hash_table():
    rng = np.random.default_rng(0)
    ids = np.sort(rng.integers(-50, 10_000, 20_000))
    codes, uniq = B._factorize(pa.chunked_array([ids[:7000], ids[7000:]]))
    want_codes, want_uniq = pd.factorize(ids)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(uniq, want_uniq)
    shuffled = rng.permutation(ids)  # unsorted: the general path, first-appearance order
    codes, uniq = B._factorize(pa.array(shuffled))
    want_codes, want_uniq = pd.factorize(shuffled)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(uniq, want_uniq)


def test_dense_distinct_pairs_equal_np_unique():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5_000, 100_000), rng.integers(0, 7, 100_000)
    uk, inv = B._distinct_pairs(a, b, 7)
    want, want_inv = np.unique(a.astype(np.int64) * 7 + b, return_inverse=True)
    np.testing.assert_array_equal(uk, want)
    np.testing.assert_array_equal(inv, want_inv)
    sparse = a * 10_000_000  # a key space far larger than the rows: the sorting path
    uk, inv = B._distinct_pairs(sparse, b, 7)
    want, want_inv = np.unique(sparse.astype(np.int64) * 7 + b, return_inverse=True)
    np.testing.assert_array_equal(uk, want)
    np.testing.assert_array_equal(inv, want_inv)


def test_duplicates_found_within_key_runs_equal_a_full_comparison():
    rng = np.random.default_rng(2)
    n = 5_000
    df = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 300, n),
            "timestamp": rng.integers(0, 40, n),
            "amount": rng.integers(0, 3, n).astype(float),
            "channel": rng.choice(["web", "app", None], n),
        }
    )
    df = pd.concat([df, df.sample(400, random_state=3)], ignore_index=True)
    t = pa.Table.from_pandas(df, preserve_index=False).sort_by(
        [("customer_id", "ascending"), ("timestamp", "ascending")]
    )
    fast, full = rules.Reasons(t.num_rows), rules.Reasons(t.num_rows)
    rules.mark_duplicates(t, fast, sorted_by=["customer_id", "timestamp"])
    rules.mark_duplicates(t, full)
    assert full.bad.sum() >= 400  # the planted repeats (and any chance ones)
    np.testing.assert_array_equal(fast.bad, full.bad)


def test_dictionary_read_columns_give_the_same_codes_as_encoding_strings():
    """Columns read as Parquet dictionaries (several chunks, each its own dictionary)
    are unified into one and factorise to the same values as encoded strings."""
    words = np.array(["web", "app", None, "store", "app", "web"] * 50, dtype=object)
    plain = pa.table({"channel": pa.array(words, pa.string())})
    chunks = [pa.array(words[i : i + 70], pa.string()).dictionary_encode() for i in (0, 70, 140)]
    chunks.append(pa.array(words[210:], pa.string()).dictionary_encode())
    as_dict = pa.table({"channel": pa.chunked_array(chunks)})
    a = B.encode_strings(plain, ("channel",)).column("channel")
    b = B.encode_strings(as_dict, ("channel",)).column("channel")
    assert b.num_chunks == 1 and pa.types.is_dictionary(b.type)
    assert a.to_pylist() == b.to_pylist() == words.tolist()
    ca, va = B._factorize(a)
    cb, vb = B._factorize(b)
    assert [va[c] if c >= 0 else None for c in ca] == [vb[c] if c >= 0 else None for c in cb]


def test_store_reads_named_columns_as_dictionaries(tmp_path):
    import pyarrow.parquet as pq

    from bigseg.store.store import Store, bucket_dirname

    schema = {"customer_id": "int64", "channel": "string"}
    d = tmp_path / "transactions" / bucket_dirname(0)
    d.mkdir(parents=True)
    t = pa.table({"customer_id": [1, 1, 2], "channel": ["web", "app", "web"]})
    pq.write_table(t, d / "part-0.parquet")
    # a store reads the part files its commit lists, never a folder listing
    manifest = {"n_buckets": 1, "tables": {"transactions": {"schema": schema}}}
    store = Store(str(tmp_path), manifest, {"transactions": {0: [d / "part-0.parquet"]}})
    got = store.read_bucket("transactions", 0, dictionary=("channel", "nope"))
    assert pa.types.is_dictionary(got.schema.field("channel").type)
    assert got.column("channel").to_pylist() == ["web", "app", "web"]
    assert store.read_bucket("transactions", 0).column("channel").type == pa.string()


def test_refined_models_predict_on_the_global_margin_as_a_whole_model():
    """The backtest evaluates a segment's model (the global model boosted further) as
    the global margin plus its own trees: the same predictions as the whole model."""
    from bigseg.predict.segmented import _LINKS, _objective, _refined_predict
    from bigseg.predict.xgb import _booster, train_task

    rng = np.random.default_rng(0)
    n = 3000
    X = rng.normal(size=(n, 6)).astype(np.float32)
    targets = {
        "binary:logistic": (X[:, 0] + rng.normal(size=n) > 0).astype(np.float32),
        "reg:tweedie": np.exp(X[:, 1]).astype(np.float32),
    }
    v, sel = rng.random(n) < 0.2, X[:, 2] > 0
    for obj, y in targets.items():
        params = {"objective": obj, "max_depth": 3, "eta": 0.1, "seed": 0}
        gm, _ = train_task(params, 60, 10, (X[~v], y[~v], X[v], y[v]))
        rm, info = train_task(
            params, 30, 10, (X[~v & sel], y[~v & sel], X[v & sel], y[v & sel]), init=gm
        )
        g, r = _booster(gm), _booster(rm)
        margin = g.inplace_predict(X, predict_type="margin")
        idx = np.flatnonzero(sel)
        fast = _refined_predict(g, margin, r, X, idx)
        np.testing.assert_allclose(fast, r.inplace_predict(X[idx]), rtol=1e-6)
        np.testing.assert_allclose(
            _LINKS[_objective(g)](margin), g.inplace_predict(X), rtol=1e-5, atol=1e-6
        )
        # without the margin (an objective with no known link): the whole model
        np.testing.assert_array_equal(
            _refined_predict(g, None, r, X, idx), r.inplace_predict(X[idx])
        )


def _tx_table(seed: int = 0) -> pa.Table:
    """Transactions sorted by customer id then time, with every edge case of the
    transaction features: long runs (the pairwise sums' halving), returns, zero amounts,
    null and out-of-vocabulary channels and categories, customers with returns only and
    customers whose rows all come after some cutoff."""
    rng = np.random.default_rng(seed)
    day = 86_400 * 10**6
    sizes = np.concatenate([[1000, 300, 129, 128, 7, 1], rng.integers(1, 40, 300)])
    ids = np.repeat(np.arange(len(sizes)) * 3 + 5, sizes)
    n = len(ids)
    ts = rng.integers(0, 720, n) * day + rng.integers(0, day, n)
    ts[ids == 3 * 4 + 5] = 700 * day  # a customer seen only after the earlier cutoffs
    order = np.lexsort((ts, ids))
    ids, ts = ids[order], ts[order]
    amt = np.round(rng.lognormal(3, 1, n), 2) * rng.choice([1, 1, 1, 1, -1], n)
    amt[rng.random(n) < 0.02] = 0.0
    amt[ids == 3 * 5 + 5] = -abs(amt[ids == 3 * 5 + 5])  # returns only
    channel = rng.choice(np.array(["web", "app", "store", "phone", None], dtype=object), n)
    category = rng.choice(
        np.array(["home", "toys", "books", "garden", "food", None], dtype=object), n
    )
    t = pa.table(
        {
            "customer_id": ids,
            "timestamp": pa.array(ts, pa.timestamp("us")),
            "amount": amt,
            "channel": channel,
            "category": category,
        }
    )
    return B.encode_strings(t, ("channel", "category"))


def _reference_tx_features(tx, cutoffs, channels, categories):
    from bigseg.features import _join
    from bigseg.features.rfm import rfm_features

    ids = tx.column("customer_id").to_numpy()
    ts = tx.column("timestamp").cast("int64").to_numpy()
    amt = tx.column("amount").to_numpy().astype(np.float64)
    out = {}
    for name, cut in cutoffs.items():
        f = rfm_features(ids, ts, amt, cut)
        f = _join(f, B.channel_features(tx, cut, channels))
        out[name] = _join(f, B.category_features(tx, cut, categories))
    return out


def test_transaction_features_equal_the_three_functions_to_the_bit():
    from bigseg.features.fused import transaction_features

    day = 86_400 * 10**6
    cutoffs = {"backtest": 300 * day, "train": 450 * day, "score": 720 * day}
    for seed, channels, categories in [
        (0, ["web", "app", "store"], ["home", "toys"]),
        (1, ["app"], []),
        (2, [], ["books", "food", "home"]),
    ]:
        tx = _tx_table(seed)
        fast = transaction_features(tx, cutoffs, channels, categories)
        ref = _reference_tx_features(tx, cutoffs, channels, categories)
        for name in cutoffs:
            pd.testing.assert_frame_equal(fast[name], ref[name], check_exact=True)
        assert len(fast["score"]) > len(fast["backtest"]) > 100
        assert (fast["score"]["frequency"] > 128).any()  # a halved pairwise sum ran


def test_a_sampled_cutoff_equals_the_full_frame_thinned_to_the_bit():
    """The pass over a sampled cutoff's customers only gives the rows of the full frame
    whose sampling number lies below the rate, with the same values."""
    from bigseg.features.fused import transaction_features
    from bigseg.features.sample import customer_numbers

    day = 86_400 * 10**6
    cutoffs = {"back3": 300 * day, "train": 450 * day}
    tx = _tx_table(0)
    full = transaction_features(tx, cutoffs, ["web", "app"], ["home", "toys"])
    part = transaction_features(
        tx, cutoffs, ["web", "app"], ["home", "toys"], sample={"back3": 0.3}, seed=7
    )
    keep = customer_numbers(full["back3"]["customer_id"].to_numpy(), 7) < 0.3
    assert 0 < keep.sum() < len(keep)
    want = full["back3"][keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(part["back3"], want, check_exact=True)
    pd.testing.assert_frame_equal(part["train"], full["train"], check_exact=True)

    from bigseg.features.fused_events import engagement_features

    ev = _events_table(0, True)
    full = engagement_features(ev, cutoffs, ["web", "app"])
    part = engagement_features(ev, cutoffs, ["web", "app"], sample={"back3": 0.3}, seed=7)
    keep = customer_numbers(full["back3"]["customer_id"].to_numpy(), 7) < 0.3
    assert 0 < keep.sum() < len(keep)
    want = full["back3"][keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(part["back3"], want, check_exact=True)
    pd.testing.assert_frame_equal(part["train"], full["train"], check_exact=True)


def test_transaction_features_decline_what_they_do_not_cover():
    from bigseg.features.fused import transaction_features

    tx = _tx_table()
    cut = {"score": 720 * 86_400 * 10**6}
    assert transaction_features(tx, cut, None, []) is None  # no channel vocabulary
    plain = tx.set_column(3, "channel", tx.column("channel").cast(pa.string()))
    assert transaction_features(plain, cut, ["web"], []) is None
    unsorted = tx.take(pa.array(np.arange(tx.num_rows)[::-1]))
    assert transaction_features(unsorted, cut, ["web"], []) is None
    amt = tx.column("amount").to_pylist()
    amt[3] = None
    assert transaction_features(tx.set_column(2, "amount", pa.array(amt)), cut, ["web"], []) is None
    # without channel and category columns: RFM alone, as rfm_features gives it
    from bigseg.features.rfm import rfm_features

    rfm = tx.select(["customer_id", "timestamp", "amount"])
    f = transaction_features(rfm, cut, None, [])["score"]
    ref = rfm_features(
        rfm.column(0).to_numpy(),
        rfm.column(1).cast("int64").to_numpy(),
        rfm.column(2).to_numpy(),
        cut["score"],
    )
    pd.testing.assert_frame_equal(f, ref, check_exact=True)


def _events_table(seed: int = 0, page_views: bool = True) -> pa.Table:
    rng = np.random.default_rng(seed)
    day = 86_400 * 10**6
    sizes = np.concatenate([[400, 60, 1], rng.integers(1, 30, 200)])
    ids = np.repeat(np.arange(len(sizes)) * 7 + 1, sizes)
    n = len(ids)
    ts = rng.integers(-30, 720, n) * day + rng.integers(0, day, n)  # a few before 1970
    order = np.lexsort((ts, ids))
    ids, ts = ids[order], ts[order]
    etype = rng.choice(
        np.array(["session", "page_view", "app_open", "email_open", None], dtype=object), n
    )
    channel = rng.choice(np.array(["web", "app", "kiosk", None], dtype=object), n)
    cols = {
        "customer_id": ids,
        "timestamp": pa.array(ts, pa.timestamp("us")),
        "event_type": etype,
        "channel": channel,
    }
    if page_views:
        pv = rng.integers(0, 20, n).astype(object)
        pv[rng.random(n) < 0.1] = None
        cols["page_views"] = pa.array(pv, pa.int32())
    return B.encode_strings(pa.table(cols), ("channel", "event_type"))


def test_engagement_features_equal_behaviours_to_the_bit():
    from bigseg.features.fused_events import engagement_features

    day = 86_400 * 10**6
    cutoffs = {"backtest": 200 * day, "train": 400 * day, "score": 720 * day, "early": 10 * day}
    for seed, channels, pv in [(0, ["web", "app"], True), (1, [], False), (2, ["kiosk"], True)]:
        ev = _events_table(seed, pv)
        fast = engagement_features(ev, cutoffs, channels)
        for name, cut in cutoffs.items():
            ref = B.engagement_features(ev, cut, channels)
            pd.testing.assert_frame_equal(fast[name], ref, check_exact=True)
        assert (fast["score"]["active_days_90d"] > 30).any()
    ev = _events_table()
    assert engagement_features(ev, cutoffs, None) is None  # no channel vocabulary
    plain = ev.set_column(2, "event_type", ev.column("event_type").cast(pa.string()))
    assert engagement_features(plain, cutoffs, ["web"]) is None
    assert (
        engagement_features(ev.take(pa.array(np.arange(ev.num_rows)[::-1])), cutoffs, ["web"])
        is None
    )


def _with_string_ids(t: pa.Table) -> pa.Table:
    """``t`` with pseudonym-like string ids, sorted as the store sorts them."""
    ids = np.array([f"c{v:08x}" for v in t.column("customer_id").to_numpy()], dtype=object)
    order = np.argsort(ids, kind="stable")
    return t.take(pa.array(order)).set_column(0, "customer_id", pa.array(ids[order]))


def test_fused_passes_take_string_ids():
    from bigseg.features.fused import transaction_features
    from bigseg.features.fused_events import engagement_features

    day = 86_400 * 10**6
    cutoffs = {"train": 300 * day, "score": 720 * day}
    tx = _with_string_ids(_tx_table(0))
    fast = transaction_features(tx, cutoffs, ["web", "app"], ["home"])
    ref = _reference_tx_features(tx, cutoffs, ["web", "app"], ["home"])
    ev = _with_string_ids(_events_table(0))
    fast_ev = engagement_features(ev, cutoffs, ["web"])
    for name, cut in cutoffs.items():
        pd.testing.assert_frame_equal(fast[name], ref[name], check_exact=True)
        pd.testing.assert_frame_equal(
            fast_ev[name], B.engagement_features(ev, cut, ["web"]), check_exact=True
        )


def test_a_refined_model_learns_from_and_is_judged_on_the_initial_models_true_predictions():
    """A segment's model continues the global model on the segment's rows. Its trees
    must fit the residuals of the global model's real predictions, and its early
    stopping must see the real validation loss: quantized matrices with the segment's
    own cuts route rows down the wrong branches of the global trees (whose splits lie
    on other cuts), so both the residuals and the loss were wrong."""
    from sklearn.metrics import log_loss

    from bigseg.predict.xgb import _booster, train_task

    rng = np.random.default_rng(1)
    n = 20_000
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 3] + rng.normal(size=n) > 0).astype(np.float32)
    v, sel = rng.random(n) < 0.2, X[:, 2] > 1.0  # a segment on one side of a feature
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 4}
    gm, _ = train_task({**params, "eta": 0.3}, 100, 10, (X[~v], y[~v], X[v], y[v]))
    rm, info = train_task(
        {**params, "eta": 0.1}, 30, 5, (X[~v & sel], y[~v & sel], X[v & sel], y[v & sel]),
        init=gm,
    )  # fmt: skip
    Xv, yv = X[v & sel], y[v & sel]
    true = log_loss(yv, _booster(rm).inplace_predict(Xv))
    assert info["valid_logloss"] == pytest.approx(true, rel=1e-5)
    # kept only while it helps: never worse on the validation rows than where it began
    assert true <= log_loss(yv, _booster(gm).inplace_predict(Xv)) + 1e-9


def test_exact_cuts_are_the_bins_xgboost_trains_on():
    """A feature with at most max_bin distinct values keeps every one as a cut (what
    XGBoost's sketch gives), a wider one gets max_bin quantiles; XGBoost bins a matrix
    at exactly the reference rows' values."""
    import xgboost as xgb

    from bigseg.predict.bins import cut_rows, quantized

    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 3)).astype(np.float32)
    X[:, 1] = rng.integers(0, 9, 5000)  # 9 distinct values
    X[rng.random(5000) < 0.1, 2] = np.nan
    X[:, 0][:5] = [np.nan] * 5
    cuts = cut_rows(X, 16)
    assert cuts.shape == (16, 3)
    assert sorted(cuts[~np.isnan(cuts[:, 1]), 1]) == list(range(9))
    c = cuts[:, 0]
    assert np.all(np.diff(c) > 0) and c[0] == np.nanmin(X[:, 0]) and c[-1] == np.nanmax(X[:, 0])
    ptr, values = quantized(X, np.zeros(5000), cuts, 16, 1).get_quantile_cut()
    mine = xgb.QuantileDMatrix(cuts, max_bin=16).get_quantile_cut()
    assert np.array_equal(ptr, mine[0]) and np.array_equal(values, mine[1])
    assert set(range(1, 9)) <= set(values[ptr[1] : ptr[2]].tolist())  # a bin per value
    # all-missing and empty columns give no cuts, and no error
    assert np.isnan(cut_rows(np.full((4, 2), np.nan, np.float32), 8)).all()
    assert np.isnan(cut_rows(np.zeros((0, 2), np.float32), 8)).all()


def test_a_refinement_on_the_global_cuts_starts_from_the_global_models_true_margin():
    """The global model trained on exact cuts, its refinement on the segment's rows
    binned at the same cuts: the quantized rows take the global trees' branches exactly
    as the raw values do (so the new trees fit true residuals), and the refinement's
    reported validation loss is its real one."""
    import xgboost as xgb
    from sklearn.metrics import log_loss

    from bigseg.predict.bins import cut_rows, quantized
    from bigseg.predict.xgb import _booster, train_task

    rng = np.random.default_rng(2)
    n = 20_000
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[:, 4] = rng.integers(0, 5, n)
    y = (X[:, 0] + X[:, 1] * X[:, 3] + 0.3 * X[:, 4] + rng.normal(size=n) > 0).astype(np.float32)
    v, sel = rng.random(n) < 0.2, X[:, 2] > 1.0
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 4}
    cuts = cut_rows(X[~v], 64)
    gm, _ = train_task({**params, "eta": 0.3}, 100, 10, (X[~v], y[~v], X[v], y[v]), cuts=cuts)
    g = _booster(gm)
    seg = X[~v & sel]
    np.testing.assert_array_equal(
        g.predict(quantized(seg, np.zeros(len(seg)), cuts, 64, 1), output_margin=True),
        g.predict(xgb.DMatrix(seg), output_margin=True),
    )
    rm, info = train_task(
        {**params, "eta": 0.1}, 30, 5, (seg, y[~v & sel], X[v & sel], y[v & sel]),
        init=gm, cuts=cuts,
    )  # fmt: skip
    Xv, yv = X[v & sel], y[v & sel]
    true = log_loss(yv, _booster(rm).inplace_predict(Xv))
    assert info["valid_logloss"] == pytest.approx(true, rel=1e-5)
    assert true <= log_loss(yv, g.inplace_predict(Xv)) + 1e-9
    # the cuts found in the global model's own task ("exact") are those, returned for
    # its refinements, which take them from the global model's result: the same models
    own = train_task({**params, "eta": 0.3}, 100, 10, (X[~v], y[~v], X[v], y[v]), cuts="exact")
    assert own[0] == gm
    np.testing.assert_array_equal(own[1]["cuts"], cuts)
    again, info2 = train_task(
        {**params, "eta": 0.1}, 30, 5, (seg, y[~v & sel], X[v & sel], y[v & sel]), init=own
    )
    assert again == rm and "cuts" not in info2
    with pytest.raises(ValueError, match="exact"):
        train_task(params, 5, 5, (X[~v], y[~v], X[v], y[v]), cuts="sketch")


def test_known_customers_and_labels_from_sorted_ids_equal_the_hashing():
    """The thinned cutoffs' counts: the customers with a purchase by the cutoff and their
    labels, found along sorted ids, equal ``pd.unique`` and :func:`horizon_labels`."""
    from bigseg.features.rfm import DAY_US, horizon_labels, known_with_labels

    rng = np.random.default_rng(5)
    n = 50_000
    ids = np.sort(rng.integers(0, 8000, n)).astype(np.int64)
    ts = rng.integers(0, 400, n).astype(np.int64) * DAY_US
    amt = np.round(rng.normal(40, 30, n), 2)  # some returns (negative)
    cut = 300 * DAY_US
    refuse = np.array([3, 17, 4000, 99_999], np.int64)
    for order in (np.arange(n), rng.permutation(n)):  # sorted (fast) and not (hashing)
        i, t, a = ids[order], ts[order], amt[order]
        known = pd.unique(i[(t <= cut) & (a > 0)])
        known = known[~np.isin(known, refuse)]
        want = horizon_labels(known, i, t, a, cut, 90)
        got = known_with_labels(i, t, a, cut, 90, refuse)
        np.testing.assert_array_equal(got[0], known)
        np.testing.assert_array_equal(got[1], want[0])
        np.testing.assert_array_equal(got[2], want[1])
    empty = known_with_labels(ids[:0], ts[:0], amt[:0], cut, 90, None)
    assert [len(x) for x in empty] == [0, 0, 0]


def test_first_purchase_times_from_sorted_runs_equal_the_aggregation():
    from bigseg.features.tasks import _first_times

    tx = _tx_table(3).select(["customer_id", "timestamp"])
    ids, first = _first_times(tx)  # sorted ids: the runs' reduction
    shuffled = tx.take(pa.array(np.random.default_rng(0).permutation(tx.num_rows)))
    ids2, first2 = _first_times(shuffled)  # unsorted: the hash aggregation
    o, o2 = np.argsort(ids), np.argsort(ids2)
    assert len(ids) == len(np.unique(tx.column("customer_id").to_numpy()))
    np.testing.assert_array_equal(ids[o], ids2[o2])
    np.testing.assert_array_equal(first[o], first2[o2])


def test_segment_sums_equal_bincount_bit_for_bit():
    from bigseg.predict.scoring import _segment_sums

    rng = np.random.default_rng(4)
    n, d, k = 5000, 6, 4
    X = rng.lognormal(0, 3, (n, d)).astype(np.float32)
    X[rng.random((n, d)) < 0.1] = np.nan
    X[rng.random((n, d)) < 0.01] = np.inf
    labels = rng.integers(0, k, n)
    sums, sumsq, present = _segment_sums(np.asfortranarray(X), labels, k)
    x64 = X.astype(np.float64)
    ok = np.isfinite(x64)
    vals = np.where(ok, x64, 0.0)
    for j in range(d):
        assert np.array_equal(sums[:, j], np.bincount(labels, weights=vals[:, j], minlength=k))
        assert np.array_equal(
            sumsq[:, j], np.bincount(labels, weights=vals[:, j] ** 2, minlength=k)
        )
        assert np.array_equal(present[:, j], np.bincount(labels, weights=ok[:, j], minlength=k))
