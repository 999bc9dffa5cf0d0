"""Delta Lake tables as inputs (``format: delta``), through the optional ``deltalake``
package (delta-rs; ``pip install 'bigseg[delta]'``).

delta-rs reads only the transaction log, on the client: which data files make up the
snapshot (the latest one, or ``delta: {version: N}``), with their sizes, modification
times and partition values (:func:`snapshot`). bigseg then reads each data file as a plain
Parquet file, one split task per file, exactly as it reads a Parquet directory: the
workers never need deltalake, and the partition columns (not stored in the files) come
from the log as hive partition values come from a path.

A data file read as Parquet gives the table's rows only when the file means what it
holds. Where the protocol says otherwise the table is refused with a
:class:`~bigseg.errors.DataError` (exit 3: the table, not the config, has to change),
naming the feature and the fix:

* **deletion vectors** on any data file of the snapshot: rows deleted in the log but
  still in the file. A table with the feature enabled (``delta.enableDeletionVectors``,
  the default on some platforms) whose snapshot holds no vector is read;
* **column mapping** (``delta.columnMapping.mode`` ``name`` or ``id``): the files name
  their columns by physical names, not the table's;
* any other reader feature not in :data:`HONOURED`, and reader versions above 3.

Each data file is immutable, so its fingerprint (path, size, modification time) never
changes: a version that adds files adds inputs (incremental ingest reads only those), and
one that removes files (a delete, an overwrite, OPTIMIZE) makes an ingested input
disappear, so the store is rebuilt. A change to an existing file's rows without a new file
would be a deletion vector, which is refused.

Object storage: delta-rs takes options of its own; :func:`delta_options` maps bigseg's
non-secret ``storage_options`` to them, and credentials come from the environment as for
every other input (``AWS_*`` variables, profiles, workload identity).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from bigseg.errors import ConfigError, DataError, StorageError
from bigseg.io.storage import is_remote, local_path, url_scheme

PACKAGE, EXTRA = "deltalake", "delta"

#: reader features whose tables read right file by file as Parquet: timestampNtz (the files
#: hold timestamps without a time zone, taken as they are), typeWidening (older files hold
#: narrower types; every column is cast per file anyway), v2Checkpoint and
#: vacuumProtocolCheck (how the log and VACUUM work: delta-rs reads the log), variantType
#: (delta-rs declares it on every table it writes with table features; a variant column
#: mapped to a canonical one fails the type check with its name)
HONOURED = frozenset(
    {
        "timestampNtz",
        "typeWidening",
        "typeWidening-preview",
        "v2Checkpoint",
        "vacuumProtocolCheck",
        "variantType",
        "variantType-preview",
    }
)
#: what to do about a refused table, per feature
FIXES = {
    "deletionVectors": "purge them (Databricks/Spark: REORG TABLE ... APPLY (PURGE)) or "
    "disable them and rewrite the affected files",
    "columnMapping": "write a copy of the table without column mapping",
}
EXPORT = "or export the snapshot to Parquet and read that with format: parquet"


@dataclass(frozen=True)
class DeltaFile:
    """One data file of a snapshot."""

    #: a local path, or a URL on object storage
    uri: str
    size: int
    #: the add action's modification time, in seconds
    mtime: float
    #: partition column -> value (typed by the table's schema; None for a null partition)
    partition: dict = field(default_factory=dict)


def _missing(where: str, why: str) -> ConfigError:
    return ConfigError(
        f"{where}.format: delta needs the {PACKAGE} package: pip install 'bigseg[{EXTRA}]' ({why})"
    )


def require(where: str) -> None:
    """Fail now (exit 2), naming the extra, when deltalake is not installed."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise _missing(where, f"No module named {PACKAGE!r}")


def check_table_options(where: str, fmt: str | None, options: Any) -> None:
    """The config's checks of a table (``where``: ``data.<table>``): ``delta:`` options
    only with ``format: delta`` (a version pin that is ignored reads other rows than were
    asked for), and deltalake installed when a table needs it."""
    if options is not None and fmt != "delta":
        raise ConfigError(f"{where}.delta: only for format: delta (set {where}.format: delta)")
    if fmt == "delta":
        require(where)


def delta_options(location: str, options: Mapping[str, Any] | None) -> dict[str, str]:
    """delta-rs storage options for ``location`` from bigseg's non-secret
    ``storage_options`` (:data:`bigseg.io.objectstore.OPTION_KEYS`); each store ignores
    the others' keys, as fsspec's do."""
    o = {k: v for k, v in (options or {}).items() if v is not None}
    scheme = url_scheme(location)
    out: dict[str, str] = {}
    if scheme in ("s3", "s3a"):
        endpoint = o.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL", "")
        if "endpoint_url" in o:
            out["AWS_ENDPOINT_URL"] = o["endpoint_url"]
        if "region" in o:
            out["AWS_REGION"] = o["region"]
        if o.get("anon"):
            out["AWS_SKIP_SIGNATURE"] = "true"
        if o.get("requester_pays"):
            out["AWS_REQUEST_PAYER"] = "true"
        # delta-rs refuses plain HTTP unless told; an http:// endpoint (a local
        # S3-compatible server) or use_ssl: false says so, as it does to s3fs
        if endpoint.startswith("http://") or o.get("use_ssl") is False:
            out["AWS_ALLOW_HTTP"] = "true"
    elif scheme in ("abfs", "abfss", "az"):
        if "account_name" in o:
            out["AZURE_STORAGE_ACCOUNT_NAME"] = o["account_name"]
        if o.get("anon"):
            out["AZURE_SKIP_SIGNATURE"] = "true"
    elif scheme in ("gs", "gcs") and o.get("anon"):
        out["GOOGLE_SKIP_SIGNATURE"] = "true"
    return out


def snapshot(
    location: str, version: int | None, options: Mapping[str, Any] | None, where: str
) -> tuple[int, list[DeltaFile]]:
    """``(version, data files)`` of the Delta table at ``location`` (a local path or a
    URL), at ``version`` or the latest; ``where`` (``data.<table>``) names the config
    keys in errors. Refuses the tables :func:`check_protocol` refuses."""
    import pyarrow as pa

    dt = _open(location, version, options, where)
    check_protocol(dt, location, where)
    actions = pa.table(dt.get_add_actions(flatten=True))
    parts = [c for c in actions.column_names if c.startswith("partition.")]
    rows = actions.select(["path", "size_bytes", "modification_time", *parts]).to_pylist()
    root = location.rstrip("/") + "/"
    files = [
        DeltaFile(
            _file_location(root, r["path"]),
            int(r["size_bytes"]),
            r["modification_time"] / 1e3,
            {c.removeprefix("partition."): r[c] for c in parts},
        )
        for r in rows
    ]
    return dt.version(), sorted(files, key=lambda f: f.uri)


def _file_location(root: str, path: str) -> str:
    """A data file's location: the log holds its path as a URI relative to the table's
    root (percent-encoded), or an absolute URI (a shallow clone's files)."""
    p = unquote(path)
    if url_scheme(p) is None:
        return root + p
    return p if is_remote(p) else local_path(p)


def _open(location: str, version: int | None, options, where: str):
    """The ``DeltaTable`` at ``version``, every failure turned into bigseg's errors."""
    try:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError
    except ImportError as e:
        raise _missing(where, str(e)) from None
    if not is_remote(location) and not os.path.isdir(location):
        raise DataError(f"{where}.path: {location} does not exist")
    try:
        return DeltaTable(
            location, version=version, storage_options=delta_options(location, options)
        )
    except TableNotFoundError:
        raise DataError(
            f"{where}.path: {location} is not a Delta table (no _delta_log/ there): give the "
            f"table's root, or the right {where}.format"
        ) from None
    except Exception as e:  # noqa: BLE001 - named below, by what the latest version says
        failed = e
    if version is None:
        raise _unreadable(location, where, failed)
    latest = _open(location, None, options, where).version()
    if version > latest:
        raise ConfigError(
            f"{where}.delta.version: {version}, but the latest version of {location} is "
            f"{latest}: give a version in 0..{latest}, or none for the latest"
        )
    raise DataError(
        f"{where}.delta.version: version {version} of {location} cannot be read "
        f"({type(failed).__name__}: {failed}); its log may have been cleaned up "
        "(delta.logRetentionDuration): read a later version"
    )


def _unreadable(location: str, where: str, e: Exception) -> Exception:
    why = f"{type(e).__name__}: {e}"
    if is_remote(location):  # unreachable, refused, no credentials: exit 8
        return StorageError(
            f"{where}.path: {location}: cannot read the Delta log ({why}). Check the "
            "endpoint and the credentials in the environment (AWS_* variables or profile, "
            "GOOGLE_APPLICATION_CREDENTIALS, AZURE_* variables)"
        )
    return DataError(f"{where}.path: {location}: cannot read the Delta log ({why})")


def check_protocol(dt, location: str, where: str) -> None:
    """Refuse (DataError, exit 3) a table whose data files, read as Parquet, would not
    give its rows: see the module's docstring."""
    p = dt.protocol()
    features = set(p.reader_features or ())
    mode = (dt.metadata().configuration or {}).get("delta.columnMapping.mode") or "none"
    at = f"{where}.path: {location} (version {dt.version()})"
    if p.min_reader_version > 3:
        raise DataError(
            f"{at} needs Delta reader version {p.min_reader_version}; bigseg reads up to 3: "
            f"rewrite it with an older protocol, {EXPORT}"
        )
    if mode != "none":
        raise DataError(
            f"{at} uses column mapping (columnMapping, delta.columnMapping.mode = {mode}): "
            "its data files do not name columns as the table does, and bigseg reads them "
            f"as Parquet. Fix: {FIXES['columnMapping']}, {EXPORT}"
        )
    unknown = sorted(features - HONOURED - {"deletionVectors", "columnMapping"})
    if unknown:
        raise DataError(
            f"{at} uses reader feature(s) {', '.join(unknown)}, which bigseg does not "
            f"honour: rewrite the table without them, {EXPORT}"
        )
    if "deletionVectors" in features:
        n = _files_with_deletion_vectors(dt)
        if n:
            raise DataError(
                f"{at} has deletion vectors (deletionVectors) on {n} data file(s): rows "
                "deleted in the log are still in those files, and bigseg reads them as "
                f"Parquet. Fix: {FIXES['deletionVectors']}, {EXPORT}"
            )


def _files_with_deletion_vectors(dt) -> int:
    """How many data files of the snapshot carry a deletion vector (delta-rs lists only
    those)."""
    import pyarrow as pa

    reader = pa.RecordBatchReader.from_stream(dt.deletion_vectors())
    return sum(b.num_rows for b in reader)
