"""The one I/O seam: the only package that touches storage.

* :mod:`bigseg.io.layout`: every output path name, written once (:class:`Layout`);
* :mod:`bigseg.io.output`: an output as the commit log sees it (:class:`Output`): where
  each dataset is, and what a run adds before its one commit;
* :mod:`bigseg.io.storage`: the :class:`Storage` interface, :class:`LocalStorage` and
  :func:`storage_for` (a location -> its storage);
* :mod:`bigseg.io.objectstore`: :class:`FsspecStorage`, object storage (``s3://``,
  ``gs://``, ``abfs://``, ``az://``) through fsspec;
* :mod:`bigseg.io.commit`: staging, atomic writes and publication, one durability
  policy;
* :mod:`bigseg.io.resume`: resumable staging of a bucket-by-bucket stage;
* :mod:`bigseg.io.tables`: Parquet and Arrow IPC reads and writes;
* :mod:`bigseg.io.delta`: Delta Lake inputs (``format: delta``): a snapshot's data files,
  read through the optional deltalake package, refused where they would mislead;
* :mod:`bigseg.io.commits` (with :mod:`bigseg.io.manifest`): the commit log, publication
  by one create-only write of ``_bigseg/commits/<n>.json`` on any storage (``DESIGN.md``
  section 7), and its readers;
* :mod:`bigseg.io.lease`: one writer per output, a lease of create-only epoch objects;
* :mod:`bigseg.io.gc`: keep the newest commits, delete what none references under
  ``runs/``.

Outside this package nothing renames, links, deletes or writes tables
(``pyproject.toml``'s banned-api and ``tests/test_io_seam.py``).
"""

from bigseg.io.layout import Layout, as_layout
from bigseg.io.objectstore import FsspecStorage
from bigseg.io.storage import FileInfo, LocalStorage, Storage, local, storage_for

__all__ = [
    "FileInfo",
    "FsspecStorage",
    "Layout",
    "LocalStorage",
    "Storage",
    "as_layout",
    "local",
    "storage_for",
]
