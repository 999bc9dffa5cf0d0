"""Per-bucket tasks spread evenly over the workers, on a real local cluster
(:func:`bigseg.pipeline.context.placements`), and tasks that share one input taken by the
workers in turn (:func:`bigseg.predict.training.spread`)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from distributed import get_worker, wait

from bigseg.pipeline.context import placements
from bigseg.predict.training import spread


def _where(_x) -> str:
    return get_worker().address


def _buckets(client, homes: list[str]) -> list:
    futs = [
        client.submit(np.arange, 1000 + i, workers=[w], pure=False) for i, w in enumerate(homes)
    ]
    wait(futs)
    return futs


def test_skewed_buckets_are_spread_and_run_where_placed(local_client):
    c = local_client
    a, b = sorted(c.scheduler_info()["workers"])
    # 6 of 8 buckets held by one worker: what stolen short tasks leave behind
    futs = _buckets(c, [a] * 6 + [b] * 2)
    at = placements(c, futs)
    chosen = [p["workers"][0] for p in at]
    assert Counter(chosen) == {a: 4, b: 4}
    assert chosen[6:] == [b, b]  # a worker holding a bucket keeps it while it has room
    ran = c.gather([c.submit(_where, f, pure=False, **p) for f, p in zip(futs, at, strict=True)])
    assert ran == chosen


def test_balanced_buckets_stay_where_they_are(local_client):
    c = local_client
    a, b = sorted(c.scheduler_info()["workers"])
    homes = [a, b] * 4
    futs = _buckets(c, homes)
    assert [p["workers"][0] for p in placements(c, futs)] == homes
    assert all(p["allow_other_workers"] for p in placements(c, futs))


def test_segment_models_take_the_workers_in_turn(local_client):
    """Each task reads all of one large input (as a segment's model reads every
    matrix's selections): Dask alone runs them all where that input lies; spread, they
    run on the workers in turn, from the given one."""
    c = local_client
    workers = tuple(sorted(c.scheduler_info()["workers"]))
    big = c.submit(np.ones, 8_000_000, workers=[workers[0]], pure=False)
    wait(big)
    at = spread(workers, 5, start=1)
    ran = c.gather([c.submit(_where, big, pure=False, **p) for p in at])
    assert ran == [workers[(1 + i) % 2] for i in range(5)]
    assert spread(workers[:1], 3) == [{}, {}, {}]  # one worker: nothing to spread
