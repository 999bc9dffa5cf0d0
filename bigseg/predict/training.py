"""Submitting the XGBoost models of one cutoff to the cluster.

The Dask layer only places data and calls the single-node trainer
(:func:`bigseg.predict.xgb.train_task`), or ``xgboost.dask`` when a sample is too large
for one worker. Every model of every target and cutoff is submitted before any is
awaited, so they train side by side, one per Dask thread; a segment's model starts from
its global model (boosted further on the segment's rows) as soon as that one is done.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bigseg.errors import DataError
from bigseg.features.bucket import Cutoff
from bigseg.features.sample import share_within
from bigseg.predict import segmented
from bigseg.predict.xgb import params_for, train_dask, train_task
from bigseg.progress import gather
from bigseg.segment.fitted import FittedSegmenter

#: share of the training customers held out for early stopping
VALID_FRACTION = 0.15


@dataclass(frozen=True)
class TrainPlan:
    """What every model of a run is trained with: the targets, the model matrix's
    columns, the segmenter that gives each row its segment, the prediction config, the
    seed, the XGBoost device, the candidate tree depths, the threads per model and the
    workers' addresses (the segment models are spread over them: :func:`spread`)."""

    targets: tuple[str, ...]
    features: tuple[str, ...]
    seg: FittedSegmenter
    pcfg: object
    seed: int
    device: str
    depths: tuple[int, ...]
    nthread: int
    workers: tuple[str, ...] = ()

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.seg.ids]


@dataclass(frozen=True)
class Window:
    """The models submitted on one stack of cutoffs: per-bucket ``rows`` futures (the
    matrices of every cutoff of the stack, held while their models train) and per
    target ``(fits, refine)``, where ``fits`` maps ``"global"`` (and, once refined, segment
    ids) to a future of, or the value, ``(UBJSON bytes, info)``, and ``refine(segment
    ids)`` submits those segments' models and returns them as ``{id: future}``."""

    rows: list
    fits: dict[str, tuple[dict, Callable]]


#: Dask priorities (higher runs first among tasks ready to run): the matrices and each
#: model's rows before any model, so the client learns the row counts without waiting
#: behind a training task and every global model can start at once
ROWS_PRIORITY = 10
#: the backtest's models and predictions before the final cutoff's models among ready
#: tasks: the client's choice per segment waits on the former, and the latter fill any
#: worker the backtest leaves idle (:func:`global_order` keeps them from taking a
#: worker the backtest's global models are queued on)
BACKTEST_PRIORITY = 1


def _key(kind: str) -> str:
    """A task key whose prefix says which kind of model it trains: Dask estimates a
    task's duration per prefix, and a global model takes 10-20x a segment's refinement
    (300k customers: ~1-2 s against ~0.15 s). Under one prefix the scheduler took a
    global model for a short task, left it queued behind another on a busy worker while
    the other worker idled, and did not steal it (profiled: ~2 s idle in a 7.5 s stage)."""
    return f"{kind}-{uuid.uuid4().hex}"


def spread(workers: tuple[str, ...], n: int, start: int = 0) -> list[dict]:
    """``submit`` keywords placing ``n`` tasks on ``workers`` in turn, from the
    ``start``-th (loosely: another worker takes a task whose worker is gone).

    A segment's model reads every matrix's selections, whole dicts holding the global
    sample too; Dask places each model where most of those bytes lie, and once the
    first model has fetched the other worker's half, that is always the same worker: it
    trained the final cutoff's segment models one after another while the other idled
    (1M customers, profiled: ~1 s of a 10 s stage). Fetching the half once per worker
    costs far less."""
    if len(workers) < 2:
        return [{} for _ in range(n)]
    return [
        {"workers": [workers[(start + i) % len(workers)]], "allow_other_workers": True}
        for i in range(n)
    ]


def global_order(plan: TrainPlan, backtest: Window | None) -> dict[str, dict]:
    """Per target, the ``submit`` keywords of a window's global model: each target's
    backtest model on a worker of its own, in turn; each final model placed on the
    worker of the next target's backtest model and started after it (``after``).

    A worker's tasks do not preempt one another: a final model (needed only once the
    backtest has chosen) whose bins were ready first took the worker the backtest's
    longest model was then queued on, while the other worker idled (300k customers,
    profiled: the backtest's churn model done ~1.5 s late). Chained, a worker starts a
    final model only once it has trained a backtest model, and the two models a worker
    trains are of different targets (a long one with a short one where the targets
    differ in cost, as churn and value do). Train stage medians: 5.59 -> 5.39 s at 300k
    customers (10 runs each), 9.19 -> 9.06 s at 1M (8). With one worker or one target
    there is nothing to pair: Dask places the models."""
    workers, targets = plan.workers, plan.targets
    if len(workers) < 2 or len(targets) < 2:
        return {t: {} for t in targets}
    where = dict(zip(targets, spread(workers, len(targets)), strict=True))
    if backtest is None:
        return where
    out = {}
    for i, t in enumerate(targets):
        nxt = targets[(i + 1) % len(targets)]
        model = backtest.fits[nxt][0]["global"]
        after = {} if isinstance(model, tuple) else {"after": [model]}
        out[t] = {**where[nxt], **after}
    return out


def submit_rows(
    client, buckets: list, cutoffs: list[Cutoff], plan: TrainPlan, older: float = 1.0
) -> tuple[list, list]:
    """Futures of the :func:`~bigseg.predict.segmented.model_rows` matrices of every
    cutoff of a stack (bucket order within each cutoff, the latest cutoff first), and
    of their :func:`~bigseg.predict.segmented.row_counts`. The older cutoffs' matrices
    hold only the share ``older`` of the customers: memory stays bounded by the sample,
    not by customers times windows."""
    rows = [
        client.submit(
            segmented.model_rows,
            f,
            cutoff,
            list(plan.targets),
            VALID_FRACTION,
            plan.seed,
            list(plan.features),
            plan.seg,
            1.0 if i == 0 else older,
            priority=ROWS_PRIORITY,
            pure=False,
        )
        for i, cutoff in enumerate(cutoffs)
        for f in buckets
    ]
    counts = [
        client.submit(segmented.row_counts, r, plan.ids, priority=ROWS_PRIORITY, pure=False)
        for r in rows
    ]
    return rows, counts


def submit_window(
    client,
    buckets: list,
    cutoffs: list[Cutoff],
    plan: TrainPlan,
    rows: list,
    cnt: list,
    weight: float = 1.0,
    latest: float = 1.0,
    priority: int = 0,
    order: dict[str, dict] | None = None,
) -> Window:
    """Submit the global model of every target trained on the stacked cutoffs (each
    row a customer at one cutoff, features and labels relative to it), from the
    matrices ``rows`` of :func:`submit_rows`, built once for all of them, and their
    row counts ``cnt``. A customer's sampling number and validation split are the same
    at every cutoff, so no customer trains and validates. Each row of an older cutoff
    stands for ``weight`` customers of the stack the samples are drawn from, each row
    of the latest for ``latest`` (above 1 where its frames hold a share of its
    customers). Every model of the window runs at Dask ``priority``, its global models
    placed and ordered by ``order`` (per target, from :func:`global_order`)."""
    weights = [latest if i < len(buckets) else weight for i in range(len(rows))]
    counts = list(zip(cnt, weights, strict=True))
    order = order or {}
    fits = {
        t: _submit_target(client, t, cutoffs[0], rows, counts, plan, priority, order.get(t, {}))
        for t in plan.targets
    }
    return Window(rows, fits)


def _submit_target(
    client, target: str, cutoff: str, rows: list, cnt: list, plan: TrainPlan, priority: int,
    order: dict,
):  # fmt: skip
    """The global model of one target (:func:`_global_model`, at Dask ``priority`` as are
    its refinements, submitted with ``order``) and its ``refine``; ``cnt``: per matrix, its
    :func:`~bigseg.predict.segmented.row_counts` and the customers each of its rows
    stands for."""
    pcfg = plan.pcfg
    params = params_for(target, pcfg, plan.seed, plan.device)

    def total(key) -> tuple[int, int]:
        """Labelled rows and positives of the whole stack (thinned windows scaled up):
        a sample's share is of these, so every window is sampled at one rate."""
        return (
            round(sum(x[target][key][0] * w for x, w in cnt)),
            round(sum(x[target][key][1] * w for x, w in cnt)),
        )

    n, pos = total(None)
    if n == 0:
        raise DataError(f"no training rows for {target!r} at the {cutoff} cutoff")
    if pcfg.balance_classes and target in segmented.BINARY and 0 < pos < n:
        params["scale_pos_weight"] = (n - pos) / pos  # negatives per positive

    def enough(s) -> bool:
        rows_s, pos_s = total(s)
        return rows_s >= segmented.MIN_SEGMENT_ROWS and (
            target not in segmented.BINARY
            or min(pos_s, rows_s - pos_s) >= segmented.MIN_SEGMENT_CLASS
        )

    frac = share_within(n, pcfg.max_train_rows)
    sampled = n if frac == 1.0 else pcfg.max_train_rows
    # every model's rows of a matrix in one task: the segments a refinement may ask
    # for later are known now, and their samples are small (segment_max_train_rows)
    specs = {
        "global": (None, frac),
        **{s: (s, share_within(total(s)[0], pcfg.segment_max_train_rows))
           for s in plan.ids if enough(s)},
    }  # fmt: skip
    picked = [
        client.submit(segmented.select_many, r, target, specs, priority=ROWS_PRIORITY, pure=False)
        for r in rows
    ]
    # one worker trains the global model on the exact cuts of its rows, found in its
    # task, and its refinements on the same (bigseg.predict.bins: they take them from the
    # global model's result); xgboost.dask sketches its own
    cuts = "exact" if sampled <= pcfg.single_worker_max_rows else None
    out = {"global": _global_model(client, params, picked, sampled, plan, priority, cuts, order)}
    if isinstance(out["global"], tuple):
        params["max_depth"] = out["global"][1]["max_depth"]

    def refine(segs) -> dict:
        """Submit the models of segments ``segs`` that have enough rows: the global
        model (a future, or its value) boosted further on the segment's rows."""
        base = out["global"]
        segs = [s for s in segs if s in specs]
        where = spread(plan.workers, len(segs), plan.targets.index(target))
        return {
            s: client.submit(
                train_task,
                params,
                pcfg.segment_rounds,
                pcfg.early_stopping_rounds,
                *picked,
                init=base,  # its bytes, and its cuts where it found them
                pick=s,
                key=_key("train_segment"),
                priority=priority,
                **at,
            )
            for s, at in zip(segs, where, strict=True)
        }

    return out, refine


def _global_model(
    client, params: dict, picked: list, sampled: int, plan: TrainPlan, priority=0, cuts=None,
    order=None,
):  # fmt: skip
    """A future of the global model trained in one task; or, for a sample too large for
    one worker (``xgboost.dask``) or a search over tree depths, the value
    ``(UBJSON bytes, info)`` of the depth with the lowest validation loss. ``picked``:
    per matrix, the :func:`~bigseg.predict.segmented.select_many` future holding the
    sample under ``"global"``; ``cuts``: how a model trained in one task bins its rows
    (:func:`~bigseg.predict.xgb.train_task`);
    ``order``: the one task's placement and ``after`` (:func:`global_order`)."""
    pcfg = plan.pcfg
    big = sampled > pcfg.single_worker_max_rows
    if not big and len(plan.depths) == 1:
        return client.submit(
            train_task,
            {**params, "nthread": plan.nthread},
            pcfg.n_estimators,
            pcfg.early_stopping_rounds,
            *picked,
            pick="global",
            cuts=cuts,
            key=_key("train_global"),
            priority=priority,
            **(order or {}),
        )
    if big:  # xgboost.dask places one part per matrix
        sample = [client.submit(operator.getitem, p, "global", pure=False) for p in picked]
    tried = []
    for depth in plan.depths:
        p = {**params, "max_depth": depth}
        if big:
            model, info = train_dask(
                client,
                sample,
                len(plan.features),
                p,
                pcfg.n_estimators,
                pcfg.early_stopping_rounds,
                pcfg.single_worker_max_rows,
            )
        else:
            model, info = client.submit(
                train_task,
                {**p, "nthread": plan.nthread},
                pcfg.n_estimators,
                pcfg.early_stopping_rounds,
                *picked,
                pick="global",
                cuts=cuts,
                pure=False,
            ).result()
        loss = next((v for k, v in info.items() if k.startswith("valid_")), np.inf)
        tried.append((loss, depth, model, info))
    loss, depth, model, info = min(tried, key=lambda t: (t[0], t[1]))
    info = {**info, "max_depth": depth}
    if len(tried) > 1:
        info["search"] = [{"max_depth": d, "valid_loss": float(lo)} for lo, d, _, _ in tried]
    return model, info


def collect(client, submitted: dict, what: str) -> tuple[dict, dict]:
    """``({key: UBJSON bytes}, {key: info})`` of one target's submitted models (global
    under ``"global"``, segment models under their id; infos keyed by ``str(id)``)."""
    keys = list(submitted)
    futs = [k for k in keys if not isinstance(submitted[k], tuple)]
    done = dict(zip(futs, gather(client, [submitted[k] for k in futs], what), strict=True))
    models, infos = {}, {}
    for k in keys:
        model, info = submitted[k] if k not in done else done[k]
        info = {i: v for i, v in info.items() if i != "cuts"}  # an array, for refinements
        models[k], infos["global" if k == "global" else str(k)] = model, info
    return models, infos


def submit_backtest_rows(
    client,
    buckets: list,
    rows: list,
    cutoff: Cutoff,
    fits: dict,
    fraction: float,
    where: list[dict] | None = None,
) -> list:
    """Futures of every backtest model's predictions on the matrices of ``cutoff`` (those
    the final models train on), per bucket (:func:`gather_backtest`): submitted with
    the models' futures (``fits``: per target, ``{key: future or (bytes, info)}``), so
    they run as soon as the models are done, ahead of lower-priority tasks. ``where``:
    per bucket, the ``submit`` keywords placing its task (e.g.
    :func:`bigseg.pipeline.context.placements`)."""
    where = where or [{} for _ in buckets]
    return [
        client.submit(
            _backtest_rows,
            f,
            r,
            cutoff,
            fits,
            fraction,
            priority=BACKTEST_PRIORITY,
            pure=False,
            **at,
        )
        for f, r, at in zip(buckets, rows, where, strict=True)
    ]


def _backtest_rows(res, rows: dict, cutoff: Cutoff, fits: dict, fraction: float) -> dict:
    models = {t: {k: v[0] for k, v in ms.items()} for t, ms in fits.items()}
    return segmented.backtest_rows(res, rows, cutoff, models, fraction)


def gather_backtest(client, futures: list) -> tuple[dict, list]:
    """The backtest predictions concatenated over the buckets, and the customer ids per
    bucket."""
    res = gather(client, futures, "backtest")
    cat = {key: np.concatenate([r[key] for r in res]) for key in res[0]}
    return cat, [r["customer_id"] for r in res]
