"""Drift measurement for scheduled scoring, and the retrain policy built on it.

Pure NumPy/pandas, no Dask: the pipeline calls :func:`bucket_counts` once per bucket
(a Dask task each), adds the results on the client with :func:`merge_counts`, and
turns the sums into a report with :func:`drift_report` and :func:`segment_shift`.
Everything these functions return is made of ``dict``, ``list``, ``str``, ``int``,
``float``, ``bool`` and ``None`` (no NumPy types), so it can be written with
:mod:`json` as it is.

What is measured
----------------
**Population stability index (PSI).** For a variable binned into the same bins at
reference time (shares ``p``) and now (shares ``q``),
``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)``, with every share floored at ``eps``
(``1e-4``) so that an empty bin contributes a large but finite term
(:func:`psi`). PSI is symmetric in ``p`` and ``q`` and 0 for identical shares. Levels
(:func:`psi_level`, thresholds :data:`DEFAULT_THRESHOLDS`):

* ``"stable"``: PSI < 0.1;
* ``"moderate"``: 0.1 <= PSI < 0.25;
* ``"major"``: PSI >= 0.25.

For scale: a normal variable whose mean moves by half a standard deviation has a
decile PSI of about 0.24; by a quarter of one, about 0.06.

**Bins** (:func:`reference_bins`), fixed at training time from a sample of the
training population, one set per variable:

* numeric variable with more than ``n_bins`` distinct finite values: quantile edges
  (deciles for ``n_bins=10``) of the sample, duplicates dropped (a point mass such as
  "0 purchases" takes a bin of its own, possibly wider than a decile), ``-inf`` and
  ``+inf`` at the ends. Bins are closed on the right: ``(e[i-1], e[i]]``;
* numeric variable with at most ``n_bins`` distinct finite values (flags, small
  counts, a constant): one bin per value, the edges halfway between consecutive values,
  plus one bin below the smallest value and one above the largest (so a value never
  seen in training, or a constant feature that stops being constant, shows up as
  drift rather than being absorbed). Around a constant ``c`` the inner bin is
  ``(c - 0.5, c + 0.5]`` for an integer ``c`` and ``c +/- 1e-6 * max(1, |c|)``
  otherwise;
* non-numeric variable (strings): its ``max_categories`` most frequent values, then
  ``"other"`` for any other value (also values first seen at scoring time);
* always, last, a ``"missing"`` bin: NaN, None and (for strings) ``""``. It is kept
  even when the sample had no missing value, so missing values that start to appear
  are drift too. Infinite values are not missing: they fall in the end bins.

The reference shares come from the sample's counts; for exact shares, count the full
training population with the fixed edges (:func:`bucket_counts` per bucket,
:func:`merge_counts`) and store them with :func:`with_counts`. A sample of 10,000 or
more rows is enough: with ``B`` bins and ``n`` rows on each side, two samples of one
unchanged population have an expected PSI of about ``(B - 1) * 2 / n`` (0.002 for
deciles and 10,000 rows), far below the "moderate" threshold.

**Features, scores, segments.** The same machinery serves three purposes:

* model input features: ``reference_bins`` on a sample of the training feature matrix;
* model outputs: churn probability and value prediction (e.g. ``{"p_churn": ...,
  "value_pred": ...}``) of the trained model on its training population (or the
  backtest population), binned into their own deciles exactly like features. A score
  reference is tied to one model: recompute it whenever the model is retrained;
* segment mix: :func:`segment_shift` compares the segment shares of the segmentation
  model at training time with the segment counts at scoring time (PSI over segments,
  plus the largest absolute change of a share and its segment).

Retrain policy
--------------
:func:`should_retrain` recommends retraining when **any** of these holds (policy keys
and defaults in :data:`DEFAULT_POLICY`; set a key to ``None`` to switch its check off):

1. ``max_feature_psi`` (0.25): some model input feature has PSI >= 0.25 ("major"
   feature drift): the model sees inputs unlike those it was trained on;
2. ``max_score_psi`` (0.25): the distribution of a model output (churn probability,
   value prediction) has PSI >= 0.25: the model's decisions (flags, tiers, audiences)
   changed materially, whether the customers or the model's fit is the cause;
3. ``max_segment_psi`` (0.25): the PSI of the segment shares is >= 0.25: the customer
   base now splits differently across segments, so per-segment models and offers were
   fitted on a different mix;
4. ``max_model_age_days`` (30): the model is at least 30 days old, whatever the drift:
   a slow drift below every threshold still accumulates, and a regular refit bounds it.

Moderate drift (0.1 <= PSI < 0.25) alone never triggers a retrain; it is listed in
the report (``"moderate"``) for a person to look at. The answer comes with one
human-readable reason per triggered rule (features named, worst first). A check
whose part of the report is absent (e.g. no score reference yet) is skipped.

Storing and passing
-------------------
At training time, store (JSON, next to the models)::

    feature_ref = reference_bins(sample_of_features)       # then optionally
    feature_ref = with_counts(feature_ref, full_counts)    # exact training shares
    score_ref = reference_bins({"p_churn": p, "value_pred": v})
    segment_shares = {segment_id: share, ...}
    trained_at = <date>

At scoring time::

    counts = merge_counts over buckets of bucket_counts(bucket_frame, feature_ref)
    scounts = merge_counts over buckets of bucket_counts(bucket_scores, score_ref)
    segcounts = merge_counts over buckets of {segment_id: n_customers, ...}
    report = {"features": drift_report(feature_ref, counts),
              "scores": drift_report(score_ref, scounts),
              "segments": segment_shift(segment_shares, segcounts)}
    retrain, reasons = should_retrain(report, model_age_days, policy)

The two end edges of a numeric variable are ``-inf`` and ``+inf``. Python's
:mod:`json` writes them as ``-Infinity``/``Infinity`` and reads them back; a consumer
that needs strict JSON may write them as ``null``: :func:`bin_counts` uses only the
inner edges. The reports hold no infinity or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bigseg.monitor.bins import FORMAT_VERSION as FORMAT_VERSION
from bigseg.monitor.bins import MAX_CATEGORIES as MAX_CATEGORIES
from bigseg.monitor.bins import (
    MISSING,
    OTHER,
    bin_counts,
    bucket_counts,
    merge_counts,
    reference_bins,
    sample_reference,
    with_counts,
)
from bigseg.monitor.measure import (
    DEFAULT_EPS,
    DEFAULT_THRESHOLDS,
    drift_report,
    psi,
    psi_level,
    segment_shift,
)

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_POLICY",
    "DEFAULT_THRESHOLDS",
    "MISSING",
    "OTHER",
    "bin_counts",
    "bucket_counts",
    "drift_report",
    "merge_counts",
    "psi",
    "psi_level",
    "reference_bins",
    "sample_reference",
    "segment_shift",
    "should_retrain",
    "with_counts",
]

#: retrain policy of :func:`should_retrain` (see the module docstring)
DEFAULT_POLICY: dict[str, float | None] = {
    "max_feature_psi": 0.25,
    "max_score_psi": 0.25,
    "max_segment_psi": 0.25,
    "max_model_age_days": 30.0,
}

#: at most this many features are named in one retrain reason
_MAX_NAMED = 5


# --------------------------------------------------------------------------------------
# Retrain policy
# --------------------------------------------------------------------------------------


def _policy(policy: Mapping[str, float | None] | None) -> dict[str, float | None]:
    pol = {**DEFAULT_POLICY, **(policy or {})}
    unknown = sorted(set(pol) - set(DEFAULT_POLICY))
    if unknown:
        raise ValueError(f"unknown policy keys {unknown} (known: {sorted(DEFAULT_POLICY)})")
    out: dict[str, float | None] = {}
    for k, v in pol.items():
        if v is not None:
            v = float(v)
            if not v >= 0:
                raise ValueError(f"policy {k} must be >= 0 or None, got {v!r}")
        out[k] = v
    return out


def _report_parts(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if "max_psi" in report:
        return {"features": report}
    unknown = sorted(set(report) - {"features", "scores", "segments"})
    if unknown:
        raise ValueError(
            f"unknown report parts {unknown}: expected a drift_report, or a "
            "dict with keys 'features', 'scores', 'segments'"
        )
    return {k: v for k, v in report.items() if v is not None}


def _psi_reason(what: str, part: Mapping[str, Any], limit: float) -> str | None:
    over = sorted(
        ((name, f["psi"]) for name, f in part["features"].items() if f["psi"] >= limit),
        key=lambda t: -t[1],
    )
    if not over:
        return None
    named = ", ".join(f"{name} ({value:.3f})" for name, value in over[:_MAX_NAMED])
    more = f" and {len(over) - _MAX_NAMED} more" if len(over) > _MAX_NAMED else ""
    return (
        f"{what} drift: PSI >= {limit:g} on {len(over)} of {len(part['features'])}: {named}{more}"
    )


def should_retrain(
    report: Mapping[str, Any],
    model_age_days: float,
    policy: Mapping[str, float | None] | None = None,
) -> tuple[bool, list[str]]:
    """Whether to retrain, and why (the policy is in the module docstring).

    Parameters
    ----------
    report : dict
        ``{"features": drift_report(...), "scores": drift_report(...), "segments":
        segment_shift(...)}``, any part may be left out (or ``None``) and its check is
        then skipped; a bare :func:`drift_report` is taken as the feature part.
    model_age_days : float
        Days since the model was trained.
    policy : mapping, optional
        Overrides of :data:`DEFAULT_POLICY` (``max_feature_psi``, ``max_score_psi``,
        ``max_segment_psi``, ``max_model_age_days``); ``None`` switches a check off.

    Returns
    -------
    (bool, list of str)
        True when at least one rule triggers, with one human-readable reason per
        triggered rule.

    Examples
    --------
    >>> should_retrain({}, model_age_days=3)
    (False, [])
    >>> should_retrain({}, model_age_days=45)
    (True, ['model age 45.0 days >= 30 days'])
    """
    pol = _policy(policy)
    age = float(model_age_days)
    if not (math.isfinite(age) and age >= 0):
        raise ValueError(f"model_age_days must be finite and >= 0, got {model_age_days!r}")
    parts = _report_parts(report)
    reasons: list[str] = []
    for key, what, limit_key in (
        ("features", "feature", "max_feature_psi"),
        ("scores", "score", "max_score_psi"),
    ):
        limit = pol[limit_key]
        if limit is not None and key in parts:
            reason = _psi_reason(what, parts[key], limit)
            if reason:
                reasons.append(reason)
    seg, limit = parts.get("segments"), pol["max_segment_psi"]
    if seg is not None and limit is not None and seg["psi"] >= limit:
        top = seg["max_change_segment"]
        s = seg["segments"][top]
        reasons.append(
            f"segment mix shift: PSI {seg['psi']:.3f} >= {limit:g} (largest "
            f"change: segment {top}, {s['reference_share']:.1%} -> "
            f"{s['current_share']:.1%})"
        )
    max_age = pol["max_model_age_days"]
    if max_age is not None and age >= max_age:
        reasons.append(f"model age {age:.1f} days >= {max_age:g} days")
    return bool(reasons), reasons
