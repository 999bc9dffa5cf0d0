"""Are two bigseg outputs the same? The check behind "the behaviour does not change".

usage: python benchmarks/compare_outputs.py OUT_A OUT_B

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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATASETS = ("features", "segments", "scores", "audiences")
VOLATILE_METRICS = {"timings", "seconds", "model_version", "report", "segment_migration"}
# the score stage's resume fingerprint hashes the model version, a timestamp
VOLATILE_PATHS = {"metrics.score_resume.fingerprint"}
VOLATILE_JSON = {"version", "model_version", "created", "seconds"}


def _table(root: Path) -> pa.Table | None:
    files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    if not files:
        return None
    parts = []
    for f in files:
        t = pq.read_table(f)
        rel = f.relative_to(root).parent.as_posix()
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


def _latest_models(out: Path) -> Path:
    return out / "models" / (out / "models" / "LATEST").read_text().strip()


def _compare_models(a: Path, b: Path, diffs: list[str]) -> None:
    ma, mb = _latest_models(a), _latest_models(b)
    names = sorted({p.name for p in ma.iterdir()} | {p.name for p in mb.iterdir()})
    for name in names:
        fa, fb = ma / name, mb / name
        if not (fa.exists() and fb.exists()):
            diffs.append(f"models/{name}: only in {'B' if not fa.exists() else 'A'}")
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
    store_tables = sorted(p.name for p in (a / "store").iterdir() if p.is_dir())
    for rel in [f"store/{t}" for t in store_tables] + list(DATASETS):
        ta, tb = _table(a / rel), _table(b / rel)
        if (ta is None) != (tb is None):
            diffs.append(f"{rel}: present in only one output")
        elif ta is not None and not ta.equals(tb):
            diffs.append(f"{rel}: {ta.num_rows} against {tb.num_rows} rows, contents differ")
    _compare_models(a, b, diffs)
    ja = json.loads((a / "metrics.json").read_text())
    jb = json.loads((b / "metrics.json").read_text())
    _same_json(ja, jb, "metrics", diffs, VOLATILE_METRICS | VOLATILE_JSON)
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
