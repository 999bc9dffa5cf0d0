"""Personalisation: next-best offer per customer and per-segment audience files.

Everything here is a pure function of one bucket (pandas / NumPy, no Dask inside) or a
reduction of small per-bucket results on the client, so the pipeline runs it like the
other per-bucket tasks:

1. :func:`segment_category_sums` on each bucket (the feature frame of the scoring cutoff
   and the ``segment`` ids of its scores) -> small dicts of partial sums;
2. :func:`category_affinity` on the client reduces them into, per segment and category,
   the **lift** (segment mean spend share / population mean spend share) and the
   segment's **buyer rate** (share of its customers who bought in the category);
   the result is JSON-serialisable (for metrics and the report);
3. :func:`next_best_offers` on each bucket: per customer, the categories their segment
   over-indexes on (``lift >= min_lift``) that the customer has not bought yet, best
   first;
4. :func:`audience_frame` on each bucket: consenting customers with their segment,
   churn-risk tier, value tier (global cut points from :func:`value_cut_points`) and
   first offer;
5. :func:`write_audiences`: ``audiences/segment=<id>.parquet``, one file per segment,
   published atomically through :func:`bigseg.io.commit.staged_dir`; the score stage
   shares the segments out among the workers (:func:`write_segment_group`).

Categories are the top-category vocabulary the features were built with (the values
passed as ``categories`` to :func:`bigseg.features.behaviour.category_features`); their
share columns are ``category_share_<suffix>`` with the suffixes of
:func:`bigseg.features.behaviour.column_suffixes`. Offers name the category itself (e.g.
``"Home & Garden"``), not the column. Only the top categories can be offered: spend in
other categories (``category_other_share``) is one undifferentiated bucket.

Segment ids are the persistent ids of the ``segment`` column of the scores (they can
have gaps); ``k`` is one more than the largest id, as in :func:`bigseg.predict.scoring.profile`.
"""

from bigseg.predict.affinity import (
    SCORE,
    category_affinity,
    next_best_offers,
    segment_category_sums,
)
from bigseg.predict.audiences import (
    AUDIENCE_COLUMNS,
    CHURN_CUTS,
    VALUE_QUANTILES,
    audience_frame,
    bucket_audience,
    marketing_consent,
    value_cut_points,
    write_audiences,
    write_segment_group,
)

__all__ = [
    "AUDIENCE_COLUMNS",
    "CHURN_CUTS",
    "SCORE",
    "VALUE_QUANTILES",
    "audience_frame",
    "bucket_audience",
    "category_affinity",
    "marketing_consent",
    "next_best_offers",
    "segment_category_sums",
    "value_cut_points",
    "write_audiences",
    "write_segment_group",
]
