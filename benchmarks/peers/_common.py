"""Shared by the end-to-end peer scripts: arguments, the stage clock, the result file and
the modelling half (segment, train, score, write) that the pandas and DuckDB scripts share.

Model choices mirror bigseg's defaults so that every tool fits the same models:

* segmentation: log1p of the skewed features, ``StandardScaler``, ``KMeans(k=7,
  n_init=3, max_iter=100)`` on recency, purchase rate, mean order value and tenure
  (bigseg's ``SEGMENT_FEATURES``), fitted at ``as_of``;
* churn (no purchase in ``(cutoff, cutoff + horizon]``): XGBoost ``binary:logistic``;
  value (net spend in the horizon, clipped at 0): XGBoost ``reg:tweedie`` (power 1.5);
  both hist trees, depth 4, eta 0.1, min_child_weight 5, up to 300 rounds with early
  stopping (20) on a random 15 % validation split, every feature plus the segment
  one-hot, trained on features at ``as_of - horizon`` with labels from the horizon after it;
* scoring at ``as_of``: ``customer_id``, ``segment``, ``churn_probability``,
  ``value_prediction`` written to Parquet.

Two switches swap one library of the modelling half, for the per-stage suites:
``--kmeans dask-ml`` (or ``cuml``) fits the K-Means with dask-ml on a local Dask cluster
(cuML on the GPU), ``--trainer xgboost.dask`` trains the boosters with ``xgboost.dask`` on a
local Dask cluster instead of single-process XGBoost; the cluster's start-up is timed as
``cluster_start``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

STAGES = ("load", "features", "segment", "train", "score", "write")
SEGMENT_FEATURES = ["recency_days", "purchase_rate", "monetary_mean", "tenure_days"]
SKEWED = {
    "recency_days",
    "frequency",
    "monetary_total",
    "monetary_mean",
    "monetary_max",
    "tenure_days",
    "purchase_rate",
    "count_90d",
    "spend_90d",
}
#: count-like features: a customer with no rows in that table truly has zero
ZERO_WHEN_ABSENT = (
    "active_days_90d",
    "sessions_90d",
    "page_views_90d",
    "app_opens_90d",
    "events_total",
    "campaign_sends",
    "campaign_sends_90d",
)
K = 7
VALID_FRACTION = 0.15
DAY_US = 86_400 * 1_000_000
RATE_PRIOR_DAYS = 30.0
XGB_PARAMS = {
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.1,
    "min_child_weight": 5.0,
    "max_bin": 256,
    "seed": 0,
    "verbosity": 0,
}
OBJECTIVES = {
    "churn": {"objective": "binary:logistic", "eval_metric": "logloss"},
    "value": {"objective": "reg:tweedie", "tweedie_variance_power": 1.5, "eval_metric": "rmse"},
}
N_ROUNDS, EARLY_STOP = 300, 20
KMEANS_IMPLS = ("sklearn", "dask-ml", "cuml")
TRAINERS = ("xgboost", "xgboost.dask")


def cores() -> int:
    return len(os.sched_getaffinity(0))


def parse_args(tool: str, argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=f"end-to-end peer: {tool}")
    ap.add_argument("--data", required=True, help="directory with raw/<table>/ Parquet")
    ap.add_argument("--as-of", required=True, help="scoring date YYYY-MM-DD")
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--out", required=True, help="timings JSON to write")
    ap.add_argument(
        "--scores",
        default=None,
        help="scores Parquet (default: next to --out, <stem>-scores.parquet)",
    )
    ap.add_argument(
        "--until",
        choices=STAGES,
        default="write",
        help="stop after this stage (the per-stage suites)",
    )
    ap.add_argument(
        "--features-out",
        default=None,
        help="also write the scoring cutoff's features here (Parquet; to check that the "
        "peers compute the same features)",
    )
    ap.add_argument(
        "--kmeans",
        choices=KMEANS_IMPLS,
        default="sklearn",
        help="K-Means of the segment stage: scikit-learn in this process, dask-ml's KMeans "
        "on a local Dask cluster, or cuML's on the GPU",
    )
    ap.add_argument(
        "--trainer",
        choices=TRAINERS,
        default="xgboost",
        help="train stage: single-process XGBoost, or xgboost.dask on a local Dask cluster",
    )
    a = ap.parse_args(argv)
    a.raw = Path(a.data) / "raw"
    out = Path(a.out)
    a.scores = Path(a.scores) if a.scores else out.with_name(out.stem + "-scores.parquet")
    day = np.datetime64(a.as_of, "D")
    a.score_cut = int((day + 1).astype("datetime64[us]").astype(np.int64)) - 1
    a.train_cut = a.score_cut - a.horizon * DAY_US
    return a


class Clock:
    """Wall seconds per stage; :meth:`done` says whether ``--until`` was reached."""

    def __init__(self, tool: str, args: argparse.Namespace):
        self.tool, self.args = tool, args
        self.stages: dict[str, float] = {}
        self.info: dict = {}
        self.t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        yield
        # a stage run twice (e.g. a second cluster_start) counts both times
        self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t, 3)
        print(f"{self.tool}: {name} {self.stages[name]:.2f}s", file=sys.stderr, flush=True)

    def done(self) -> bool:
        return self.args.until in self.stages

    def write(self, versions: tuple[str, ...]) -> None:
        libs = {"python": platform.python_version()}
        a = self.args
        if (
            getattr(a, "kmeans", "sklearn") == "dask-ml"
            or getattr(a, "trainer", "") == "xgboost.dask"
        ):
            versions = (*versions, "dask", "distributed")
        if getattr(a, "kmeans", "sklearn") in ("dask-ml", "cuml"):
            versions = (*versions, a.kmeans)
        for p in versions:
            try:
                libs[p] = metadata.version(p)
            except metadata.PackageNotFoundError:
                pass
        res = {
            "tool": self.tool,
            "status": "ok",
            "stages": self.stages,
            "total": round(sum(self.stages.values()), 3),
            "wall_s": round(time.perf_counter() - self.t0, 3),
            "as_of": self.args.as_of,
            "horizon_days": self.args.horizon,
            "until": self.args.until,
            "libraries": libs,
            **self.info,
        }
        if "write" in self.stages:
            res["scores"] = str(self.args.scores)
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")


def dump_features(args: argparse.Namespace, score_f) -> None:
    """With ``--features-out``: the scoring cutoff's features (a pandas frame with
    ``customer_id``), columns sorted and rows by customer, as Parquet (not timed)."""
    if not args.features_out:
        return
    cols = ["customer_id"] + sorted(c for c in score_f.columns if c != "customer_id")
    write_scores(
        score_f[cols].sort_values("customer_id").reset_index(drop=True), Path(args.features_out)
    )


# ---------------------------------------------------------------- modelling (pandas frames)
def segment_matrix(f):
    """log1p of the skewed segmentation features (the input of the scaler)."""
    X = f[SEGMENT_FEATURES].to_numpy(np.float64, na_value=np.nan, copy=True)
    for j, c in enumerate(SEGMENT_FEATURES):
        if c in SKEWED:
            X[:, j] = np.log1p(np.maximum(X[:, j], 0))
    return np.nan_to_num(X)


def _kmeans(impl: str, client):
    """An unfitted K-Means of the chosen implementation (same k, iterations, tolerance)."""
    if impl == "dask-ml":
        from dask_ml.cluster import KMeans

        # dask-ml runs one k-means|| initialisation (no n_init)
        return KMeans(n_clusters=K, max_iter=100, tol=1e-4, random_state=0)
    if impl == "cuml":
        from cuml.cluster import KMeans

        return KMeans(n_clusters=K, n_init=3, max_iter=100, tol=1e-4, random_state=0)
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=K, n_init=3, max_iter=100, tol=1e-4, random_state=0)


def segment(train, score, impl: str = "sklearn", client=None):
    """Fit scaler + K-Means at ``as_of``; add ``segment`` to both frames."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(segment_matrix(score))
    Xs = scaler.transform(segment_matrix(score))
    Xt = scaler.transform(segment_matrix(train))
    km = _kmeans(impl, client)
    if impl == "dask-ml":
        import dask.array as da

        chunk = -(-len(Xs) // (2 * cores()))
        dXs = da.from_array(Xs, chunks=(chunk, Xs.shape[1])).persist()
        km.fit(dXs)
        score["segment"] = np.asarray(km.predict(dXs).compute())
        centers = np.asarray(km.cluster_centers_)
        train["segment"] = ((Xt[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
        return float(km.inertia_)
    score["segment"] = np.asarray(km.fit_predict(Xs))
    train["segment"] = np.asarray(km.predict(Xt))
    return float(km.inertia_)


def model_matrix(f, feats: list[str]) -> np.ndarray:
    X = f.reindex(columns=feats).to_numpy(np.float32, na_value=np.nan)
    onehot = np.zeros((len(f), K), np.float32)
    onehot[np.arange(len(f)), f["segment"].to_numpy()] = 1.0
    return np.hstack([X, onehot])


def train(train_f, feats: list[str], trainer: str = "xgboost", client=None) -> dict:
    """Churn and value boosters on the training cutoff's rows (early stopping on 15 %)."""
    import xgboost as xgb

    X = model_matrix(train_f, feats)
    rng = np.random.default_rng(0)
    val = rng.random(len(X)) < VALID_FRACTION
    labels = {
        "churn": train_f["churn"].to_numpy(np.float32),
        "value": np.maximum(train_f["value"].to_numpy(np.float64), 0).astype(np.float32),
    }
    if trainer == "xgboost.dask":
        return _train_dask(client, X, val, labels)
    models = {}
    for target, y in labels.items():
        dtr = xgb.QuantileDMatrix(X[~val], label=y[~val], max_bin=256)
        dva = xgb.QuantileDMatrix(X[val], label=y[val], ref=dtr)
        models[target] = xgb.train(
            {**XGB_PARAMS, **OBJECTIVES[target], "nthread": cores()},
            dtr,
            num_boost_round=N_ROUNDS,
            evals=[(dva, "valid")],
            early_stopping_rounds=EARLY_STOP,
            verbose_eval=False,
        )
    return models


def _train_dask(client, X, val, labels: dict) -> dict:
    """The same boosters with ``xgboost.dask``: the rows scattered over the local
    cluster's workers as dask arrays, one booster after the other."""
    import dask.array as da
    from xgboost import dask as dxgb

    def split(a, rows):
        part = a[rows]
        chunk = max(1, -(-len(part) // (2 * cores())))
        return da.from_array(part, chunks=(chunk,) + part.shape[1:]).persist()

    Xtr, Xva = split(X, ~val), split(X, val)
    models = {}
    for target, y in labels.items():
        dtr = dxgb.DaskQuantileDMatrix(client, Xtr, split(y, ~val), max_bin=256)
        dva = dxgb.DaskQuantileDMatrix(client, Xva, split(y, val), ref=dtr, max_bin=256)
        out = dxgb.train(
            client,
            {**XGB_PARAMS, **OBJECTIVES[target]},
            dtr,
            num_boost_round=N_ROUNDS,
            evals=[(dva, "valid")],
            early_stopping_rounds=EARLY_STOP,
            verbose_eval=False,
        )
        models[target] = out["booster"]
    return models


def start_cluster():
    """A local Dask cluster, one single-threaded worker process per core (as a user of
    dask-ml or xgboost.dask on one machine would start it)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=cores(), threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster)


def score(score_f, feats: list[str], models: dict):
    import pandas as pd
    import xgboost as xgb

    d = xgb.DMatrix(model_matrix(score_f, feats), nthread=cores())
    it = {t: (0, m.best_iteration + 1) for t, m in models.items()}
    return pd.DataFrame(
        {
            "customer_id": score_f["customer_id"].to_numpy(),
            "segment": score_f["segment"].to_numpy(np.int32),
            "churn_probability": models["churn"].predict(d, iteration_range=it["churn"]),
            "value_prediction": models["value"].predict(d, iteration_range=it["value"]),
        }
    )


def write_scores(scores, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(scores, preserve_index=False), path)


def model_stages(clock: Clock, train_f, score_f, feats: list[str]) -> None:
    """segment, train, score, write (stopping after ``--until``); with ``--kmeans dask-ml``
    or ``--trainer xgboost.dask`` a local Dask cluster is started first (``cluster_start``)."""
    a = clock.args
    client = None
    if a.kmeans == "dask-ml" or a.trainer == "xgboost.dask":
        with clock.stage("cluster_start"):
            client = start_cluster()
    try:
        _model_stages(clock, train_f, score_f, feats, client)
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()


def finish(clock: Clock, train_f, score_f, versions: tuple[str, ...]) -> None:
    """After a peer's features (pandas frames at the training and scoring cutoffs): the
    ``--features-out`` dump, the modelling stages up to ``--until``, the result file."""
    dump_features(clock.args, score_f)
    feats = sorted(set(score_f.columns) - {"customer_id"})
    clock.info["features"] = feats
    if not clock.done():
        model_stages(clock, train_f, score_f, feats)
    clock.write((*versions, "scikit-learn", "xgboost"))


def _model_stages(clock: Clock, train_f, score_f, feats: list[str], client) -> None:
    a = clock.args
    with clock.stage("segment"):
        clock.info["kmeans_inertia"] = segment(train_f, score_f, a.kmeans, client)
    clock.info["kmeans"] = a.kmeans
    if clock.done():
        return
    with clock.stage("train"):
        models = train(train_f, feats, a.trainer, client)
    clock.info["trainer"] = a.trainer
    clock.info["best_iterations"] = {t: int(m.best_iteration) for t, m in models.items()}
    clock.info["train_rows"] = len(train_f)
    if clock.done():
        return
    with clock.stage("score"):
        s = score(score_f, feats, models)
    clock.info["customers_scored"] = len(s)
    if clock.done():
        return
    with clock.stage("write"):
        write_scores(s, clock.args.scores)
