"""XGBoost on the cluster: each model trained in one Dask task (:func:`train_task`, so
many models train side by side), ``xgboost.dask`` (:func:`train_dask`) for a model whose
training rows are too many for one worker; prediction per bucket with the booster
loaded from its UBJSON bytes (``xgboost.dask.predict`` over many small partitions is
slow, dmlc/xgboost #5729, and in-place prediction drops the index, #6939: ids travel
beside the features instead).
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import xgboost as xgb

from bigseg.errors import BigsegError, ClusterError, DataError
from bigseg.predict import bins
from bigseg.predict.ranking import average_precision, roc_auc, spearman, top_share
from bigseg.predict.tracker import tracker_in_child

log = logging.getLogger(__name__)

OBJECTIVES = {
    "churn": {"objective": "binary:logistic", "eval_metric": "logloss"},
    "response": {"objective": "binary:logistic", "eval_metric": "logloss"},
    "value": {"objective": "reg:tweedie", "tweedie_variance_power": 1.5, "eval_metric": "rmse"},
}

#: times training starts again after a worker left in the middle of it. xgboost.dask
#: cannot go on without it ("Resilience is not yet supported"): the training task
#: rescheduled elsewhere fails at once (ValueError), and a peer training beside the lost
#: worker fails in its communicator (XGBoostError) or blocks in it until
#: COLLECTIVE_TIMEOUT_S (tests/test_faults.py)
WORKER_LOSS_RETRIES = 1
#: after training failed, how long to wait for the scheduler to notice a dead worker
WORKER_LOSS_GRACE_S = 5.0
#: a collective operation (allreduce between the workers training together) waiting
#: longer than this fails instead of blocking its worker: a peer that died mid-operation
#: otherwise holds the survivors (and their Dask threads) for XGBoost's default 30 min
COLLECTIVE_TIMEOUT_S = 600
#: histogram bins per feature: the global models sample at most max_train_rows (100k)
#: rows, and on those 64 bins trained 30 % faster per tree than XGBoost's 256 with an
#: equal or lower validation loss (300k generated customers, churn and value;
#: benchmarks/HISTORY.md)
MAX_BIN = 64


def params_for(target: str, pcfg, seed: int, device: str) -> dict:
    """Defaults that work without tuning: hist trees, no row/column subsampling (so a
    fixed seed gives a fixed model)."""
    return {
        **OBJECTIVES[target],
        "tree_method": "hist",
        "max_depth": pcfg.max_depth,
        "eta": pcfg.learning_rate,
        "min_child_weight": 5.0,
        "max_bin": MAX_BIN,
        "seed": seed,
        "device": device,
        "verbosity": 0,
    }


def train_dask(
    client,
    parts: list,
    n_features: int,
    params: dict,
    num_boost_round: int,
    early_stopping_rounds: int,
    single_worker_rows: int = 5_000_000,
) -> tuple[bytes, dict]:
    """Train with ``xgboost.dask`` (see :func:`_train_dask_once`); when a worker leaves
    during training, train again on the workers left (up to ``WORKER_LOSS_RETRIES``
    times; lost data blocks are recomputed by Dask), then fail with a ClusterError.
    ``info["worker_loss_retries"]`` counts the restarts."""
    for attempt in range(WORKER_LOSS_RETRIES + 1):
        before = _worker_addresses(client)
        try:
            model, info = _train_dask_once(
                client,
                parts,
                n_features,
                params,
                num_boost_round,
                early_stopping_rounds,
                single_worker_rows,
            )
        except BigsegError:
            raise
        except Exception as e:
            lost = _lost_workers(client, before)
            if not lost:
                raise
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            if attempt == WORKER_LOSS_RETRIES:
                raise ClusterError(
                    f"XGBoost training: worker(s) {', '.join(sorted(lost))} left the cluster "
                    f"during training, {attempt + 1} time(s) in a row; xgboost.dask cannot "
                    f"continue without a worker ({why}). Check the workers' memory and logs."
                ) from e
            log.warning(
                "XGBoost training: worker(s) %s left during training (%s); training "
                "again on the workers left",
                ", ".join(sorted(lost)),
                why,
            )
            continue
        info["worker_loss_retries"] = attempt
        return model, info
    raise AssertionError("unreachable")


def _worker_addresses(client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1).get("workers", {}))


def _lost_workers(client, before: set[str]) -> set[str]:
    """Workers of ``before`` that left the cluster (waiting up to WORKER_LOSS_GRACE_S for
    the scheduler to notice a dead one)."""
    deadline = time.monotonic() + WORKER_LOSS_GRACE_S
    while True:
        lost = before - _worker_addresses(client)
        if lost or time.monotonic() >= deadline:
            return lost
        time.sleep(0.1)


def _train_dask_once(
    client,
    parts: list,
    n_features: int,
    params: dict,
    num_boost_round: int,
    early_stopping_rounds: int,
    single_worker_rows: int,
) -> tuple[bytes, dict]:
    """Train with ``xgboost.dask`` on per-bucket futures of ``(X_train, y_train, X_valid,
    y_valid)``.

    Up to ``single_worker_rows`` training rows, the buckets are concatenated (in bucket
    order) onto one worker, which trains with all the cores of its host: the model is
    then bit-identical whatever the number of workers (XGBoost's hist is deterministic
    across thread counts, but not across data partitionings, whose quantile sketches
    and gradient sums differ). Above it, every worker trains on its own buckets
    (reproducible only for a fixed cluster layout, as XGBoost documents).

    Returns the booster as UBJSON bytes and a small info dict (best iteration, rows).
    """
    import dask.array as da
    from xgboost import dask as dxgb
    from xgboost.collective import Config as CollConfig

    sizes = client.gather(client.map(_sizes, parts, pure=False))
    n_train = int(sum(s[0] for s in sizes))
    if n_train == 0:
        raise DataError("no training rows")
    params = dict(params)
    mode, pin = "distributed", {}
    if n_train <= single_worker_rows:
        mode = "single-worker"
        one = client.submit(_concat_parts, *parts, pure=False)
        client.gather(client.map(_sizes, [one], pure=False))  # wait: `one` now has a home
        (holder,) = client.who_has([one])[one.key][:1]
        pin = {"workers": [holder], "allow_other_workers": True}
        parts, sizes = [one], [(n_train, int(sum(s[1] for s in sizes)))]
        params.setdefault("nthread", _host_threads(client))
    arrays = {}
    for j, name in enumerate(("Xt", "yt", "Xv", "yv")):
        blocks = []
        for f, sz in zip(parts, sizes, strict=True):
            n = sz[j // 2]
            if n == 0:
                continue
            item = client.submit(_item, f, j, pure=False, **pin)
            shape = (n, n_features) if name.startswith("X") else (n,)
            blocks.append(da.from_delayed(item, shape=shape, dtype=np.float32))
        arrays[name] = da.concatenate(blocks) if blocks else None
    dtrain = dxgb.DaskDMatrix(client, arrays["Xt"], arrays["yt"])
    evals = []
    if arrays["Xv"] is not None:
        evals = [(dxgb.DaskDMatrix(client, arrays["Xv"], arrays["yv"]), "valid")]
    with xgb.config_context(verbosity=0), tracker_in_child(client):
        out = dxgb.train(
            client,
            params,
            dtrain,
            num_boost_round=num_boost_round,
            evals=evals,
            early_stopping_rounds=early_stopping_rounds if evals else None,
            verbose_eval=False,
            coll_cfg=CollConfig(timeout=COLLECTIVE_TIMEOUT_S),
        )
    booster = out["booster"]
    best = getattr(booster, "best_iteration", None)
    if best is None or best < 0:
        best = booster.num_boosted_rounds() - 1
    # keep only the trees we use, so the stored model predicts as evaluated
    booster = booster[: best + 1]
    info = {
        "best_iteration": int(best),
        "n_train": n_train,
        "mode": mode,
        "n_valid": int(sum(s[1] for s in sizes)),
    }
    hist = (out.get("history") or {}).get("valid") or {}
    if hist:  # validation loss at the kept iteration (for the optional depth search)
        name, values = next(iter(hist.items()))
        info["valid_" + name] = float(values[min(best, len(values) - 1)])
    return bytes(booster.save_raw("ubj")), info


def train_task(
    params: dict,
    rounds: int,
    early_stopping_rounds: int,
    *parts,
    init=None,
    pick=None,
    cuts=None,
    after=None,
) -> tuple[bytes, dict]:
    """One XGBoost model on the concatenated parts (in bucket order), in the worker that
    runs this task, with ``params["nthread"]`` threads (default 1: models train side by
    side, one per Dask thread). XGBoost's hist is deterministic, so the model depends on
    the rows alone, not on the worker or the thread count.

    ``init``: a model (UBJSON bytes, or the ``(bytes, info)`` result of another
    ``train_task``) to continue boosting from, with up to ``rounds`` more trees: a
    segment's model is the global model refined on that segment's customers.

    Returns the booster (only the trees up to the best validation iteration) as UBJSON
    bytes and an info dict (best iteration, rows, validation loss at the best
    iteration).

    ``pick``: the parts are dicts of several models' parts
    (:func:`~bigseg.predict.segmented.select_many`); this model's are under ``pick``
    (not ``key``: Dask's ``submit`` takes that for the task's name).

    ``cuts``: the histogram bins (:func:`bigseg.predict.bins.cut_rows`) to train on;
    ``"exact"``: those of this model's own training rows, returned in the info under
    ``"cuts"`` (for its refinements; :func:`~bigseg.predict.training.collect` leaves
    them out of the reports); None: the cuts of ``init`` where its info holds them (a
    refinement of a model trained on exact cuts), else XGBoost sketches its own.

    ``after`` is not read: futures passed there only make this task wait for theirs
    (:func:`bigseg.predict.training.global_order`)."""
    t0 = time.perf_counter()
    if pick is not None:
        parts = tuple(p[pick] for p in parts)
    Xt, yt, Xv, yv = _concat_parts(*parts)
    if len(yt) == 0:
        raise DataError("no training rows")
    params = {"nthread": 1, "max_bin": MAX_BIN, **params}
    own = None
    if isinstance(cuts, str):
        if cuts != "exact":
            raise ValueError(f"cuts={cuts!r}: an array, 'exact' or None")
        cuts = own = bins.cut_rows(Xt, params["max_bin"])
    elif cuts is None and isinstance(init, tuple):
        cuts = init[1].get("cuts")
    base = None
    if init is not None:
        base = xgb.Booster(model_file=bytearray(init[0] if isinstance(init, tuple) else init))
    nthread = params["nthread"]
    if cuts is not None:
        dtrain = bins.quantized(Xt, yt, cuts, params["max_bin"], nthread)
    elif base is None:
        dtrain = xgb.QuantileDMatrix(Xt, label=yt, max_bin=params["max_bin"], nthread=nthread)
    else:
        # a model trained on cuts not known here (xgboost.dask's): raw values, as a
        # QuantileDMatrix of other cuts would send rows down the wrong branches of the
        # initial model's splits, and the new trees fit the residuals of wrong predictions
        dtrain = xgb.DMatrix(Xt, label=yt, nthread=nthread)
    dvalid = xgb.DMatrix(Xv, label=yv, nthread=nthread) if len(yv) else None
    # raw values too (above): a QuantileDMatrix with ``ref=dtrain`` gives the same
    # predictions to a model trained from scratch, but evaluating it each round cost 40 %
    # of a churn model's training time (xgboost 3.2; benchmarks/HISTORY.md)
    evals = [(dvalid, "valid")] if dvalid is not None else []
    history: dict = {}
    with xgb.config_context(verbosity=0):
        b = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=evals,
            early_stopping_rounds=early_stopping_rounds if evals else None,
            evals_result=history,
            verbose_eval=False,
            xgb_model=base,
        )
    b, best, metric, loss = _kept(b, base, dvalid, history)
    info = {
        "best_iteration": int(best),
        "n_train": int(len(yt)),
        "n_valid": int(len(yv)),
        "mode": "task" if base is None else "refined global",
        "nthread": int(params["nthread"]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if base is not None:
        info["trees_added"] = int(best + 1 - base.num_boosted_rounds())
    if metric is not None:  # validation loss at the kept iteration (for the depth search)
        info["valid_" + metric] = loss
    if own is not None:
        info["cuts"] = own
    return bytes(b.save_raw("ubj")), info


def _kept(b, base, dvalid, history: dict):
    """``(booster, best iteration, metric, its validation value)`` of the trees kept: up
    to the best validation iteration, or none of a refinement's when no new tree beat
    the initial model on the validation rows (XGBoost's early stopping keeps at least
    the first new tree, even when it made the validation loss worse). The metrics of
    :data:`OBJECTIVES` are losses: lower is better."""
    best = getattr(b, "best_iteration", None) if dvalid is not None else None
    if best is None or best < 0:
        best = b.num_boosted_rounds() - 1
    start = base.num_boosted_rounds() if base is not None else 0
    hist = history.get("valid") or {}
    if not hist:
        return b[: best + 1], best, None, None
    metric, values = next(iter(hist.items()))
    value = float(values[min(best - start, len(values) - 1)])
    if base is not None:
        base.set_param({"eval_metric": metric})
        before = float(base.eval(dvalid, "valid").rsplit(":", 1)[1])
        if value >= before:
            return base, start - 1, metric, before
    # only the trees used, so the stored model predicts as evaluated
    return b[: best + 1], best, metric, value


def _concat_parts(*parts) -> tuple:
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(4))


def _host_threads(client) -> int:
    """Dask threads of all workers on the host of the first worker (their cores are idle
    while XGBoost trains)."""
    workers = client.scheduler_info().get("workers", {}).values()
    by_host: dict[str, int] = {}
    for w in workers:
        by_host[w.get("host", "")] = by_host.get(w.get("host", ""), 0) + int(w.get("nthreads", 1))
    return max(by_host.values(), default=1)


def _sizes(p) -> tuple[int, int]:
    return int(p[0].shape[0]), int(p[2].shape[0])


def _item(p, j: int):
    return p[j]


_BOOSTERS: dict[str, xgb.Booster] = {}


def _booster(model: bytes) -> xgb.Booster:
    key = hashlib.sha256(model).hexdigest()
    b = _BOOSTERS.get(key)
    if b is None:
        b = xgb.Booster()
        b.load_model(bytearray(model))
        b.set_param({"nthread": 1})
        if len(_BOOSTERS) >= 64:  # a backtest loads 8 models (global + 7) per target
            _BOOSTERS.clear()
        _BOOSTERS[key] = b
    return b


def predict_block(X: np.ndarray, model: bytes) -> np.ndarray:
    """Predictions of the booster stored in ``model`` (UBJSON bytes) for the rows of X."""
    if X.shape[0] == 0:
        return np.zeros(0, np.float32)
    return _booster(model).inplace_predict(X).astype(np.float32)


def evaluate_binary(y: np.ndarray, p: np.ndarray) -> dict:
    """ROC-AUC, PR-AUC, Brier, lift and capture in the top 10% for a binary target."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    out = {"n": int(len(y)), "positive_rate": float(y.mean()) if len(y) else None}
    if len(y) == 0 or y.all() or not y.any():
        return out
    top = top_share(p, 0.1)
    out.update(
        auc=roc_auc(y, p),
        pr_auc=average_precision(y, p),
        brier=float(np.mean((p - y) ** 2)),
        lift_top10=float(y[top].mean() / y.mean()),
        capture_top10=float(y[top].sum() / y.sum()),
    )
    return out


def evaluate_value(y: np.ndarray, p: np.ndarray) -> dict:
    """MAE, RMSE, Spearman correlation and top-decile capture for spend predictions."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) < 2:
        return {"n": int(len(y))}
    top = top_share(p, 0.1)
    pos = np.clip(y, 0, None)
    return {
        "n": int(len(y)),
        "mae": float(np.abs(y - p).mean()),
        "rmse": float(np.sqrt(((y - p) ** 2).mean())),
        "spearman": spearman(y, p),
        "capture_top10": float(pos[top].sum() / pos.sum()) if pos.sum() > 0 else None,
    }
