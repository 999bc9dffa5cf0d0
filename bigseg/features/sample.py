"""Each customer's sampling number: a stable number in [0, 1) per customer id and seed.
Keeping the customers whose number lies below ``f`` samples a share ``f`` of them, the
same ones on every run and cluster, and a larger sample holds every customer of a
smaller one: the training samples, the backtest's sample and the older cutoffs'
thinned feature frames all use it, so each holds the customers the next one needs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from bigseg.store.buckets import hash_ids


def share_within(n: int, cap: int) -> float:
    """The share of ``n`` customers a sample of at most ``cap`` keeps (``cap`` 0: all)."""
    return 1.0 if cap == 0 or n <= cap else cap / n


def sample_numbers(hashes: np.ndarray, seed: int) -> np.ndarray:
    """The number of each customer from :func:`bigseg.store.buckets.hash_ids` of its id,
    independent of the validation split (which mixes the same hashes otherwise)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        mixed = (hashes ^ np.uint64(seed + 0x632BE59BD9B4E019)) * np.uint64(0xD6E8FEB86659FD93)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)


def customer_numbers(ids: np.ndarray, seed: int) -> np.ndarray:
    """:func:`sample_numbers` of the customer ids ``ids``."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.float64)
    return sample_numbers(hash_ids(pa.array(ids)), seed)
