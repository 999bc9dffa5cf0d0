"""The customer-bucketed store: ``output/store/<table>/bucket=NNNNN/part-*.parquet``.

Each bucket holds every row of the customers whose ``hash(customer_id) % n_buckets``
equals its number, sorted by customer id (then time). Every later stage is a map over
buckets with no shuffle. ``_manifest.json`` records the bucket count, the id type, the
schema and row count of every table and the input files it was built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from bigseg.errors import DataError
from bigseg.io import tables
from bigseg.io.commit import read_json, recover
from bigseg.io.layout import STORE_MANIFEST, Layout
from bigseg.schema import SCHEMAS

MANIFEST = STORE_MANIFEST


def bucket_dirname(k: int) -> str:
    return f"bucket={k:05d}"


@dataclass(frozen=True)
class Store:
    """A published store. Cheap to pickle: workers get it as a task argument."""

    root: str
    manifest: dict

    @property
    def n_buckets(self) -> int:
        return int(self.manifest["n_buckets"])

    @property
    def tables(self) -> list[str]:
        return list(self.manifest["tables"])

    def has(self, table: str) -> bool:
        return table in self.manifest["tables"]

    def schema(self, table: str) -> dict[str, str]:
        return self.manifest["tables"][table]["schema"]

    def bucket_dir(self, table: str, k: int) -> Path:
        return Path(self.root) / table / bucket_dirname(k)

    def read_bucket(
        self, table: str, k: int, columns: list[str] | None = None, dictionary: tuple[str, ...] = ()
    ) -> pa.Table:
        """All rows of bucket ``k`` of ``table`` (optionally only ``columns``), sorted by
        customer id; the string columns named in ``dictionary`` come dictionary-encoded
        straight from the Parquet dictionary pages (no per-row string decoding)."""
        d = self.bucket_dir(table, k)
        files = sorted(d.glob("*.parquet"))
        if not files:
            raise DataError(f"{d}: bucket has no data files; the store is damaged, re-run ingest")
        schema = self.schema(table)
        cols = None if columns is None else [c for c in columns if c in schema]
        as_dict = [c for c in dictionary if c in schema and (cols is None or c in cols)]
        parts = [tables.read_parquet(f, cols, read_dictionary=as_dict or None) for f in files]
        if len(parts) == 1:
            return parts[0]
        # incremental ingests add part files: restore the (customer id, time) order
        t = pa.concat_tables(parts, promote_options="default")
        keys = [
            (c, "ascending")
            for c in ("customer_id", SCHEMAS[table].time_column)
            if c and c in t.column_names
        ]
        return t.sort_by(keys) if keys else t


def open_store(output: str | Path) -> Store:
    """Open the published store under ``output/store``.

    Raises :class:`~bigseg.errors.DataError` when there is none yet.
    """
    lay = Layout(output)
    root = lay.store
    recover(root)
    m = lay.store_manifest
    if not m.is_file():
        raise DataError(f"{root}: no bucketed store here; run `bigseg ingest CONFIG` first")
    return Store(str(root), read_json(m))
