"""Table files: the only place bigseg reads and writes Parquet and Arrow IPC files.

Writers into a staging directory (:func:`write_parquet`, :func:`parquet_writer`,
:func:`arrow_writer`, :func:`write_feather`) write in place: the staging directory is
published whole by :func:`bigseg.io.commit.publish_dir`. A table written straight to
its final name goes through :func:`write_parquet_atomic` / :func:`write_arrow_atomic`
(temporary name, ``fsync``, rename). Options are passed through unchanged, so the bytes
are what pyarrow writes with them.

Every function takes a local path or an :class:`~bigseg.io.objectstore.ObjectPath`; the
latter is read and written through its store's filesystem (a whole object appears only
once its upload completes, so there is no temporary name to rename on object stores).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from bigseg.io.storage import Location, fsync_dir, fsync_file, is_object, local, temp_name


def _where(path) -> dict:
    """pyarrow's ``(path, filesystem=...)`` arguments for a path object."""
    if is_object(path):
        return {"path": path.key, "filesystem": path.storage.filesystem}
    if isinstance(path, str | os.PathLike):
        return {"path": str(path), "filesystem": None}
    return {"path": path, "filesystem": None}  # an open file


def _open_out(path):
    """A pyarrow output stream at ``path`` (an object: its upload, one PUT or a
    multipart upload on close)."""
    if is_object(path):
        return pa.PythonFile(path.storage.open_write(path), mode="w")
    return pa.OSFile(str(path), "wb")


def _open_in(path):
    """A whole file to read (an object: fetched with one GET; pyarrow's own filesystem
    wrapper asks for the object's size and type several times per file)."""
    if is_object(path):
        return pa.BufferReader(path.storage.read_bytes(path))
    return pa.memory_map(str(path))


def from_pandas(df) -> pa.Table:
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


def text_for_null(table: pa.Table) -> pa.Table:
    """``table`` with every ``null``-typed column (a text column whose values in this
    part are all missing: no second offer, no segment reason) typed ``string``, so the
    parts of one dataset share a schema and read back together."""
    if not any(pa.types.is_null(f.type) for f in table.schema):
        return table
    return table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                for f in table.schema
            ],
            metadata=table.schema.metadata,
        )
    )


# -- Parquet ---------------------------------------------------------------------------------
def read_parquet(path: Location, columns=None, read_dictionary=None) -> pa.Table:
    """One Parquet file (optionally only ``columns``; ``read_dictionary`` columns come
    dictionary-encoded)."""
    if is_object(path):  # ranged reads through one open file: the footer, then the columns
        with path.storage.open_read(path) as f:
            return pq.read_table(f, columns=columns, read_dictionary=read_dictionary)
    w = _where(path)
    return pq.read_table(w["path"], columns=columns, read_dictionary=read_dictionary)


def read_parquet_metadata(path: Location) -> pq.FileMetaData:
    if is_object(path):
        with path.storage.open_read(path) as f:
            return pq.read_metadata(f)
    return pq.read_metadata(_where(path)["path"])


def open_parquet(path: Location, dictionary=None, metadata=None) -> pq.ParquetFile:
    """A Parquet file for streaming reads (``iter_batches``); the columns ``dictionary``
    read dictionary-encoded (``metadata``: its footer, when already read)."""
    w = _where(path)
    return pq.ParquetFile(
        w["path"], filesystem=w["filesystem"], read_dictionary=dictionary, metadata=metadata
    )


def write_parquet(path: Location, table: pa.Table, digest: bool = False, **options):
    """Write ``table`` to ``path`` (in a staging directory) with pyarrow's ``options``.
    ``digest``: the file is encoded in memory, written in one piece, and its
    ``{"size", "sha256"}`` returned, so whoever records it need not read it back (the
    client hashing a 1M-customer store cost ~0.2 s while every worker waited; on
    object storage, a download of the whole store)."""
    if digest:
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, **options)
        data = buf.getvalue()
        with _open_out(path) as sink:
            sink.write(data)
        return {"size": data.size, "sha256": hashlib.sha256(data).hexdigest()}
    if is_object(path):
        with _open_out(path) as sink:
            pq.write_table(table, sink, **options)
        return
    pq.write_table(table, _where(path)["path"], **options)


def parquet_writer(path: Location, schema: pa.Schema, **options) -> pq.ParquetWriter:
    """A streaming Parquet writer at ``path`` (in a staging directory); close it (or use
    it as a context manager)."""
    w = _where(path)
    return pq.ParquetWriter(w["path"], schema, filesystem=w["filesystem"], **options)


def _atomic(path: Location, write) -> None:
    if is_object(path):
        write(path)
        return
    path = Path(path)
    tmp = temp_name(path)
    try:
        write(tmp)
        fsync_file(tmp)
        local.rename(tmp, path)
    except BaseException:
        local.delete(tmp)
        raise
    fsync_dir(path.parent)


def write_parquet_atomic(path: Location, table: pa.Table, **options) -> None:
    """Write ``table`` to its final ``path``: readers see no part of it before it is
    complete and durable."""
    _atomic(path, lambda tmp: pq.write_table(table, tmp, **options))


# -- Arrow IPC -------------------------------------------------------------------------------
def arrow_writer(path: Location, schema: pa.Schema, options=None):
    """An Arrow IPC writer at ``path`` (in a staging directory), in the stream format:
    unlike a file, a stream may replace a column's dictionary from one batch to the
    next (read it with ``read_arrow(..., stream=True)``)."""
    if is_object(path):
        return _ClosingWriter(_open_out(path), schema, options)
    return pa.ipc.new_stream(str(path), schema, options=options)


class _ClosingWriter:
    """An IPC writer that also closes the stream it writes to (an upload)."""

    def __init__(self, sink, schema, options):
        self.sink = sink
        self.writer = pa.ipc.new_stream(sink, schema, options=options)

    def write(self, batch) -> None:
        self.writer.write(batch)

    def write_batch(self, batch) -> None:
        self.writer.write_batch(batch)

    def write_table(self, table) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()
        self.sink.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_arrow(path: Location, columns: list[str] | None = None, stream: bool = False) -> pa.Table:
    """An Arrow IPC file (``stream``: in the stream format), memory-mapped (optionally
    only ``columns``)."""
    with _open_in(path) as src:
        t = (pa.ipc.open_stream if stream else pa.ipc.open_file)(src).read_all()
    return t.select(columns) if columns is not None else t


def write_arrow_atomic(path: Location, table: pa.Table, compression: str | None = "lz4") -> None:
    """``table`` as an Arrow IPC file at its final ``path`` (temporary name, ``fsync``,
    rename)."""
    options = pa.ipc.IpcWriteOptions(compression=compression)

    def write(tmp: Path) -> None:
        with (
            _open_out(tmp) as sink,
            pa.ipc.new_file(sink, table.schema, options=options) as w,
        ):
            w.write_table(table)

    _atomic(path, write)


def write_feather(path: Location, df, compression: str = "lz4") -> None:
    """A pandas frame as a Feather (Arrow IPC) file (in a staging directory)."""
    with _open_out(path) as sink:
        feather.write_feather(df, sink, compression=compression)


def read_feather(path: Location):
    if not is_object(path):
        return feather.read_feather(str(path))
    with _open_in(path) as src:
        return feather.read_feather(src)
