"""One output as the commit log sees it: what is committed, and what this run adds.

An :class:`Output` is opened once per run (:meth:`Output.open`): it reads the latest
commit (the *parent*) and from then on answers every "where is dataset X" question from
that manifest, never by listing data folders. A run that writes gets its own prefix
``runs/<run_id>/`` (:meth:`Output.begin`; :attr:`Output.layout` names the paths under it,
the same names as the output's top level used to have), records each dataset it finished
with :meth:`Output.put`, and publishes them all with one :meth:`Output.commit`: the parent's
datasets carried forward, this run's replacing them.

Later stages of the same run read this run's datasets through the same object (a
``pending`` entry wins over the parent's), so a run sees its own products before it
commits and nobody else sees them until it does.

Dataset names (``CONTRACT.md``): ``store``, ``quarantine``, ``features``, ``segments``,
``scores/as_of=<date>``, ``audiences``, ``models/<version>``, ``models/LATEST`` (no files;
``version`` names the newest model), ``metrics``, ``report``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bigseg.errors import DatasetMissing
from bigseg.io import commits
from bigseg.io.layout import Layout
from bigseg.io.manifest import dataset_entry, join
from bigseg.io.storage import TEMPORARY, Location, Storage, as_path, is_remote, storage_for

#: the dataset naming the newest model version (``{"files": [], "version": "v..."}``)
LATEST_MODEL = "models/LATEST"
SCORES_PREFIX = "scores/as_of="
MODELS_PREFIX = "models/"


def scores_dataset(as_of) -> str:
    return f"{SCORES_PREFIX}{as_of}"


def model_dataset(version: str) -> str:
    return f"{MODELS_PREFIX}{version}"


def _clean(prefix: str) -> str:
    return str(PurePosixPath(prefix)) if prefix else ""


def member_of(name: str, path: str) -> str:
    """``runs/<run_id>/<name>/<member>`` -> ``<member>`` (a file directly in the run's
    folder, such as ``metrics.json``, is its own member)."""
    parts = path.split("/", 2)
    rest = parts[2] if len(parts) == 3 and parts[0] == commits.RUNS else path
    return rest[len(name) + 1 :] if rest.startswith(name + "/") else rest


def _rel(root: Location, path: Location) -> str:
    """``path`` relative to ``root`` as a manifest path."""
    r, p = str(root).rstrip("/"), str(path)
    if not p.startswith(r + "/"):
        raise ValueError(f"{path} is not under the output {root}")
    return p[len(r) + 1 :]


@dataclass
class Output:
    """The committed state of an output, and the datasets this run adds to it.

    Cheap to pickle (workers may get one): the storage pickles without secrets.
    """

    storage: Storage
    root: Location
    #: the latest commit when opened (0: none yet) and its manifest
    parent: int = 0
    base: dict = field(default_factory=dict)
    run_id: str | None = None
    pending: dict = field(default_factory=dict)

    @classmethod
    def open(cls, root: Location, storage: Storage | None = None, storage_options=None) -> Output:
        """The output at ``root`` (a path or URL) with its latest commit read."""
        if not is_remote(root):
            root = Path(root)
        storage = storage or storage_for(root, storage_options)
        found = commits.latest(storage, root)
        if found is None:
            return cls(storage, root)
        n, manifest = found
        return cls(storage, root, n, dict(manifest["datasets"]))

    # -- reading ------------------------------------------------------------------------
    @property
    def committed(self) -> bool:
        return self.parent > 0

    def names(self) -> list[str]:
        merged = {**self.base, **self.pending}
        return sorted(k for k, v in merged.items() if v is not None)

    def entry(self, name: str) -> dict | None:
        """The dataset's manifest entry: this run's when it wrote one, else the parent's."""
        if name in self.pending:
            return self.pending[name]
        return self.base.get(name)

    def has(self, name: str) -> bool:
        return self.entry(name) is not None

    def need(self, name: str, hint: str = "") -> dict:
        e = self.entry(name)
        if e is None:
            where = join(self.root, commits.COMMITS)
            have = ", ".join(self.names()) or "none"
            raise DatasetMissing(
                f"{where}: the latest commit ({self.parent or 'none yet'}) has no dataset "
                f"{name!r} (it has: {have}){'; ' + hint if hint else ''}"
            )
        return e

    def path(self, rel: str = ""):
        """``rel`` (relative to the root) as a path object: a :class:`~pathlib.Path`, or
        an :class:`~bigseg.io.objectstore.ObjectPath` carrying this output's storage."""
        return as_path(join(self.root, rel) if rel else self.root, self.storage)

    def files(self, name: str, hint: str = "") -> list:
        """The dataset's files as path objects, in manifest order."""
        return [self.path(f["path"]) for f in self.need(name, hint)["files"]]

    def file(self, name: str, member: str, hint: str = ""):
        """The file ``member`` (see :meth:`members`) of a dataset."""
        found = self.members(name, hint).get(member)
        if found is None:
            raise DatasetMissing(f"{self.root}: dataset {name!r} has no file {member!r}")
        return found

    def members(self, name: str, hint: str = "") -> dict:
        """``{member: path}`` of every file of a dataset. A file's member name is its path
        below the folder its run wrote the dataset in (``runs/<run_id>/<name>/``), so it
        is the same whichever run wrote it: a dataset may list files of several runs (an
        incremental ingest carries the untouched files of the store forward)."""
        return {
            member_of(name, f["path"]): self.path(f["path"]) for f in self.need(name, hint)["files"]
        }

    def scores_dates(self) -> list[str]:
        """The ``as_of`` dates with committed (or this run's) scores, ascending."""
        return sorted(n[len(SCORES_PREFIX) :] for n in self.names() if n.startswith(SCORES_PREFIX))

    def model_versions(self) -> list[str]:
        return sorted(
            n[len(MODELS_PREFIX) :]
            for n in self.names()
            if n.startswith(MODELS_PREFIX) and n != LATEST_MODEL
        )

    def latest_model(self) -> str | None:
        e = self.entry(LATEST_MODEL)
        return None if e is None else e["version"]

    def read_json(self, name: str, member: str | None = None):
        where = self.file(name, member) if member else self.files(name)[0]
        return json.loads(self.storage.read_text(str(where)))

    # -- writing ------------------------------------------------------------------------
    def begin(self, run_id: str) -> Layout:
        """Start writing as run ``run_id``: its files go under ``runs/<run_id>/``."""
        self.run_id = run_id
        return self.layout

    @property
    def run_root(self) -> Location:
        if self.run_id is None:
            raise RuntimeError("Output.begin() first: this run has no id yet")
        return join(self.root, commits.RUNS, self.run_id)

    @property
    def layout(self) -> Layout:
        """The paths this run writes: a :class:`Layout` rooted at its prefix."""
        return Layout(as_path(self.run_root, self.storage))

    def put(self, name: str, directory: Location, known: Iterable[dict] = (), **meta) -> dict:
        """Record ``directory`` (written by this run, complete) as dataset ``name``: its
        files are listed and checksummed (the writer's own prefix, never another's).
        ``known``: the writing tasks' ``{path written: {"size", "sha256"}}``, taken as
        they are (the other files are read)."""
        prefix = _rel(self.root, directory)
        known = {_rel(self.root, p): e for part in known for p, e in part.items()}
        rels = [
            _rel(self.root, i.path)
            for i in self.storage.find(directory)
            if not TEMPORARY.match(i.path.rsplit("/", 1)[-1])
        ]
        files = [{"path": r, **known[r]} if r in known else r for r in rels]
        return self.put_files(name, files, prefix=prefix, **meta)

    def put_file(self, name: str, path: Location, **meta) -> dict:
        """Record one file (written by this run) as dataset ``name`` (no listing)."""
        rel = _rel(self.root, path)
        return self.put_files(name, [rel], prefix=rel.rsplit("/", 1)[0], **meta)

    def put_files(self, name: str, files: Iterable, prefix: str = "", **meta) -> dict:
        """Record dataset ``name`` from files given relative to the root (or as entries)."""
        e = dataset_entry(self.storage, self.root, files, prefix=_clean(prefix), **meta)
        self.pending[name] = e
        return e

    def put_pointer(self, name: str, **meta) -> None:
        """A dataset with no files, only metadata (:data:`LATEST_MODEL`)."""
        self.pending[name] = {"files": [], **meta}

    def drop(self, name: str) -> None:
        """Leave dataset ``name`` out of this run's commit."""
        self.pending[name] = None

    def datasets(self) -> dict:
        """The full state this run would commit."""
        merged = {**self.base, **self.pending}
        return {k: v for k, v in merged.items() if v is not None}

    @property
    def changed(self) -> bool:
        return bool(self.pending)

    def commit(self, lease=None) -> int:
        """Publish: one create-only write of commit ``parent + 1``; returns its number.
        The object then reads as that commit (a further run step builds on it)."""
        n = commits.commit(
            self.storage, self.root, self.parent, self.datasets(), self.run_id, lease=lease
        )
        self.parent, self.base, self.pending = n, self.datasets(), {}
        return n


def read_scores(output: Location, as_of=None, storage_options=None):
    """The committed scores of one ``as_of`` (default: the latest) as a pyarrow Table,
    with an ``as_of`` column (date); see :func:`bigseg.read_scores`."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Output.open(output, storage_options=storage_options)
    dates = out.scores_dates()
    if not dates:
        raise DatasetMissing(
            f"{output}: no scores committed yet (commit {out.parent or 'none'}); run "
            "`bigseg run` or `bigseg score` first"
        )
    day = str(as_of) if as_of is not None else dates[-1]
    if day not in dates:
        raise DatasetMissing(
            f"{output}: no scores as of {day} in commit {out.parent}; committed: {', '.join(dates)}"
        )
    parts = []
    for loc in out.files(scores_dataset(day)):
        with out.storage.open_read(loc) as f:
            parts.append(pq.read_table(f))
    t = pa.concat_tables(parts, promote_options="default")
    if "as_of" not in t.column_names:
        when = pa.array([dt.date.fromisoformat(day)] * t.num_rows, pa.date32())
        t = t.add_column(1 if "customer_id" in t.column_names else 0, "as_of", when)
    return t
