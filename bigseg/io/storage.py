"""Storage: the operations bigseg needs from where its outputs live.

:class:`Storage` is the interface; :class:`LocalStorage` implements it on a local (or
network) file system. A later issue adds an fsspec implementation for object-store URLs
(``s3://``, ``gs://``, ``abfs://``), so the interface speaks of *locations* (a path or a
URL as ``str | Path``) and whole-object operations, never of rename or hard links:

* :meth:`Storage.put_if_absent` is the create-only write every commit rests on (local:
  a hard link of a complete temporary file, falling back to ``O_EXCL``; object stores:
  ``If-None-Match: *``), see ``DESIGN.md`` section 7;
* :meth:`Storage.write_bytes` replaces an object whole and durably (local: temporary
  file, ``fsync``, rename, ``fsync`` of the directory);
* :attr:`Storage.filesystem` is what pyarrow reads and writes tables through (None:
  local paths as they are).

Only ``bigseg/io/`` renames, links or deletes (ruff's banned-api and
``tests/test_io_seam.py`` check it).
"""

from __future__ import annotations

import abc
import contextlib
import glob as globmod
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from bigseg.errors import ConfigError

Location = str | Path

#: URL scheme -> (fsspec protocol, the extra that installs it, the package it needs)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "s3": ("s3", "s3", "s3fs"),
    "s3a": ("s3", "s3", "s3fs"),
    "gs": ("gcs", "gcs", "gcsfs"),
    "gcs": ("gcs", "gcs", "gcsfs"),
    "abfs": ("abfs", "azure", "adlfs"),
    "abfss": ("abfs", "azure", "adlfs"),
    "az": ("abfs", "azure", "adlfs"),
}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(location: Location) -> str | None:
    """The lower-case scheme of a URL (``"s3"``, ``"file"``), None for a plain path."""
    m = _URL.match(str(location)) if isinstance(location, str) else None
    return m.group(1).lower() if m else None


def is_remote(location: Location) -> bool:
    """True for an object-storage (or any non-``file://``) URL."""
    return url_scheme(location) not in (None, "file")


def local_path(location: Location) -> str:
    """A local location as a path string: ``file:///data/x`` -> ``/data/x``; a plain
    path as given."""
    s = str(location)
    if url_scheme(s) == "file":
        s = s[len("file://") :]
        if s.startswith("localhost/"):
            s = s[len("localhost") :]
    return s


def _lp(location: Location) -> Path:
    return Path(local_path(location))


class FileInfo(NamedTuple):
    """One file found by :meth:`Storage.find` or :meth:`Storage.glob`."""

    #: full location (a URL keeps its scheme)
    path: str
    size: int
    #: modification time in ns (object stores: last-modified)
    mtime_ns: int
    #: the object's ETag (object stores), None on local disk
    etag: str | None = None


#: names of the temporary files :meth:`LocalStorage.write_bytes` writes before the
#: rename (``.<name>.<8 hex>.tmp``): what cleaners may delete
TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def temp_name(path: Path) -> Path:
    """A unique temporary name beside ``path`` (matches :data:`TEMPORARY`)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


class Storage(abc.ABC):
    """Where bigseg reads and writes; every method takes a full location."""

    #: pyarrow filesystem for table reads and writes; None: local paths
    filesystem = None

    # -- reading -------------------------------------------------------------------------
    @abc.abstractmethod
    def read_bytes(self, path: Location) -> bytes: ...

    def read_text(self, path: Location, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    @abc.abstractmethod
    def open_read(self, path: Location) -> BinaryIO:
        """A binary file object to read ``path`` (for streaming readers)."""

    @abc.abstractmethod
    def exists(self, path: Location) -> bool: ...

    @abc.abstractmethod
    def is_file(self, path: Location) -> bool: ...

    @abc.abstractmethod
    def is_dir(self, path: Location) -> bool:
        """True when ``path`` is a directory (object stores: a non-empty prefix)."""

    @abc.abstractmethod
    def list(self, path: Location) -> list[str]:
        """Names directly under ``path``, sorted (empty when it does not exist)."""

    @abc.abstractmethod
    def info(self, path: Location) -> tuple[int, int]:
        """``(size in bytes, modification time in ns)`` of a file."""

    @abc.abstractmethod
    def find(self, path: Location) -> list[FileInfo]:
        """Every file under ``path`` (recursively; ``[path]`` itself when it is a file),
        sorted by path, from one fresh listing; empty when nothing is there."""

    @abc.abstractmethod
    def glob(self, pattern: Location) -> list[FileInfo]:
        """The files matching ``pattern`` (``*``, ``?``, ``[...]``, ``**``), sorted."""

    # -- writing -------------------------------------------------------------------------
    @abc.abstractmethod
    def write_bytes(self, path: Location, data: bytes) -> None:
        """Replace ``path`` with ``data`` whole and durably: a reader sees the old or the
        new content, never a part."""

    def write_text(self, path: Location, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(path, text.encode(encoding))

    @abc.abstractmethod
    def open_write(self, path: Location) -> BinaryIO:
        """A binary file object writing ``path`` in place (not atomic: logs and other
        files a reader never takes for complete output)."""

    @abc.abstractmethod
    def put_if_absent(self, path: Location, data: bytes) -> bool:
        """Create ``path`` with ``data`` only if nothing is there; False when something
        was (nothing written). Complete and durable when it returns True."""

    @abc.abstractmethod
    def makedirs(self, path: Location) -> None:
        """Make ``path`` a directory, parents included (object stores: nothing)."""

    @abc.abstractmethod
    def copy(self, src: Location, dst: Location) -> None:
        """Copy one file (data and modification time)."""

    # -- deleting ------------------------------------------------------------------------
    @abc.abstractmethod
    def delete(self, path: Location) -> None:
        """Delete one file; nothing when it is not there."""

    @abc.abstractmethod
    def delete_tree(self, path: Location) -> bool:
        """Delete ``path`` and everything under it, a file or a directory; True when
        nothing is left."""


def _fsync(path: Location) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_dir(d: Location) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    _fsync(d)


def fsync_file(path: Location) -> None:
    """Make a file's bytes durable."""
    _fsync(path)


class LocalStorage(Storage):
    """A local or network file system (POSIX rename and hard links). Locations are
    paths or ``file://`` URLs."""

    def read_bytes(self, path: Location) -> bytes:
        return _lp(path).read_bytes()

    def read_text(self, path: Location, encoding: str = "utf-8") -> str:
        return _lp(path).read_text(encoding=encoding)

    def open_read(self, path: Location) -> BinaryIO:
        return open(_lp(path), "rb")  # noqa: SIM115 - the caller closes it

    def exists(self, path: Location) -> bool:
        return _lp(path).exists()

    def is_file(self, path: Location) -> bool:
        return _lp(path).is_file()

    def is_dir(self, path: Location) -> bool:
        return _lp(path).is_dir()

    def list(self, path: Location) -> list[str]:
        p = _lp(path)
        return sorted(c.name for c in p.iterdir()) if p.is_dir() else []

    def info(self, path: Location) -> tuple[int, int]:
        st = os.stat(_lp(path))
        return st.st_size, st.st_mtime_ns

    def find(self, path: Location) -> list[FileInfo]:
        p = _lp(path)
        files = [p] if p.is_file() else (q for q in p.rglob("*") if q.is_file())
        return sorted(self._file_info(q) for q in files)

    def glob(self, pattern: Location) -> list[FileInfo]:
        found = globmod.glob(local_path(pattern), recursive=True)
        return sorted(self._file_info(Path(q)) for q in found if os.path.isfile(q))

    @staticmethod
    def _file_info(p: Path) -> FileInfo:
        st = p.stat()
        return FileInfo(str(p), st.st_size, st.st_mtime_ns)

    def write_bytes(self, path: Location, data: bytes) -> None:
        path = _lp(path)
        tmp = temp_name(path)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(path.parent)

    def open_write(self, path: Location) -> BinaryIO:
        return open(_lp(path), "wb")  # noqa: SIM115 - the caller closes it

    def put_if_absent(self, path: Location, data: bytes) -> bool:
        path = _lp(path)
        tmp = temp_name(path)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic and create-only: the content is complete at once
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network file systems): O_EXCL
            return self._create_excl(path, data)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        fsync_dir(path.parent)
        return True

    @staticmethod
    def _create_excl(path: Path, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)
        return True

    def makedirs(self, path: Location) -> None:
        _lp(path).mkdir(parents=True, exist_ok=True)

    def copy(self, src: Location, dst: Location) -> None:
        shutil.copy2(_lp(src), _lp(dst))

    def delete(self, path: Location) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_lp(path))

    def delete_tree(self, path: Location, attempts: int = 1) -> bool:
        path = _lp(path)
        for i in range(attempts):
            if path.is_symlink() or path.is_file():
                self.delete(path)
            else:
                shutil.rmtree(path, ignore_errors=True)
            if not path.exists() and not path.is_symlink():
                return True
            if i + 1 < attempts:
                time.sleep(0.1)
        return False

    # -- local-only helpers for bigseg.io.commit -----------------------------------------
    @staticmethod
    def rename(src: Location, dst: Location) -> None:
        os.rename(src, dst)

    @staticmethod
    def link(src: Location, dst: Location) -> None:
        os.link(src, dst)


#: the storage of local paths
local = LocalStorage()


def as_path(location: Location, storage: Storage | None = None, storage_options=None):
    """``location`` as a path object: a :class:`~pathlib.Path` for a local path (or
    ``file://`` URL), an :class:`~bigseg.io.objectstore.ObjectPath` for an object-storage
    URL (with ``storage``, or one built from ``storage_options``). Path objects of either
    kind are returned as they are."""
    from bigseg.io.objectstore import ObjectPath

    if isinstance(location, Path | ObjectPath):
        return location
    if not is_remote(location):
        return _lp(location)
    if storage is None or storage is local:
        storage = storage_for(location, storage_options)
    return ObjectPath(str(location), storage)


def is_object(path) -> bool:
    """True for an :class:`~bigseg.io.objectstore.ObjectPath`."""
    from bigseg.io.objectstore import ObjectPath

    return isinstance(path, ObjectPath)


def storage_of(path) -> Storage:
    """The storage that holds a path object (or a location)."""
    from bigseg.io.objectstore import ObjectPath

    if isinstance(path, ObjectPath):
        return path.storage
    return storage_for(path)


def storage_for(location: Location, storage_options: Mapping[str, Any] | None = None) -> Storage:
    """The storage that holds ``location``.

    Parameters
    ----------
    location
        A plain path or ``file://`` URL (:data:`local`), or an object-storage URL:
        ``s3://`` / ``s3a://`` (s3fs), ``gs://`` / ``gcs://`` (gcsfs), ``abfs://`` /
        ``abfss://`` / ``az://`` (adlfs).
    storage_options
        Non-secret filesystem options (the keys of
        :data:`bigseg.io.objectstore.OPTION_KEYS`); credentials come from each cloud's
        standard environment, never from here. Ignored for local paths.

    Returns
    -------
    Storage
        :data:`local`, or a :class:`~bigseg.io.objectstore.FsspecStorage`.

    Raises
    ------
    ConfigError
        An unsupported scheme, a storage option that is not allowed, or the extra that
        installs the scheme's filesystem is missing (``pip install 'bigseg[s3]'``).
    """
    scheme = url_scheme(str(location))
    if scheme in (None, "file"):
        return local
    if scheme not in SCHEMES:
        raise ConfigError(
            f"{location}: unsupported URL scheme {scheme!r} (supported: plain paths, file://, "
            + ", ".join(f"{s}://" for s in SCHEMES)
            + ")"
        )
    from bigseg.io.objectstore import FsspecStorage

    return FsspecStorage(scheme, storage_options)
