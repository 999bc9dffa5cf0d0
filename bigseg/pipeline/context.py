"""The frozen context every stage runs in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from bigseg.backend import Backend
from bigseg.config import RunConfig
from bigseg.errors import DataError
from bigseg.features import tasks as ftasks
from bigseg.features import to_us
from bigseg.features.bucket import CUTOFFS, Cutoff
from bigseg.io.layout import Layout
from bigseg.io.output import Output
from bigseg.progress import gather
from bigseg.store import Store, open_store


@dataclass(frozen=True)
class RunContext:
    """Config, cluster, device, output and dates of one run.

    ``output`` is the committed state plus what this run wrote (read datasets through it);
    ``layout`` names the paths under this run's own prefix ``runs/<run_id>/`` (write
    there). ``as_of`` is the config's, or the day of the last transaction in the store.
    ``score_only``: features are needed at ``as_of`` only (a scheduled ``bigseg score``).
    ``model_version``: the published version a score-only run scores with (None:
    ``LATEST``).
    """

    cfg: RunConfig
    client: Any
    backend: Backend
    output: Output
    layout: Layout
    store: Store
    as_of: dt.date
    score_only: bool = False
    model_version: str | None = None

    @classmethod
    def open(
        cls,
        cfg: RunConfig,
        client,
        backend: Backend,
        output: Output,
        *,
        score_only: bool = False,
        model_version: str | None = None,
    ) -> RunContext:
        store = open_store(output)
        as_of = cfg.as_of if cfg.as_of is not None else _last_day(client, store)
        return cls(
            cfg, client, backend, output, output.layout, store, as_of, score_only, model_version
        )

    @property
    def out(self):
        """The output's root (messages, and the feature cache kept across runs)."""
        return self.output.root

    @property
    def as_of_from_data(self) -> bool:
        return self.cfg.as_of is None

    @property
    def n_buckets(self) -> int:
        return self.store.n_buckets

    def cutoffs(self) -> dict[Cutoff, int]:
        """Each cutoff as microseconds since the epoch: ``as_of`` and ``n`` horizons
        before it, for ``n`` up to one more than the stacked training windows (the
        backtest's stack ends one window further back)."""
        h = dt.timedelta(days=self.cfg.horizon_days)
        n = self.cfg.prediction.training_windows + 1
        return {c: to_us(self.as_of - i * h) for i, c in enumerate(CUTOFFS[: n + 1])}

    def submit(self, fn, *args, **kwargs):
        """One task; never cached by key (``pure=False``): tasks read files."""
        return self.client.submit(fn, *args, pure=False, **kwargs)

    def map_buckets(self, fn, over: list, *args, desc: str | None = None, bar: bool = False):
        """``fn(x, *args)`` for every ``x`` of ``over`` (per-bucket futures, or bucket
        numbers). Returns the futures, or with ``desc`` the gathered results."""
        futs = [self.submit(fn, x, *args) for x in over]
        return futs if desc is None else gather(self.client, futs, desc, bar=bar)

    def gather(self, futs: list, desc: str, bar: bool = False) -> list:
        return gather(self.client, futs, desc, bar=bar)

    def workers(self) -> tuple[str, ...]:
        """The cluster's worker addresses, sorted."""
        return tuple(sorted(self.client.scheduler_info().get("workers", {})))

    def placed(self, futs: list) -> list[dict]:
        """:func:`placements` of ``futs`` on this run's cluster."""
        return placements(self.client, futs)


def placements(client, futs: list) -> list[dict]:
    """Per future of ``futs``, the ``submit`` keywords that run its task on a given
    worker: one already holding its data while that worker has less than its even
    share of the tasks, else the worker with the fewest.

    Dask places a task where most of its input lies. A short per-bucket task stolen
    by an idle worker (CLV columns while the other worker fits a cutoff, the
    backtest's predictions) moves that bucket's features, so the features ended up
    on one worker for 5-6 of 8 buckets, and the score stage's tasks, on ~40-100 MB
    of features each, followed them and were never stolen back (300k and 1M
    customers, profiled: one worker idle for 1-2 tasks' time). Moving a bucket
    costs far less than its task. The restriction is loose: another worker takes
    the task if that one is gone."""
    workers = sorted(client.scheduler_info().get("workers", {}))
    if len(workers) < 2 or not futs:
        return [{} for _ in futs]
    who = client.who_has(futs)
    holders = [[w for w in sorted(who.get(f.key, ())) if w in workers] for f in futs]
    share = -(-len(futs) // len(workers))
    load = dict.fromkeys(workers, 0)
    at: list[str | None] = [None] * len(futs)
    for i in sorted(range(len(futs)), key=lambda i: len(holders[i])):
        free = [w for w in holders[i] if load[w] < share]
        if free:
            at[i] = min(free, key=load.__getitem__)
            load[at[i]] += 1
    for i in (i for i in range(len(futs)) if at[i] is None):
        at[i] = min(workers, key=load.__getitem__)
        load[at[i]] += 1
    return [{"workers": [w], "allow_other_workers": True} for w in at]


def _last_day(client, store: Store) -> dt.date:
    days = gather(
        client,
        [client.submit(ftasks.max_timestamp, store, k, pure=False) for k in range(store.n_buckets)],
        "find last date",
    )
    found = [v for v in days if v is not None]
    if not found:  # every customer erased: no last date to default as_of to
        raise DataError(
            f"{store.root}: the store holds no transactions (every customer in it was "
            "erased): nothing to compute. Ingest data first (`bigseg ingest`)"
        )
    m = max(found)
    return dt.date.fromisoformat(str(np.datetime64(m, "us").astype("datetime64[D]")))
