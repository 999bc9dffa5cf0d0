"""Blocks resident on workers: results in block order, actor hosts, recovery from a lost
worker, realignment of arrays that arrive unaligned."""

from __future__ import annotations

import numpy as np
import pytest

from bigseg.segment.blocks import Blocks, _aligned


def _row_sum(b):
    return float(np.asarray(b, dtype=np.float64).sum())


def _boom(b):
    raise ValueError("bad block")


def test_results_come_back_in_block_order_through_hosts(local_client):
    parts = [np.full((10, 2), i, np.float32) for i in range(6)]
    blocks = Blocks(local_client.scatter(parts), local_client)
    assert blocks.map(_row_sum) == [20.0 * i for i in range(6)]
    assert blocks._actors is not None and len(blocks._actors) == 2  # one host per worker
    assert blocks.map(_row_sum) == [20.0 * i for i in range(6)]


def test_an_error_of_the_mapped_function_is_raised_as_is(local_client):
    blocks = Blocks(local_client.scatter([np.zeros((3, 2))]), local_client)
    with pytest.raises(ValueError, match="bad block"):
        blocks.map(_boom)


@pytest.mark.slow
def test_a_lost_worker_is_survived(local_client, caplog):
    import os

    import dask.array as da

    X = da.arange(40_000, chunks=5_000, dtype="float64").reshape(-1, 2)
    futs = local_client.compute(list(X.to_delayed().ravel()))
    blocks = Blocks(futs, local_client)
    want = blocks.map(_row_sum)
    victim = sorted(blocks._by_worker())[0]
    local_client.run(os._exit, 1, workers=[victim], on_error="ignore")  # nanny restarts it
    with caplog.at_level("WARNING", logger="bigseg.segment.blocks"):
        assert blocks.map(_row_sum) == want  # lost blocks recomputed elsewhere, same order
    assert "block host lost" in caplog.text
    assert blocks.map(_row_sum) == want  # and hosts rebuilt
    local_client.wait_for_workers(2, timeout=60)  # the session's cluster, whole for the next test


def test_unaligned_arrays_are_copied_aligned():
    raw = np.zeros(16 * 4 + 1, np.uint8)
    un = np.frombuffer(raw.data, dtype=np.float32, count=16, offset=1).reshape(4, 4)
    assert un.ctypes.data % 16 != 0
    al = _aligned(un)
    assert al.ctypes.data % 16 == 0 and np.array_equal(al, un)
    ok = np.ones((4, 4), np.float32)
    assert _aligned(ok) is ok
