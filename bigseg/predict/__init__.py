"""Prediction: XGBoost models trained forward in time on the cluster."""

from bigseg.predict.xgb import evaluate_binary, evaluate_value, predict_block, train_dask

__all__ = ["evaluate_binary", "evaluate_value", "predict_block", "train_dask"]
