"""Object storage through fsspec: :class:`FsspecStorage` implements
:class:`~bigseg.io.storage.Storage` on s3fs (``s3://``), gcsfs (``gs://``) and adlfs
(``abfs://``, ``az://``).

* **Credentials** come only from each cloud's standard environment, read where the
  filesystem is built: AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
  ``AWS_ENDPOINT_URL`` for S3-compatible stores, workload identity), Google
  application-default credentials (``GOOGLE_APPLICATION_CREDENTIALS``), Azure variables
  (``AZURE_STORAGE_ACCOUNT_NAME``, ``AZURE_CLIENT_ID``, ...) or managed identity.
  :data:`OPTION_KEYS` are the only options accepted, none of them secret.
* **Pickling** (to Dask workers) carries the scheme and those options only: each worker
  builds its own filesystem from its own environment, so no secret travels and none
  expires mid-job in a copy (s3fs#632).
* **No cached listings**: filesystems are built with ``skip_instance_cache=True`` and
  ``use_listings_cache=False``, and every listing invalidates first (dask#7965).
* **Create-only writes** (:meth:`FsspecStorage.put_if_absent`) use fsspec's
  ``mode="create"``: s3fs sends ``If-None-Match: *``, gcsfs ``ifGenerationMatch=0``;
  adlfs uploads with ``overwrite=False`` (Azure's ``If-None-Match: *``).
* A whole-object write (:meth:`FsspecStorage.write_bytes`) is atomic on these stores: a
  single PUT, or a multipart upload that appears only when completed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from bigseg.errors import ConfigError
from bigseg.io.storage import SCHEMES, FileInfo, Location, Storage, url_scheme

#: the storage options bigseg accepts (none secret), with the protocols they apply to;
#: each protocol ignores the others' keys
OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "endpoint_url": ("s3", "gcs"),
    "region": ("s3",),
    "anon": ("s3", "gcs", "abfs"),
    "use_ssl": ("s3",),
    "requester_pays": ("s3", "gcs"),
    "project": ("gcs",),
    "account_name": ("abfs",),
}
#: attempts of a create-only write that meets a concurrent one (S3 answers 409)
CONFLICT_RETRIES = 5


def filesystem_kwargs(protocol: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """fsspec keyword arguments for ``protocol`` from bigseg's storage options.

    Raises
    ------
    ConfigError
        A key that is not in :data:`OPTION_KEYS` (credentials are never options).
    """
    kw: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in OPTION_KEYS:
            raise ConfigError(
                f"storage_options.{key}: not allowed (credentials come from the environment); "
                f"allowed: {', '.join(OPTION_KEYS)}"
            )
        if value is None or protocol not in OPTION_KEYS[key]:
            continue
        if protocol == "s3" and key == "region":
            kw.setdefault("client_kwargs", {})["region_name"] = value
        elif protocol == "gcs" and key == "anon":
            if value:
                kw["token"] = "anon"
        else:
            kw[key] = value
    return kw


def _mtime_ns(info: Mapping[str, Any]) -> int:
    for key in ("LastModified", "last_modified", "mtime", "updated", "modified"):
        v = info.get(key)
        if isinstance(v, datetime):
            return int(v.timestamp() * 1e9)
        if isinstance(v, int | float):
            return int(v * 1e9)
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1e9)
    return 0


def _etag(info: Mapping[str, Any]) -> str | None:
    v = info.get("ETag") or info.get("etag")
    return str(v).strip('"') if v else None


def _response(e: BaseException) -> tuple[str, int]:
    """``(error code, HTTP status)`` of the service error behind ``e`` (s3fs raises an
    ``OSError`` caused by botocore's ``ClientError``), or ``("", 0)``."""
    seen = 0
    while e is not None and seen < 5:
        r = getattr(e, "response", None)
        if isinstance(r, dict):
            err = r.get("Error") or {}
            status = (r.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
            return str(err.get("Code") or ""), int(status)
        code = getattr(e, "status_code", None) or getattr(e, "code", None)
        if isinstance(code, int):  # gcsfs HttpError, Azure HttpResponseError
            return type(e).__name__, code
        e, seen = e.__cause__ or e.__context__, seen + 1
    return "", 0


def _exists_error(e: BaseException) -> bool:
    """True when ``e`` says a create-only write found the object there."""
    code, status = _response(e)
    return (
        isinstance(e, FileExistsError)
        or code in ("PreconditionFailed", "ResourceExistsError", "BlobAlreadyExists")
        or status == 412
        or type(e).__name__ == "ResourceExistsError"
    )


def _conflict_error(e: BaseException) -> bool:
    """True when a create-only write met a concurrent one (S3: 409, retry)."""
    code, status = _response(e)
    return code == "ConditionalRequestConflict" or status == 409


class FsspecStorage(Storage):
    """:class:`Storage` on an fsspec object-store filesystem.

    Parameters
    ----------
    scheme
        A key of :data:`bigseg.io.storage.SCHEMES` (``"s3"``, ``"gs"``, ``"az"``, ...).
    options
        Non-secret options (:data:`OPTION_KEYS`).

    Raises
    ------
    ConfigError
        A storage option that is not allowed, or the package of the scheme is missing.
    """

    def __init__(self, scheme: str, options: Mapping[str, Any] | None = None):
        if scheme not in SCHEMES:
            raise ConfigError(f"{scheme}://: unsupported URL scheme")
        self.scheme = scheme
        self.protocol, self._extra, self._package = SCHEMES[scheme]
        self.options = dict(options or {})
        self._kwargs = filesystem_kwargs(self.protocol, self.options)
        self._fs = None
        if importlib.util.find_spec(self._package) is None:  # fail now, naming the extra
            raise self._missing(f"No module named {self._package!r}")

    def __reduce__(self):
        # the scheme and the non-secret options only: a worker builds its own filesystem
        # (one per process and options: tasks share its connections)
        return (shared, (self.scheme, tuple(sorted(self.options.items()))))

    def __repr__(self) -> str:
        return f"FsspecStorage({self.scheme!r}, {self.options!r})"

    @property
    def fs(self):
        """The fsspec filesystem (built on first use, never from the instance cache)."""
        if self._fs is None:
            try:
                import fsspec

                self._fs = fsspec.filesystem(
                    self.protocol,
                    skip_instance_cache=True,
                    use_listings_cache=False,
                    **self._kwargs,
                )
            except ImportError as e:
                raise self._missing(str(e)) from None
        return self._fs

    def _missing(self, why: str) -> ConfigError:
        return ConfigError(
            f"{self.scheme}:// URLs need {self._package}: pip install 'bigseg[{self._extra}]' "
            f"({why})"
        )

    @property
    def filesystem(self):
        """The filesystem for pyarrow reads and writes: fsspec's, wrapped for pyarrow."""
        if getattr(self, "_pafs", None) is None:
            import pyarrow.fs as pafs

            self._pafs = pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        return self._pafs

    def key(self, path: Location) -> str:
        """``path`` without its scheme (``bucket/key``): what pyarrow's filesystem takes."""
        return self.fs._strip_protocol(str(path))

    def _url(self, key: str) -> str:
        """A key the filesystem returned (``bucket/key``) as a full URL."""
        return key if url_scheme(key) else f"{self.scheme}://{key}"

    def _fresh(self, path: Location) -> str:
        p = str(path)
        self.fs.invalidate_cache(self.fs._strip_protocol(p))
        return p

    # -- reading -------------------------------------------------------------------------
    def read_bytes(self, path: Location) -> bytes:
        return self.fs.cat_file(str(path))

    def open_read(self, path: Location) -> BinaryIO:
        return self.fs.open(str(path), "rb")

    def exists(self, path: Location) -> bool:
        return self.fs.exists(self._fresh(path))

    def is_file(self, path: Location) -> bool:
        return self.fs.isfile(self._fresh(path))

    def is_dir(self, path: Location) -> bool:
        return self.fs.isdir(self._fresh(path))

    def list(self, path: Location) -> list[str]:
        p = self._fresh(path)
        me = self.fs._strip_protocol(p).rstrip("/")
        try:
            entries = self.fs.ls(p, detail=False)
        except FileNotFoundError:
            return []
        names = {e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != me}
        return sorted(names)

    def info(self, path: Location) -> tuple[int, int]:
        i = self.fs.info(self._fresh(path))
        return int(i.get("size") or 0), _mtime_ns(i)

    def _file_info(self, key: str, i: Mapping[str, Any]) -> FileInfo:
        return FileInfo(self._url(key), int(i.get("size") or 0), _mtime_ns(i), _etag(i))

    def find(self, path: Location) -> list[FileInfo]:
        p = self._fresh(path)
        try:
            found = self.fs.find(p, detail=True, withdirs=False)
        except FileNotFoundError:
            return []
        return sorted(
            self._file_info(k, i) for k, i in found.items() if i.get("type", "file") == "file"
        )

    def glob(self, pattern: Location) -> list[FileInfo]:
        p = self._fresh(pattern)
        found = self.fs.glob(p, detail=True)
        return sorted(
            self._file_info(k, i) for k, i in found.items() if i.get("type", "file") == "file"
        )

    # -- writing -------------------------------------------------------------------------
    def write_bytes(self, path: Location, data: bytes) -> None:
        self.fs.pipe_file(str(path), bytes(data))

    def open_write(self, path: Location) -> BinaryIO:
        return self.fs.open(str(path), "wb")

    def put_if_absent(self, path: Location, data: bytes) -> bool:
        """Create ``path`` only if no object is there (``If-None-Match: *`` on S3 and
        Azure, ``ifGenerationMatch=0`` on GCS); False when one was."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                self._create(str(path), bytes(data))
                return True
            except Exception as e:  # noqa: BLE001 - each filesystem words "exists" its own way
                if _exists_error(e):
                    return False
                if not _conflict_error(e) or attempt + 1 == CONFLICT_RETRIES:
                    raise
                time.sleep(0.05 * 2**attempt)  # a concurrent create is in flight
        raise AssertionError("unreachable")

    def _create(self, path: str, data: bytes) -> None:
        if self.protocol == "abfs":
            self.fs.pipe_file(path, data, overwrite=False)
        else:
            self.fs.pipe_file(path, data, mode="create")

    def makedirs(self, path: Location) -> None:
        """Nothing: object stores have no directories (a prefix exists once a key does)."""

    def copy(self, src: Location, dst: Location) -> None:
        """Server-side copy of one object (the copy's modification time is now: object
        stores cannot set it)."""
        self.fs.copy(str(src), str(dst))

    # -- deleting ------------------------------------------------------------------------
    def delete(self, path: Location) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(str(path))

    def delete_tree(self, path: Location) -> bool:
        p = self._fresh(path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(p, recursive=True)
        return not self.exists(p)


@functools.lru_cache(maxsize=16)
def shared(scheme: str, options: tuple = ()) -> FsspecStorage:
    """The process's storage for ``scheme`` and ``options`` (how a pickled
    :class:`FsspecStorage` comes back: tasks in one worker share its filesystem)."""
    return FsspecStorage(scheme, dict(options))


class ObjectPath:
    """A location in object storage that reads like a :class:`pathlib.Path`:
    ``/`` joins, :attr:`name`, :attr:`parent`, and the few file operations bigseg's
    writers use, each through its :class:`FsspecStorage` (which it carries, pickled
    without secrets, so a task on a worker reaches the same store with the same
    non-secret options). ``mkdir`` does nothing: object stores have no folders."""

    __slots__ = ("storage", "url")

    def __init__(self, url: str, storage: FsspecStorage):
        self.url = str(url).rstrip("/")
        self.storage = storage

    def __reduce__(self):
        return (ObjectPath, (self.url, self.storage))

    # -- pure path ----------------------------------------------------------------------
    def __truediv__(self, part) -> ObjectPath:
        return ObjectPath(f"{self.url}/{str(part).strip('/')}", self.storage)

    def joinpath(self, *parts) -> ObjectPath:
        p = self
        for part in parts:
            p = p / part
        return p

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __lt__(self, other) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        n = self.name
        return n[n.rfind(".") :] if "." in n.lstrip(".") else ""

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.url.rsplit("/", 1)[0], self.storage)

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def relative_to(self, other) -> PurePosixPath:
        base = str(other).rstrip("/") + "/"
        if not self.url.startswith(base):
            raise ValueError(f"{self.url} is not under {other}")
        return PurePosixPath(self.url[len(base) :])

    @property
    def key(self) -> str:
        return self.storage.key(self.url)

    # -- file operations ----------------------------------------------------------------
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing: a prefix exists once a key under it does."""

    def exists(self) -> bool:
        return self.storage.exists(self.url)

    def is_file(self) -> bool:
        return self.storage.is_file(self.url)

    def is_dir(self) -> bool:
        return self.storage.is_dir(self.url)

    def iterdir(self):
        return [self / n for n in self.storage.list(self.url)]

    def read_bytes(self) -> bytes:
        return self.storage.read_bytes(self.url)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        self.storage.write_bytes(self.url, data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))
