"""Model registry: dataset ``models/<version>`` in safe formats, never pickle.

A version holds JSON (preprocessing, segmenter) and XGBoost UBJSON files, plus
``manifest.json`` with a SHA-256 per file, the feature list and its schema hash, the
training window, metrics and library versions. The dataset ``models/LATEST`` (no files)
names the newest version. Loading refuses a file whose hash does not match, a pickle, or a model whose
feature schema differs from the input's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from bigseg.errors import ModelError
from bigseg.io.commit import (
    copy_file,
    new_staging,
    publish_dir,
    read_json,
    remove_tree,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from bigseg.io.layout import MODEL_MANIFEST
from bigseg.io.output import LATEST_MODEL, Output, model_dataset
from bigseg.io.storage import is_object, storage_of
from bigseg.machine import library_versions

SAFE_SUFFIXES = (".json", ".ubj", ".npz")
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with storage_of(path).open_read(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def schema_hash(features: list[str]) -> str:
    return hashlib.sha256(json.dumps(list(features)).encode()).hexdigest()[:16]


class VersionWriter:
    """Collects the files of a new model version in a staging dir; :meth:`publish`
    writes the manifest and records the version as this run's dataset (and as
    ``models/LATEST``)."""

    def __init__(self, output: Output):
        self.output = output
        self.layout = output.layout
        self.name = "v" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.layout.model(self.name)
        # object storage: written in place (under the run's prefix, unseen until the
        # commit); a local disk stages and renames as ever
        self.dir = final if is_object(final) else new_staging(self.layout, f"model-{self.name}")

    def write_json(self, name: str, obj) -> None:
        write_text_atomic(self.dir / name, json.dumps(obj, indent=1, default=str))

    def write_bytes(self, name: str, data: bytes) -> None:
        write_bytes_atomic(self.dir / name, data)

    def has(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def copy_from(self, version_dir: Path, names: list[str]) -> None:
        for n in names:
            copy_file(version_dir / n, self.dir / n)

    def publish(self, manifest: dict) -> Path:
        files = {p.name: sha256_file(p) for p in sorted(self.dir.iterdir())}
        manifest = {
            "version": self.name,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "libraries": library_versions(),
            **manifest,
            "files": files,
        }
        write_json_atomic(self.dir / MODEL_MANIFEST, manifest)
        final = self.layout.model(self.name)
        if self.dir != final:
            publish_dir(self.dir, final)
        self.output.put(model_dataset(self.name), final, version=self.name)
        self.output.put_pointer(LATEST_MODEL, version=self.name)
        return final

    def discard(self) -> None:
        remove_tree(self.dir, attempts=1)


def latest_version(output: Output) -> str:
    """The newest model version (dataset ``models/LATEST``).

    Raises
    ------
    ModelError
        No model was committed yet.
    """
    version = output.latest_model()
    if version is None:
        raise ModelError(
            f"{output.root}: no model yet; run `bigseg segment` / `bigseg train` first"
        )
    return version


def load_version(
    output: Output, version: str | None = None, features: list[str] | None = None
) -> tuple[Path, dict]:
    """Open and verify a model version: every file's hash, no pickles, and (when
    ``features`` is given) the same feature schema. Returns (dir, manifest)."""
    version = version or latest_version(output)
    entry = output.entry(model_dataset(version))
    if entry is None:
        raise ModelError(
            f"{output.root}: model version {version!r} not found; available: "
            f"{', '.join(output.model_versions()) or 'none'}"
        )
    d = output.path(entry["prefix"])
    mpath = d / MODEL_MANIFEST
    if not mpath.is_file():
        raise ModelError(f"{d}: model version not found (no manifest.json)")
    manifest = read_json(mpath)
    files = manifest.get("files", {})
    for name in files:
        if not name.endswith(SAFE_SUFFIXES):
            raise ModelError(
                f"{d / name}: refusing to load: only {', '.join(SAFE_SUFFIXES)} files are allowed"
            )
    for name, digest in files.items():
        p = d / name
        if not p.is_file():
            raise ModelError(f"{p}: listed in the manifest but missing")
        with storage_of(p).open_read(p) as f:
            if f.read(2) in _PICKLE_MAGIC:
                raise ModelError(f"{p}: refusing to load a pickle")
        if sha256_file(p) != digest:
            raise ModelError(f"{p}: SHA-256 does not match manifest.json; the file was modified")
    if features is not None and manifest.get("schema_hash") not in (None, schema_hash(features)):
        raise ModelError(
            f"{d}: model was trained on features {manifest.get('features')} but the input has "
            f"{list(features)}; retrain with `bigseg run`"
        )
    return d, manifest
