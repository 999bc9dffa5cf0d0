"""Table writes the per-bucket tasks share (moves into the I/O seam, ``bigseg/io``)."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def arrow(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table with plain ``string`` columns: pandas 3 strings come back
    as ``large_string``, and the store keeps the plain type."""
    t = pa.Table.from_pandas(df, preserve_index=False)
    return t.cast(
        pa.schema(
            [
                pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                for f in t.schema
            ]
        )
    )


def write_parquet(df: pd.DataFrame, path: str) -> int:
    # the staging dir exists (no mkdir: a task cancelled after a failure must not
    # re-create a staging dir that was cleaned up)
    write_table(arrow(df), path)
    return len(df)


def write_table(t: pa.Table, path: str) -> None:
    pq.write_table(t, path, compression="zstd")


def write_arrow(t: pa.Table, path: str) -> None:
    """Arrow IPC file (LZ4), written to a unique temp name and renamed into place."""
    import uuid

    tmp = os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    )
    with (
        pa.OSFile(tmp, "wb") as sink,
        pa.ipc.new_file(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w,
    ):
        w.write_table(t)
    os.replace(tmp, path)


def read_arrow(path: str, columns: list[str] | None = None) -> pa.Table:
    with pa.memory_map(path) as src:
        t = pa.ipc.open_file(src).read_all()
    return t.select(columns) if columns is not None else t
