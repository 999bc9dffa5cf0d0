"""RFM features and labels: correct values, and nothing after the cutoff leaks in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bigseg.features import to_us
from bigseg.features.rfm import FEATURE_NAMES, horizon_labels, rfm_features

DAY = 86_400 * 1_000_000


def _tx(rows):
    ids = np.array([r[0] for r in rows])
    ts = np.array([r[1] * DAY for r in rows], dtype=np.int64)
    amt = np.array([r[2] for r in rows], dtype=np.float64)
    return ids, ts, amt


def test_values_by_hand():
    ids, ts, amt = _tx([(1, 0, 10.0), (1, 50, 30.0), (1, 55, -10.0), (1, 95, 20.0), (2, 99, 5.0)])
    f = rfm_features(ids, ts, amt, 100 * DAY).set_index("customer_id")
    one = f.loc[1]
    assert one["recency_days"] == 5 and one["frequency"] == 3
    assert one["monetary_total"] == 50 and one["monetary_mean"] == 20 and one["monetary_max"] == 30
    assert one["tenure_days"] == 100 and one["interpurchase_days"] == pytest.approx(47.5)
    assert one["returns_rate"] == pytest.approx(1 / 3)
    assert one["count_90d"] == 2  # days 50 and 95 are within (10, 100]
    assert f.loc[2, "frequency"] == 1 and f.loc[2, "recency_days"] == 1
    assert list(f.columns) == FEATURE_NAMES


def test_no_leakage_from_after_the_cutoff():
    rng = np.random.default_rng(0)
    n = 5000
    ids = np.sort(rng.integers(0, 300, n))
    ts = rng.integers(0, 400, n) * DAY
    amt = rng.gamma(2, 10, n)
    cut = 200 * DAY
    before = rfm_features(ids, ts, amt, cut)
    # change everything after the cutoff: amounts, timestamps (still after), new customers
    later = ts > cut
    amt2 = amt.copy()
    amt2[later] *= 100
    ts2 = ts.copy()
    ts2[later] += 7 * DAY
    ids2 = np.where(later, ids + 10_000, ids)
    order = np.lexsort((ts2, ids2))
    after = rfm_features(ids2[order], ts2[order], amt2[order], cut)
    pd.testing.assert_frame_equal(before, after)


def test_customers_without_a_purchase_before_the_cutoff_are_left_out():
    ids, ts, amt = _tx([(1, 10, 5.0), (2, 150, 5.0), (3, 20, -5.0)])
    f = rfm_features(ids, ts, amt, 100 * DAY)
    assert f["customer_id"].tolist() == [1]


def test_labels_look_only_at_the_horizon():
    ids, ts, amt = _tx([(1, 10, 5.0), (1, 120, 7.0), (2, 95, 3.0), (3, 300, 9.0)])
    bought, spend = horizon_labels(np.array([3, 1, 2]), ids, ts, amt, 100 * DAY, 90)
    assert bought.tolist() == [False, True, False]  # 2: before the cutoff, 3: after it
    assert spend.tolist() == [0.0, 7.0, 0.0]


def test_to_us_is_end_of_day():
    assert to_us("1970-01-02") == 2 * DAY - 1
