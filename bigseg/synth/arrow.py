"""Arrow schemas of the generated tables and the small Arrow helpers that build them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from bigseg.io import tables
from bigseg.schema import ID, SCHEMAS
from bigseg.synth.constants import US

RAW_TABLES = ("customers", "transactions", "events", "campaigns", "reviews")


def _arrow_schema(table: str) -> pa.Schema:
    cols = SCHEMAS[table].columns
    return pa.schema([(c, pa.int64() if t == ID else t) for c, t in cols.items()])


#: Arrow schema of each generated raw table (customer_id int64), in bigseg.schema order.
RAW_SCHEMAS: dict[str, pa.Schema] = {t: _arrow_schema(t) for t in RAW_TABLES}

GROUND_TRUTH_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("persona", pa.string()),
        ("buys_in_horizon", pa.bool_()),
        ("spend_in_horizon", pa.float64()),
        ("alive_at_end", pa.bool_()),
    ]
)


def _take(values: tuple[str, ...] | list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(idx))


def _ts(start_us: int, sec: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(start_us + sec.astype(np.int64) * US, type=pa.timestamp("us"), mask=mask)


def _sorted(owner: np.ndarray, sec: np.ndarray) -> np.ndarray:
    return np.lexsort((sec, owner))


def _write(table: pa.Table, path: Path) -> None:
    # The folder is made by generate(): if the staging area was removed after a failure,
    # a straggling task fails here instead of recreating it.
    tables.write_parquet_atomic(path, table, compression="zstd", compression_level=1)
