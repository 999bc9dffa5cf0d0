"""End-to-end peer: a Spark MLlib pipeline (Spark SQL features, MLlib scaler + K-Means,
XGBoost's Spark estimators), Spark in local mode on every core of the machine.

Usage::

    python benchmarks/peers/peer_spark.py --data DIR --as-of 2026-09-30 --horizon 90 \\
        --out spark.json

Stages (wall seconds each in ``--out``; ``spark_start`` is the JVM/session start-up,
counted in the total): load (the raw Parquet tables read and cached in Spark memory, only
the columns used), features (the same SQL query as the DuckDB peer, ``_sql.py``, per
cutoff: ``as_of - horizon`` with labels, and ``as_of``; cached), segment (MLlib
``StandardScaler`` + ``KMeans(k=7, maxIter=100)`` on log1p'd recency, purchase rate,
mean order value, tenure, fitted at ``as_of``), train (``xgboost.spark``
``SparkXGBClassifier`` for churn and ``SparkXGBRegressor`` (Tweedie) for value, the same
parameters as the other peers, one XGBoost worker per core, 15 % validation with early
stopping), score, write (``--scores``: a Parquet directory).

Tuned as a competent user would for one machine: ``local[*]``, shuffle partitions = 2 x
cores (not 200), driver memory 8 GiB, Arrow on, UI off, session time zone UTC.

Features: as the DuckDB peer (bigseg's names and definitions): RFM (recency_days,
frequency, monetary_total, monetary_mean, monetary_max, tenure_days, purchase_rate,
returns_rate, count_90d, spend_90d), channel_share_<channel>,
category_share_<category>, engagement from events (events_total,
days_since_last_activity, sessions_90d, app_opens_90d, page_views_90d,
active_days_90d), campaigns (campaign_sends, campaign_sends_90d,
campaign_response_rate); customers without profiling consent dropped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _sql import feature_sql  # noqa: E402

TABLES = {
    "tx": ("transactions", ["customer_id", "timestamp", "amount", "channel", "category"]),
    "ev": ("events", ["customer_id", "timestamp", "event_type", "page_views"]),
    "cp": ("campaigns", ["customer_id", "sent_at", "responded", "responded_at"]),
    "cu": ("customers", ["customer_id", "consent_profiling"]),
}


def session(cores: int):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("bigseg-peer")
        .config("spark.driver.memory", "8g")
        .config("spark.sql.shuffle.partitions", str(2 * cores))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )


def main(argv=None) -> None:
    a = C.parse_args("spark", argv)
    clock = C.Clock("spark", a)
    n = C.cores()
    with clock.stage("spark_start"):
        spark = session(n)
        spark.sparkContext.setLogLevel("ERROR")
    from pyspark.ml import Pipeline
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    have = set()
    with clock.stage("load"):
        for name, (table, cols) in TABLES.items():
            if (a.raw / table).exists():
                df = spark.read.parquet(str(a.raw / table)).select(*cols)
                for c, t in df.dtypes:
                    if t.startswith("timestamp"):  # Parquet local times come as TIMESTAMP_NTZ
                        df = df.withColumn(c, F.col(c).cast("timestamp"))
                df = df.cache()
                df.count()
                df.createOrReplaceTempView(name)
                have.add(name)
    if clock.done():
        spark.stop()
        return clock.write(("pyspark",))
    with clock.stage("features"):
        channels = [
            r[0]
            for r in spark.sql(
                "SELECT DISTINCT channel FROM tx WHERE channel IS NOT NULL ORDER BY 1"
            ).collect()
        ]
        cats = [
            r[0]
            for r in spark.sql(
                "SELECT DISTINCT category FROM tx WHERE category IS NOT NULL ORDER BY 1"
            ).collect()
        ]
        train_f = spark.sql(
            feature_sql(a.train_cut, "unix_micros", channels, cats, have, a.horizon)
        ).cache()
        score_f = spark.sql(feature_sql(a.score_cut, "unix_micros", channels, cats, have)).cache()
        clock.info["train_rows"], clock.info["customers_scored"] = train_f.count(), score_f.count()
    feats = sorted(set(score_f.columns) - {"customer_id"})
    clock.info["features"] = feats
    if clock.done():
        spark.stop()
        return clock.write(("pyspark",))

    with clock.stage("segment"):
        logs = [
            F.log1p(F.greatest(F.coalesce(F.col(c), F.lit(0.0)), F.lit(0.0))).alias(f"l_{c}")
            if c in C.SKEWED
            else F.coalesce(F.col(c), F.lit(0.0)).alias(f"l_{c}")
            for c in C.SEGMENT_FEATURES
        ]
        seg = Pipeline(
            stages=[
                VectorAssembler(inputCols=[f"l_{c}" for c in C.SEGMENT_FEATURES], outputCol="sx"),
                StandardScaler(inputCol="sx", outputCol="sz", withMean=True, withStd=True),
                KMeans(
                    k=C.K, maxIter=100, tol=1e-4, seed=0, featuresCol="sz", predictionCol="segment"
                ),
                OneHotEncoder(inputCols=["segment"], outputCols=["seg_onehot"], dropLast=False),
            ]
        )
        score_s = score_f.select("*", *logs)
        model = seg.fit(score_s)
        clock.info["kmeans_inertia"] = float(model.stages[2].summary.trainingCost)
        score_s = model.transform(score_s).cache()
        train_s = model.transform(train_f.select("*", *logs)).cache()
        score_s.count(), train_s.count()
    if clock.done():
        spark.stop()
        return clock.write(("pyspark", "xgboost"))

    nan = F.lit(float("nan"))
    assemble = VectorAssembler(
        inputCols=[*feats, "seg_onehot"], outputCol="x", handleInvalid="keep"
    )

    def matrix(df):
        return assemble.transform(
            df.select(
                "customer_id",
                "segment",
                "seg_onehot",
                *[F.coalesce(F.col(c).cast("double"), nan).alias(c) for c in feats],
                *[c for c in ("churn", "value") if c in df.columns],
            )
        )

    with clock.stage("train"):
        tr = matrix(train_s).withColumn("is_val", F.rand(0) < C.VALID_FRACTION)
        tr = tr.withColumn("value", F.greatest(F.col("value"), F.lit(0.0))).cache()
        common = dict(
            features_col="x",
            validation_indicator_col="is_val",
            num_workers=n,
            max_depth=4,
            learning_rate=0.1,
            min_child_weight=5.0,
            max_bin=256,
            n_estimators=C.N_ROUNDS,
            early_stopping_rounds=C.EARLY_STOP,
            tree_method="hist",
            random_state=0,
            missing=float("nan"),
            verbose=False,
        )
        churn = SparkXGBClassifier(
            label_col="churn",
            eval_metric="logloss",
            prediction_col="churn_pred",
            probability_col="churn_prob",
            raw_prediction_col="churn_raw",
            **common,
        ).fit(tr)
        value = SparkXGBRegressor(
            label_col="value",
            objective="reg:tweedie",
            tweedie_variance_power=1.5,
            eval_metric="rmse",
            prediction_col="value_prediction",
            **common,
        ).fit(tr)
    clock.info["best_iterations"] = {
        "churn": int(churn.get_booster().best_iteration),
        "value": int(value.get_booster().best_iteration),
    }
    if clock.done():
        spark.stop()
        return clock.write(("pyspark", "xgboost"))
    with clock.stage("score"):
        s = value.transform(churn.transform(matrix(score_s)))
        s = s.select(
            "customer_id",
            F.col("segment").cast("int"),
            vector_to_array("churn_prob")[1].cast("float").alias("churn_probability"),
            F.col("value_prediction").cast("float"),
        ).cache()
        s.count()
    if not clock.done():
        with clock.stage("write"):
            s.write.mode("overwrite").parquet(str(a.scores))
    spark.stop()
    clock.write(("pyspark", "xgboost"))


if __name__ == "__main__":
    main()
