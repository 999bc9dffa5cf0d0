"""The customer-bucketed store: dataset ``store``, files
``runs/<run>/store/<table>/bucket=NNNNN/part-*.parquet`` (listed by the commit).

Each bucket holds every row of the customers whose ``hash(customer_id) % n_buckets``
equals its number, sorted by customer id (then time). Every later stage is a map over
buckets with no shuffle. ``_manifest.json`` records the bucket count, the id type, the
schema and row count of every table and the input files it was built from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from bigseg.errors import DataError
from bigseg.io import tables
from bigseg.io.layout import STORE_MANIFEST
from bigseg.io.output import Output
from bigseg.schema import SCHEMAS

MANIFEST = STORE_MANIFEST
#: a bucket's part file, below the dataset's prefix: ``<table>/bucket=NNNNN/<name>``
_PART = re.compile(r"^([^/]+)/bucket=(\d{5})/[^/]+\.parquet$")


def bucket_dirname(k: int) -> str:
    return f"bucket={k:05d}"


@dataclass(frozen=True)
class Store:
    """A published store. Cheap to pickle: workers get it as a task argument."""

    root: str
    manifest: dict
    #: the committed part files, ``{table: {bucket: [location, ...]}}``
    parts: dict = field(default_factory=dict)

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
        files = sorted(self.parts.get(table, {}).get(k, []), key=str)
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


def parts_of(members: dict) -> dict:
    """``{table: {bucket: [location, ...]}}`` from a store dataset's files."""
    parts: dict = {}
    for rel, loc in members.items():
        m = _PART.match(rel)
        if m:
            parts.setdefault(m.group(1), {}).setdefault(int(m.group(2)), []).append(loc)
    return parts


def open_store(output: str | Path | Output) -> Store:
    """Open the committed store (dataset ``store``; ``output`` a path or an
    :class:`~bigseg.io.output.Output`, whose pending store wins when the run wrote one).

    Raises :class:`~bigseg.errors.DataError` when there is none yet.
    """
    out = output if isinstance(output, Output) else Output.open(output)
    if not out.has("store"):
        raise DataError(f"{out.root}: no bucketed store here; run `bigseg ingest CONFIG` first")
    members = out.members("store")
    manifest = out.read_json("store", MANIFEST)
    root = (
        out.root
        if not out.need("store").get("prefix")
        else f"{out.root}/{out.need('store')['prefix']}"
    )
    return Store(str(root), manifest, parts_of(members))
