"""Monitoring of scheduled scoring runs: drift of features, scores and segment mix."""

from bigseg.monitor.drift import (
    DEFAULT_POLICY,
    DEFAULT_THRESHOLDS,
    bin_counts,
    bucket_counts,
    drift_report,
    merge_counts,
    psi,
    psi_level,
    reference_bins,
    segment_shift,
    should_retrain,
    with_counts,
)

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_THRESHOLDS",
    "bin_counts",
    "bucket_counts",
    "drift_report",
    "merge_counts",
    "psi",
    "psi_level",
    "reference_bins",
    "segment_shift",
    "should_retrain",
    "with_counts",
]
