"""Resumable staging: a stage that works bucket by bucket keeps its finished buckets
across a killed run, and per-bucket statistics as JSON (no pickle)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bigseg.io.commit import RESUMABLE, remove_tree, staging_root, write_text_atomic
from bigseg.io.layout import Layout

log = logging.getLogger(__name__)

_RECORD = "record.json"


def _plain(obj):
    """``obj`` as plain JSON values, exactly reversible by :func:`_unplain`: arrays keep
    their dtype and shape, dicts with non-string keys keep their keys (floats are written
    with ``repr``, so a float64 reads back bit-identical)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return {"__array__": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _plain(v) for k, v in obj.items()}
        return {"__items__": [[_plain(k), _plain(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unplain(obj):
    import numpy as np

    if isinstance(obj, dict):
        if "__array__" in obj:
            return np.asarray(obj["data"], dtype=np.dtype(obj["__array__"])).reshape(obj["shape"])
        if "__items__" in obj:
            return {_unplain(k): _unplain(v) for k, v in obj["__items__"]}
        return {k: _unplain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unplain(v) for v in obj]
    return obj


def dumps_stats(obj) -> str:
    """Per-bucket statistics as JSON text (numpy arrays and int-keyed dicts included;
    no pickle): what a resumable stage saves beside each finished bucket."""
    return json.dumps(_plain(obj), allow_nan=True)


def loads_stats(text: str):
    """Inverse of :func:`dumps_stats`."""
    return _unplain(json.loads(text))


class ResumableStage:
    """A staging directory that outlives a killed run, for a stage that works bucket by
    bucket: ``output/.staging/score-<name>-<fingerprint[:16]>/``.

    ``record.json`` holds the full fingerprint of everything that determines the
    stage's result (the caller hashes it: inputs, model, config, code) and the stage's
    global inputs; each finished bucket ``k`` has ``part-<k>.arrow`` and then
    ``stats-<k>.json``, both written atomically, the stats last: a bucket counts as
    finished when its stats file exists. Opening with the same fingerprint resumes (the
    finished buckets are :attr:`done`); any other resumable directory, or this one with
    another fingerprint, is deleted. Nothing here is published: the stage publishes its
    outputs from these files with :func:`bigseg.io.commit.staged_dir`, then calls
    :meth:`remove`.
    """

    def __init__(self, output: str | Path | Layout, name: str, fingerprint: str):
        self.fingerprint = fingerprint
        root = staging_root(output)
        self.dir = root / f"{RESUMABLE}{name}-{fingerprint[:16]}"
        if root.is_dir():
            for p in root.iterdir():
                if p.name.startswith(RESUMABLE) and p != self.dir:
                    log.info("discarding resumable staging %s (another fingerprint)", p)
                    remove_tree(p)
        self.record: dict | None = None
        rec = self.dir / _RECORD
        if rec.is_file():
            try:
                got = json.loads(rec.read_text())
            except ValueError:
                got = {}
            if got.get("fingerprint") == fingerprint:
                self.record = got
        if self.record is None:  # new, or not ours: start afresh
            remove_tree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def write_record(self, info: dict, inputs: dict) -> None:
        """Start the stage: record the fingerprint, ``info`` (for people) and the
        stage's global ``inputs`` (read back exactly by :meth:`globals`)."""
        self.record = {"fingerprint": self.fingerprint, **info, "globals": _plain(inputs)}
        write_text_atomic(self.dir / _RECORD, json.dumps(self.record, default=str))

    def globals(self) -> dict:
        return _unplain(self.record["globals"])

    def part(self, k: int) -> Path:
        return self.dir / f"part-{k:05d}.arrow"

    def stats(self, k: int) -> Path:
        return self.dir / f"stats-{k:05d}.json"

    def done(self, n: int) -> list[int]:
        """The finished buckets among ``0..n-1`` (nothing before :meth:`write_record`)."""
        if self.record is None:
            return []
        return [k for k in range(n) if self.stats(k).is_file() and self.part(k).is_file()]

    def load_stats(self, k: int):
        return loads_stats(self.stats(k).read_text())

    def remove(self) -> None:
        remove_tree(self.dir)
