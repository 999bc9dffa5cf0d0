"""Reading user inputs: list the files of a table, stream them in bounded batches,
rename columns to canonical names and coerce types.

Every problem raises :class:`~bigseg.errors.DataError` naming the file, the column and
the rule broken. ``customer_id`` keeps its type and value exactly: integer ids stay
int64, string ids (zero-padded ones included) stay strings; CSV ids are always strings.

A table whose ``path`` is an object-storage URL is listed and read through the storage
seam (:func:`bigseg.io.storage.storage_for`), see :func:`_list_url_inputs`.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bigseg.config import TableConfig
from bigseg.errors import BigsegError, ConfigError, DataError, StorageError
from bigseg.io import delta, tables
from bigseg.io.storage import FileInfo, is_remote, local_path, storage_for
from bigseg.schema import CATEGORICAL, ID, SCHEMAS
from bigseg.store import coerce, formats, rules

BATCH_ROWS = 256 * 1024


@dataclass(frozen=True)
class InputFile:
    """One input file of one table, with hive partition values found in its path."""

    table: str
    path: str
    format: str
    size: int
    mtime: float
    partition: dict = field(default_factory=dict)
    #: object storage: the ETag, and the non-secret storage options to open it with
    etag: str | None = None
    storage_options: dict | None = None

    def fingerprint(self) -> dict:
        """What says the file changed: path, size and mtime (for a URL: last-modified,
        plus the ETag when the store gives one)."""
        fp = {"path": self.path, "size": self.size, "mtime": self.mtime}
        if self.etag is not None:
            fp["etag"] = self.etag
        return fp


def list_inputs(
    table: str, tc: TableConfig, base: Path, storage_options: dict | None = None
) -> list[InputFile]:
    """All files of one configured table, in a stable (sorted) order."""
    fmt = tc.resolved_format()
    if fmt == "delta":
        return _list_delta_inputs(table, tc, base, storage_options)
    if is_remote(tc.path):
        return _list_url_inputs(table, tc.path, fmt, storage_options, explicit=bool(tc.format))
    path = _local(tc.path, base)
    spec = str(path)
    if any(ch in spec for ch in "*?["):
        paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        paths = _glob_of_one_format(table, spec, paths, tc.format)
        parts = [{} for _ in paths]
    elif path.is_file():
        paths, parts = [str(path)], [{}]
    elif path.is_dir():
        if (path / "_delta_log").is_dir():
            raise _delta_as_files(table, path)
        if not tc.format:
            formats.refuse_mixed(table, str(path), _visible_files(path))
        suffixes = (
            (".parquet", ".parq", ".pq", "")
            if fmt == "parquet"
            else (".csv", ".tsv", ".txt", ".gz")
        )
        paths = sorted(
            str(p)
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in suffixes and not _hidden(p.relative_to(path))
        )
        parts = [_hive_keys(Path(p).relative_to(path)) for p in paths]
    else:
        raise DataError(f"data.{table}.path: {path} does not exist")
    if not paths:
        raise DataError(f"data.{table}.path: {path} holds no {fmt} files")
    out = []
    for p, part in zip(paths, parts, strict=True):
        st = os.stat(p)
        out.append(InputFile(table, p, fmt, st.st_size, st.st_mtime, dict(part or {})))
    return out


def _local(p: str, base: Path) -> Path:
    raw = Path(local_path(p)).expanduser()
    return raw if raw.is_absolute() else base / raw


def _list_delta_inputs(table, tc, base, storage_options) -> list[InputFile]:
    """A Delta table's snapshot (:mod:`bigseg.io.delta`): one input per data file, read
    as Parquet, with the partition values from the log."""
    where = f"data.{table}"
    loc = tc.path if is_remote(tc.path) else str(_local(tc.path, base))
    version, files = delta.snapshot(loc, tc.delta and tc.delta.version, storage_options, where)
    if not files:
        raise DataError(f"{where}.path: {loc} (Delta version {version}) holds no data files")
    opts = dict(storage_options) if storage_options and is_remote(loc) else None
    return [
        InputFile(table, f.uri, "parquet", f.size, f.mtime, dict(f.partition), None, opts)
        for f in files
    ]


def _delta_as_files(table: str, path) -> ConfigError:
    """A Delta table given as a Parquet directory: its folder also holds the files that
    deletes and overwrites removed from the table, which a listing would read back."""
    return ConfigError(
        f"data.{table}.path: {path} is a Delta table (it has _delta_log/): set "
        f"data.{table}.format: delta (pip install 'bigseg[delta]'); read as Parquet files "
        "it would bring back rows the table deleted or overwrote"
    )


def _hidden(rel) -> bool:
    """A path below a table's folder or prefix that is no data: a ``.`` or ``_`` name
    (``_SUCCESS``, ``.crc``, ``_delta_log/``) or one inside such a folder."""
    return any(part.startswith((".", "_")) for part in Path(rel).parts)


def _visible_files(path: Path) -> list[str]:
    """The data files under directory ``path``, relative to it."""
    rels = (p.relative_to(path) for p in sorted(path.rglob("*")) if p.is_file())
    return [str(r) for r in rels if not _hidden(r)]


def _glob_of_one_format(table: str, spec: str, paths: list[str], fmt: str | None) -> list[str]:
    """The files a glob matched, as read: with ``format`` set, that format's files (as
    for a directory); without, all of them, refused when they are of several formats."""
    if fmt:
        return formats.of_format(paths, fmt)
    formats.refuse_mixed(table, spec, paths, glob=True)
    return paths


def _hive_keys(rel: Path) -> dict:
    """``year=2024/month=01/part.parquet`` -> ``{"year": 2024, "month": 1}``."""
    out = {}
    for seg in rel.parts[:-1]:
        if "=" in seg:
            k, v = seg.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                out[k] = v
    return out


def _source_names(table: str, tc: TableConfig) -> dict[str, str]:
    """canonical -> source column name, for every canonical column of the table."""
    return {canon: tc.columns.get(canon, canon) for canon in SCHEMAS[table].columns}


def _open_batches(
    f: InputFile, tc: TableConfig, wanted: list[str]
) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
    if is_remote(f.path):
        yield from _open_url_batches(f, tc, wanted)
        return
    yield from _open_source_batches(f, f.path, f.path, tc, wanted)


def _open_source_batches(f, src, header_src, tc, wanted):
    """Batches of ``f`` read from ``src`` (a local path or an open file); a CSV header is
    read from ``header_src`` first."""
    if f.format == "parquet":
        try:
            pf = tables.open_parquet(src)
        except Exception as e:  # noqa: BLE001 - any read failure: name the file
            raise DataError(f"{f.path}: cannot read as Parquet ({type(e).__name__}: {e})") from None
        names = pf.schema_arrow.names
        present = [c for c in wanted if c in names]
        src_of = _source_names(f.table, tc)
        dictionary = [src_of[c] for c in CATEGORICAL.get(f.table, ()) if src_of[c] in present]
        try:
            if dictionary:
                pf = tables.open_parquet(src, dictionary, pf.metadata)
            for b in pf.iter_batches(batch_size=BATCH_ROWS, columns=present):
                yield b, names
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{f.path}: corrupt Parquet data ({type(e).__name__}: {e})") from None
        return
    opts = tc.csv
    read_opts = pacsv.ReadOptions(block_size=1 << 22, autogenerate_column_names=not opts.header)
    parse_opts = pacsv.ParseOptions(delimiter=opts.delimiter)
    try:
        # read the header once to learn the columns, then stream only those we need,
        # all as strings: type coercion (and its error messages) happens in one place
        with pacsv.open_csv(header_src, read_options=read_opts, parse_options=parse_opts) as r:
            names = r.schema.names
        present = [c for c in wanted if c in names]
        conv = pacsv.ConvertOptions(
            column_types={c: pa.binary() for c in present}, include_columns=present
        )
        with pacsv.open_csv(
            src, read_options=read_opts, parse_options=parse_opts, convert_options=conv
        ) as r:
            for b in r:
                yield b, names
    except pa.ArrowInvalid as e:
        raise DataError(f"{f.path}: cannot parse as CSV ({e})") from None


@dataclass
class Coerced:
    """One batch after mapping and coercion: the good rows, and the bad rows (raw values
    as text, PII dropped) with ``_reason``, ``_file`` and ``_row``."""

    good: pa.Table
    bad: pa.Table | None
    #: row number in the file of each good row
    rows: np.ndarray | None = None


def _missing(table: str, canon: str, s: str, f: InputFile, names: list[str]) -> DataError:
    present = ", ".join(names) or "(none)"
    hint = ""
    if f.format == "csv" and any(d in n for n in names for d in ",;|\t"):
        hint = f" The header looks split on the wrong character: check data.{table}.csv.delimiter."
    return DataError(
        f"{f.path}: required column '{canon}' (source column '{s}') is missing; "
        f"columns present: {present}. Map it with data.{table}.columns.{canon}: <name>.{hint}"
    )


def _dictionary_of_strings(t: pa.DataType) -> bool:
    return pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)


def coerce_batch(
    table: str,
    batch: pa.RecordBatch,
    f: InputFile,
    tc: TableConfig,
    file_columns: list[str] | None = None,
    validation=None,
    row0: int = 0,
) -> Coerced:
    """Rename to canonical names, add hive partition columns, coerce types and apply the
    row rules of :mod:`bigseg.store.rules`. A missing required column or an id column of
    an impossible type is an error for the whole file; bad values only for their rows."""
    from bigseg.config import ValidationConfig

    v = validation or ValidationConfig()
    schema = SCHEMAS[table]
    src = _source_names(table, tc)
    n = batch.num_rows
    r = rules.Reasons(n)
    raw, cols = {}, {}
    for canon, target in schema.columns.items():
        s = src[canon]
        if s in batch.schema.names:
            arr = batch.column(s)
        elif s in f.partition:
            arr = pa.array([f.partition[s]] * n)
        elif canon in schema.required:
            raise _missing(table, canon, s, f, file_columns or batch.schema.names)
        else:
            continue
        if pa.types.is_binary(arr.type):  # CSV text arrives as bytes: check the encoding
            arr, bad_utf8 = rules.as_utf8(arr)
            if bad_utf8 is not None:
                r.mark(bad_utf8, f"{canon}: invalid UTF-8")
        raw[canon] = arr
        where = f"{f.path}: column '{s}'" + (f" (canonical '{canon}')" if s != canon else "")
        try:
            if target == ID:
                arr = coerce.coerce_id(arr, where)
            elif target == pa.timestamp("us"):
                fmt = tc.csv.timestamp_format if f.format == "csv" else None
                arr = coerce.timestamps(arr, fmt, canon, r)
            elif target == pa.string() and _dictionary_of_strings(arr.type):
                pass  # kept dictionary-encoded (schema.CATEGORICAL); its values are text
            elif pa.types.is_string(arr.type) and not pa.types.is_string(target):
                dec = tc.csv.decimal if f.format == "csv" else "."
                arr = rules.parse_strings(arr, target, canon, r, dec)
            else:
                arr = arr.cast(target)
        except pa.ArrowException as e:
            raise DataError(f"{where}: cannot convert to {target}: {e}") from None
        if canon in schema.required and arr.null_count:
            r.mark(coerce.isnull(arr), f"{canon}: null")
        cols[canon] = arr
    rules.check_values(
        table, cols, r, max_amount=v.max_amount, categories=v.categories.get(table, {})
    )
    good = pa.Table.from_arrays(list(cols.values()), names=list(cols))
    bad_mask = r.bad
    if not bad_mask.any():
        return Coerced(good, None, np.arange(row0, row0 + n))
    keep = pa.array(~bad_mask)
    idx = pa.array(np.flatnonzero(bad_mask))
    q = {c: pc.take(a, idx).cast(pa.string()) for c, a in raw.items() if c not in schema.pii}
    q["_reason"] = pa.array(r.reason[bad_mask], pa.string())
    q["_file"] = pa.array([f.path] * len(idx), pa.string())
    q["_row"] = pa.array(np.flatnonzero(bad_mask) + row0, pa.int64())
    return Coerced(good.filter(keep), pa.table(q), np.flatnonzero(~bad_mask) + row0)


def read_file(f: InputFile, tc: TableConfig, validation=None) -> Iterator[Coerced]:
    """Stream one input file as canonical batches of at most ``BATCH_ROWS`` rows, each
    split into good rows and quarantined ones."""
    wanted = list(dict.fromkeys(_source_names(f.table, tc).values()))
    row0 = 0
    for b, names in _open_batches(f, tc, wanted):
        if b.num_rows:
            yield coerce_batch(f.table, b, f, tc, names, validation, row0)
        row0 += b.num_rows


# -- inputs on object storage (s3://, gs://, abfs://) ----------------------------------------
def _list_url_inputs(
    table: str, url: str, fmt: str, storage_options: dict | None, explicit: bool = False
) -> list[InputFile]:
    """The files of a table on object storage, from one listing of its prefix (or one
    glob): a file, a prefix (hive partitions and ``_``/``.`` names as for directories)
    or a glob. ``mtime`` is the object's last-modified time and ``etag`` its ETag.
    ``explicit``: ``format`` was set; without it, files of several formats are refused
    as in a local directory or glob."""
    st = storage_for(url, storage_options)
    is_glob = any(ch in url.split("://", 1)[1] for ch in "*?[")
    try:
        if is_glob:
            found, root = st.glob(url), None
        else:
            found = st.find(url)
            root = None if [i.path for i in found] == [url] else url.rstrip("/") + "/"
        missing = not found and not st.exists(url)
    except BigsegError:
        raise
    except Exception as e:  # noqa: BLE001 - unreachable, refused, no credentials: exit 8
        raise StorageError(
            f"data.{table}.path: {url}: cannot list ({type(e).__name__}: {e}). Check the "
            "endpoint and the credentials in the environment (AWS_* variables or profile, "
            "GOOGLE_APPLICATION_CREDENTIALS, AZURE_* variables)"
        ) from None
    if missing:
        raise DataError(f"data.{table}.path: {url} does not exist")
    if (
        root
        and fmt == "parquet"
        and any(i.path[len(root) :].startswith("_delta_log/") for i in found)
    ):
        raise _delta_as_files(table, url)
    if is_glob:
        keep = set(
            _glob_of_one_format(table, url, [i.path for i in found], fmt if explicit else None)
        )
        found = [i for i in found if i.path in keep]
    elif root and not explicit:
        rel = [i.path[len(root) :] for i in found]
        formats.refuse_mixed(table, url, [r for r in rel if not _hidden(r)])
    files: list[tuple[FileInfo, dict]] = []
    for i in found:
        if root is None:
            files.append((i, {}))
            continue
        rel = Path(i.path[len(root) :])
        suffixes = (".parquet", ".parq", ".pq", "") if fmt == "parquet" else _CSV_SUFFIXES
        if rel.suffix.lower() in suffixes and not _hidden(rel):
            files.append((i, _hive_keys(rel)))
    if not files:
        raise DataError(f"data.{table}.path: {url} holds no {fmt} files")
    opts = dict(storage_options) if storage_options else None
    return [
        InputFile(table, i.path, fmt, i.size, i.mtime_ns / 1e9, part, i.etag, opts)
        for i, part in files
    ]


_CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".gz")


def _open_url_batches(f: InputFile, tc: TableConfig, wanted: list[str]):
    """Batches of an input file on object storage, streamed through the storage seam."""
    st = storage_for(f.path, f.storage_options)
    with contextlib.ExitStack() as stack:

        def open_one():
            try:
                fh = stack.enter_context(st.open_read(f.path))
            except OSError as e:
                raise DataError(f"{f.path}: cannot open ({type(e).__name__}: {e})") from None
            if f.format == "csv" and f.path.lower().endswith(".gz"):
                return stack.enter_context(pa.CompressedInputStream(fh, "gzip"))
            return fh

        header = open_one() if f.format == "csv" else None
        yield from _open_source_batches(f, open_one(), header, tc, wanted)
