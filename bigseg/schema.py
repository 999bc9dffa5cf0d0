"""The input data contract: canonical table and column names, and their types.

Users map their own column names onto these with ``data.<table>.columns`` in the run
config. ``customer_id`` keeps whatever type the source has (int64 or string), exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

TABLES = ("transactions", "customers", "events", "campaigns", "reviews")

#: ``"id"`` marks the customer id: int64 or string, kept exactly as the source has it.
ID = "id"


@dataclass(frozen=True)
class TableSchema:
    name: str
    required: dict[str, object]
    optional: dict[str, object] = field(default_factory=dict)
    #: column used (with customer_id) to sort rows inside a bucket
    time_column: str | None = None
    #: columns holding personal data: never copied to features, outputs or logs
    pii: tuple[str, ...] = ()

    @property
    def columns(self) -> dict[str, object]:
        return {**self.required, **self.optional}


TS = pa.timestamp("us")

#: derived at ingest, stored beside the input columns of ``reviews``: the review text's
#: VADER compound sentiment (float64, NaN for a blank text), scored once per review
#: instead of by every feature run (:func:`bigseg.features.text.sentiment_scores`)
SENTIMENT = "sentiment"
#: per table, the columns ingest derives and stores after the input columns
DERIVED: dict[str, tuple[str, ...]] = {"reviews": (SENTIMENT,)}
#: low-cardinality string columns, read dictionary-encoded: ingest keeps them so from a
#: Parquet input's pages to the store's (no per-row strings are copied, sorted or hashed
#: again; one 1.1M-row transactions file split in 0.08 instead of 0.13 CPU-s, measured),
#: and the features factorise them
CATEGORICAL: dict[str, tuple[str, ...]] = {
    "transactions": ("channel", "category"),
    "events": ("channel", "event_type"),
}

SCHEMAS: dict[str, TableSchema] = {
    "transactions": TableSchema(
        "transactions",
        required={"customer_id": ID, "timestamp": TS, "amount": pa.float64()},
        optional={
            "transaction_id": pa.int64(),
            "channel": pa.string(),
            "category": pa.string(),
        },
        time_column="timestamp",
    ),
    "customers": TableSchema(
        "customers",
        required={"customer_id": ID},
        optional={
            "age": pa.int16(),
            "gender": pa.string(),
            "region": pa.string(),
            "signup_date": TS,
            "consent_profiling": pa.bool_(),
            "consent_marketing": pa.bool_(),
            "name": pa.string(),
            "email": pa.string(),
            "phone": pa.string(),
            "address": pa.string(),
        },
        pii=("name", "email", "phone", "address"),
    ),
    "events": TableSchema(
        "events",
        required={"customer_id": ID, "timestamp": TS, "event_type": pa.string()},
        optional={"channel": pa.string(), "page_views": pa.int32()},
        time_column="timestamp",
    ),
    "campaigns": TableSchema(
        "campaigns",
        required={"customer_id": ID, "campaign_id": pa.string(), "sent_at": TS},
        optional={
            "channel": pa.string(),
            "responded": pa.bool_(),
            "converted": pa.bool_(),
            "responded_at": TS,
        },
        time_column="sent_at",
    ),
    "reviews": TableSchema(
        "reviews",
        required={"customer_id": ID, "timestamp": TS, "text": pa.string()},
        optional={"rating": pa.int8()},
        time_column="timestamp",
    ),
}
