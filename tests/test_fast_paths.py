"""The shortcuts taken for speed give exactly what the general code gives: run-based
factorisation of sorted integer ids, counting instead of sorting for dense pairs,
duplicate checks only inside runs of equal sort keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

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
    df = pd.DataFrame({
        "customer_id": rng.integers(0, 300, n),
        "timestamp": rng.integers(0, 40, n),
        "amount": rng.integers(0, 3, n).astype(float),
        "channel": rng.choice(["web", "app", None], n),
    })
    df = pd.concat([df, df.sample(400, random_state=3)], ignore_index=True)
    t = pa.Table.from_pandas(df, preserve_index=False).sort_by(
        [("customer_id", "ascending"), ("timestamp", "ascending")])
    fast, full = rules.Reasons(t.num_rows), rules.Reasons(t.num_rows)
    rules.mark_duplicates(t, fast, sorted_by=["customer_id", "timestamp"])
    rules.mark_duplicates(t, full)
    assert full.bad.sum() >= 400  # the planted repeats (and any chance ones)
    np.testing.assert_array_equal(fast.bad, full.bad)
