"""Did a change cost quality? Two outputs of runs on the same data, side by side.

usage: python benchmarks/compare_quality.py BEFORE_OUT AFTER_OUT

Prints the backtest's served churn AUC and value RMSE of each run (computed afresh by
each run, never reused), their differences, and the segments: the adjusted Rand index of
the customers' segment ids and whether every segment keeps its name. Issue 20's bar: AUC
within 0.002, RMSE within 1 %, ARI at least 0.99 and the same names; exits 1 when missed.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
from sklearn.metrics import adjusted_rand_score

from bigseg.testing.outputs import files, metrics_path


def _metrics(out: str) -> dict:
    return json.loads(metrics_path(out).read_text())


def _segments(out: str) -> pd.DataFrame:
    parts = [pd.read_parquet(p) for p in files(out, "segments") if p.suffix == ".parquet"]
    df = pd.concat(parts, ignore_index=True)
    return df[["customer_id", "segment", "segment_name"]].sort_values("customer_id")


def main(before: str, after: str) -> int:
    mb, ma = _metrics(before), _metrics(after)
    auc = (mb["churn"]["auc"], ma["churn"]["auc"])
    rmse = (mb["value"]["rmse"], ma["value"]["rmse"])
    sb, sa = _segments(before), _segments(after)
    both = sb.merge(sa, on="customer_id", suffixes=("_b", "_a"))
    ari = adjusted_rand_score(both["segment_b"], both["segment_a"])
    names_b = dict(zip(sb["segment"], sb["segment_name"], strict=False))
    names_a = dict(zip(sa["segment"], sa["segment_name"], strict=False))
    same_names = names_b == names_a and len(both) == len(sb) == len(sa)
    print(f"served churn AUC: {auc[0]:.5f} -> {auc[1]:.5f} ({auc[1] - auc[0]:+.5f})")
    print(f"value RMSE: {rmse[0]:.3f} -> {rmse[1]:.3f} ({rmse[1] / rmse[0] - 1:+.3%})")
    print(f"segments: ARI {ari:.4f}, same names {same_names} ({len(names_a)} segments)")
    ok = auc[1] >= auc[0] - 0.002 and rmse[1] <= rmse[0] * 1.01 and ari >= 0.99 and same_names
    print("within issue 20's bar" if ok else "OUTSIDE issue 20's bar")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
