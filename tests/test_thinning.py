"""The oldest cutoffs' feature frames hold only the customers training can draw:
counted before the features, thinned by each customer's sampling number, with the
labels' counts of every customer kept (issue 20: memory bounded by the sample)."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd

from bigseg import features as fm
from bigseg.features import tasks as ftasks
from bigseg.features.bucket import CUTOFFS, BucketFeatures
from bigseg.features.sample import customer_numbers, share_within
from bigseg.pipeline.sampling import POOLED, THINNED, older_share, thin_rates
from bigseg.store import open_store


def _cutoffs(store) -> dict[str, int]:
    last = max(ftasks.max_timestamp(store, k) or 0 for k in range(store.n_buckets))
    as_of = pd.Timestamp(last, unit="us").normalize().date()
    return {c: fm.to_us(as_of - i * dt.timedelta(days=90)) for i, c in enumerate(CUTOFFS)}


def test_thinned_frames_hold_every_row_training_draws(small_run):
    cfg, _ = small_run
    store = open_store(cfg.output_dir)
    cuts, labelled = _cutoffs(store), tuple(CUTOFFS[1:])
    vocab = fm.merge_vocab([fm.vocab_counts(store, k) for k in range(store.n_buckets)])
    full = [
        BucketFeatures.of(fm.bucket_frames(store, k, cuts, labelled, 90, True, vocab))
        for k in range(store.n_buckets)
    ]
    counts = [ftasks.known_customers(store, k, cuts, True) for k in range(store.n_buckets)]
    # counted before the features: exactly the rows each cutoff's frame holds
    for k, res in enumerate(full):
        assert counts[k] == {c: len(res.frame(c)) for c in cuts}
    sizes = {c: sum(x[c] for x in counts) for c in cuts}
    thin = thin_rates(sizes, cap=300, windows=4, pool=sizes["train"] // 3)
    assert set(thin) == {*THINNED, *POOLED} and all(0 < q < 1 for q in thin.values()), thin
    for k, res in enumerate(full):
        part = BucketFeatures.of(
            fm.bucket_frames(store, k, cuts, labelled, 90, True, vocab, thin, cfg.seed)
        )
        for c in cuts:
            a, b = res.frame(c), part.frame(c)
            for target in ("churn", "value"):  # the counts of every customer
                assert ftasks.label_counts(part, c, target) == ftasks.label_counts(res, c, target)
            if c not in thin:
                pd.testing.assert_frame_equal(a, b)
                continue
            u = customer_numbers(a["customer_id"].to_numpy(), cfg.seed)
            pd.testing.assert_frame_equal(a[u < thin[c]].reset_index(drop=True), b)


def test_thin_rates_cover_every_stack_training_can_build():
    """Whatever windows turn out usable (learnt from their labels after the features),
    no stack's older windows draw customers beyond their cutoff's thinning rate, and the
    stacks' latest cutoffs hold at least the backtest's sample (all of them without a
    cap on it)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = np.sort(rng.integers(0, 2_000_000, len(CUTOFFS) - 1))[::-1]
        sizes = dict(zip(CUTOFFS[1:], (int(x) for x in n), strict=True))
        cap, windows = int(rng.choice([0, 1000, 100_000, 10**9])), int(rng.integers(1, 5))
        pool = int(rng.choice([0, 5000, 1_000_000]))
        rates = thin_rates(sizes, cap, windows, pool)
        names = list(CUTOFFS[1:])
        for start, m in itertools.product((0, 1), range(2, windows + 1)):
            stack = names[start : start + m]
            if len(stack) < 2:
                continue
            rate, _ = older_share(stack, sizes, cap)
            for c in stack[1:]:
                assert c in THINNED or c in POOLED or c not in rates
                assert rates.get(c, 1.0) >= rate
        for c in POOLED:
            assert rates.get(c, 1.0) >= share_within(sizes[c], pool)
            assert pool or c not in rates


def test_pooled_cutoffs_are_thinned_only_beyond_the_backtest_sample():
    sizes = {"train": 9_000_000, "backtest": 7_000_000, "back3": 6_000_000}
    rates = thin_rates(sizes, 100_000, 4, 1_000_000)
    assert rates["train"] == 1_000_000 / 9_000_000
    assert 1_000_000 / 7_000_000 <= rates["backtest"] < 0.2
    small = {"train": 700_000, "backtest": 600_000, "back3": 500_000}
    assert not set(POOLED) & set(thin_rates(small, 100_000, 4, 1_000_000))
