"""Are two bigseg outputs the same? The check behind "the behaviour does not change".

usage: python benchmarks/compare_outputs.py OUT_A OUT_B

Either output may have either layout: one written through the commit log (its datasets are
the files the latest ``_bigseg/commits/<n>.json`` lists, whichever run's folder holds them)
or one from before it (fixed folders: ``store/``, ``scores/as_of=D/``, ``models/LATEST``,
``metrics.json``, ...), so an output of a version before the commit log compares with one
after it. Files are named as the old layout named them: a dataset's path below its folder
(for the commit log, the member name: the path below ``runs/<id>/<dataset>/``).

Compares, by content: the store's tables, features, segments, scores and audiences (every
Parquet part of a dataset read in name order into one table, so part-file names that carry a
timestamp do not matter), the latest model version's files (booster bytes, segmenter arrays,
JSON documents) and the values of ``metrics.json``.

Left out, by name, only what differs between two runs of the same code on the same data:
``VOLATILE_METRICS`` (timings, every ``seconds`` field, the model version, the report path,
the segment migration, which names the previous version), ``VOLATILE_PATHS`` and, in JSON documents, any ``version`` / ``model_version``
key (the version is a timestamp). Run it on two runs of the same commit first: that shows the
comparison itself holds still. Exits 1 and lists the differences when there are any.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATASETS = ("features", "segments", "scores", "audiences")
VOLATILE_METRICS = {"timings", "seconds", "model_version", "report", "segment_migration"}
# the score stage's resume fingerprint hashes the model version, a timestamp
VOLATILE_PATHS = {"metrics.score_resume.fingerprint"}
VOLATILE_JSON = {"version", "model_version", "created", "seconds"}


# -- reading: one interface over both layouts -------------------------------------------------
class Legacy:
    """An output from before the commit log: every dataset in its fixed folder."""

    def __init__(self, root: Path):
        self.root = root

    def parquet(self, rel: str) -> list[tuple[str, Path]]:
        """(folder below the dataset's folder, file) of every Parquet file of ``rel``
        (``store/<table>``, ``features``, ``scores``, ...), in path order."""
        base = self.root / rel
        files = sorted(p for p in base.rglob("*.parquet") if p.is_file())
        return [(f.relative_to(base).parent.as_posix(), f) for f in files]

    def store_tables(self) -> list[str]:
        return sorted(p.name for p in (self.root / "store").iterdir() if p.is_dir())

    def model_files(self) -> dict[str, Path]:
        """``{name: file}`` of the latest model version (``models/LATEST`` names it)."""
        d = self.root / "models" / (self.root / "models" / "LATEST").read_text().strip()
        return {p.name: p for p in d.iterdir()}

    def metrics(self) -> dict:
        return json.loads((self.root / "metrics.json").read_text())


class Committed:
    """An output written through the commit log, read as its latest commit lists it."""

    def __init__(self, output):
        self.out = output  # bigseg.io.output.Output

    def _members(self, name: str) -> dict[str, Path]:
        if not self.out.has(name):
            return {}
        return {m: Path(p) for m, p in self.out.members(name).items()}

    def parquet(self, rel: str) -> list[tuple[str, Path]]:
        from bigseg.io.output import scores_dataset

        if rel.startswith("store/"):
            table = rel.split("/", 1)[1] + "/"
            found = {
                m[len(table) :]: p for m, p in self._members("store").items() if m.startswith(table)
            }
        elif rel == "scores":  # every date, named as in the old layout (as_of=D/<part>)
            found = {
                f"as_of={day}/{m}": p
                for day in self.out.scores_dates()
                for m, p in self._members(scores_dataset(day)).items()
            }
        else:
            found = self._members(rel)
        # member names sorted as paths (part by part), as the old layout's files were
        names = sorted(
            (m for m in found if m.endswith(".parquet")), key=lambda m: PurePosixPath(m).parts
        )
        return [(PurePosixPath(m).parent.as_posix(), found[m]) for m in names]

    def store_tables(self) -> list[str]:
        return sorted({m.split("/", 1)[0] for m in self._members("store") if "/" in m})

    def model_files(self) -> dict[str, Path]:
        from bigseg.io.output import model_dataset

        version = self.out.latest_model()
        if version is None:
            raise FileNotFoundError(f"{self.out.root}: no models/LATEST in the latest commit")
        return self._members(model_dataset(version))

    def metrics(self) -> dict:
        return self.out.read_json("metrics")


def open_output(root: Path) -> Legacy | Committed:
    """The reader for ``root``: :class:`Committed` when it has a commit log."""
    if not (root / "_bigseg" / "commits").is_dir():
        return Legacy(root)
    from bigseg.io.output import Output

    out = Output.open(root)
    return Committed(out) if out.committed else Legacy(root)


def _table(files: list[tuple[str, Path]]) -> pa.Table | None:
    if not files:
        return None
    parts = []
    for rel, f in files:
        t = pq.read_table(f)
        parts.append(t.append_column("_dir", pa.array([rel] * t.num_rows, pa.string())))
    schema = pa.unify_schemas([p.schema for p in parts], promote_options="permissive")
    return pa.concat_tables([p.cast(schema) for p in parts])


def _same_json(a, b, path: str, out: list[str], skip: set[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in skip or f"{path}.{k}" in VOLATILE_PATHS:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                _same_json(a[k], b[k], f"{path}.{k}", out, skip)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} against {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _same_json(x, y, f"{path}[{i}]", out, skip)
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    elif a != b:
        out.append(f"{path}: {a!r} against {b!r}")


def _compare_models(a: Legacy | Committed, b: Legacy | Committed, diffs: list[str]) -> None:
    ma, mb = a.model_files(), b.model_files()
    names = sorted(set(ma) | set(mb))
    for name in names:
        fa, fb = ma.get(name), mb.get(name)
        if fa is None or fb is None:
            diffs.append(f"models/{name}: only in {'B' if fb is None else 'A'}")
        elif name.endswith(".json"):
            _same_json(
                json.loads(fa.read_text()), json.loads(fb.read_text()), name, diffs, VOLATILE_JSON
            )
        elif name.endswith(".npz"):
            za, zb = np.load(fa), np.load(fb)
            for key in sorted(set(za.files) | set(zb.files)):
                if (
                    key not in za.files
                    or key not in zb.files
                    or not np.array_equal(za[key], zb[key])
                ):
                    diffs.append(f"models/{name}[{key}] differs")
        elif fa.read_bytes() != fb.read_bytes():
            diffs.append(f"models/{name}: bytes differ")


def compare(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []
    ra, rb = open_output(a), open_output(b)
    for rel in [f"store/{t}" for t in ra.store_tables()] + list(DATASETS):
        ta, tb = _table(ra.parquet(rel)), _table(rb.parquet(rel))
        if (ta is None) != (tb is None):
            diffs.append(f"{rel}: present in only one output")
        elif ta is not None and not ta.equals(tb):
            diffs.append(f"{rel}: {ta.num_rows} against {tb.num_rows} rows, contents differ")
    _compare_models(ra, rb, diffs)
    _same_json(ra.metrics(), rb.metrics(), "metrics", diffs, VOLATILE_METRICS | VOLATILE_JSON)
    return diffs


def main(argv: list[str]) -> int:
    a, b = (Path(x) for x in argv)
    diffs = compare(a, b)
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s) between {a} and {b}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
