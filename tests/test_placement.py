"""Per-bucket tasks spread evenly over the workers, on a real local cluster
(:func:`bigseg.pipeline.context.placements`), tasks that share one input taken by the
workers in turn (:func:`bigseg.predict.training.spread`), and the final global models
chained after the backtest's (:func:`bigseg.predict.training.global_order`)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from distributed import get_worker, wait

from bigseg.pipeline.context import placements
from bigseg.predict.training import TrainPlan, Window, global_order, spread


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


def _timed(seconds: float, after=None) -> tuple[str, float, float]:
    import time

    t0 = time.time()
    time.sleep(seconds)
    return get_worker().address, t0, time.time()


def test_final_global_models_wait_on_the_next_targets_backtest_model(local_client):
    """Each target's backtest model on a worker of its own; each final model on the
    worker meant for the next target's backtest model, started once that one is done
    even where that worker is idle (here the backtest models run on the other workers
    than planned, so only the wait keeps a final model from starting at once)."""
    c = local_client
    workers = tuple(sorted(c.scheduler_info()["workers"]))
    plan = TrainPlan(("churn", "value"), (), None, None, 0, "cpu", (4,), 1, workers)
    first = global_order(plan, None)
    assert [first[t]["workers"] for t in plan.targets] == [[workers[0]], [workers[1]]]
    swapped = {"churn": first["value"], "value": first["churn"]}
    bt = {t: c.submit(_timed, 1.0, pure=False, **swapped[t]) for t in plan.targets}
    order = global_order(plan, Window([], {t: ({"global": f}, None) for t, f in bt.items()}))
    final = {t: c.submit(_timed, 0.05, pure=False, **order[t]) for t in plan.targets}
    ran_bt = {t: f.result() for t, f in bt.items()}
    ran = {t: f.result() for t, f in final.items()}
    for t, nxt in (("churn", "value"), ("value", "churn")):
        assert [ran[t][0]] == first[nxt]["workers"]
        assert ran[t][1] >= ran_bt[nxt][2]  # once the next target's model is done
    # one worker, or one target: nothing placed or chained
    alone = TrainPlan(("churn",), (), None, None, 0, "cpu", (4,), 1, workers[:1])
    assert global_order(alone, None) == {"churn": {}}
    one = TrainPlan(("churn",), (), None, None, 0, "cpu", (4,), 1, workers)
    bt_one = Window([], {"churn": ({"global": bt["churn"]}, None)})
    assert "after" not in global_order(one, bt_one)["churn"]
