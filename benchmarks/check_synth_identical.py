"""Is the synthetic generator's output byte-identical between two checkouts?

Usage::

    # in the old checkout, then in the new one
    PYTHONPATH=$PWD .venv/bin/python benchmarks/check_synth_identical.py --generate /tmp/before
    PYTHONPATH=$PWD .venv/bin/python benchmarks/check_synth_identical.py --generate /tmp/after
    .venv/bin/python benchmarks/check_synth_identical.py /tmp/before /tmp/after

``--generate DIR`` writes the reference data sets with whichever ``bigseg`` is imported:
a plain one, a gender-biased one and a region-biased one with other dates (3 chunks
each, the last one partial where the sizes allow). Comparing two directories lists every
file under both (sorted relative paths) with its sha256 and exits 1 if a file is missing
on one side or differs in any byte. Refactors of :mod:`bigseg.synth` must pass it: a
changed draw order changes the bytes. For a Parquet file whose bytes differ, it also
says whether the decoded tables are equal, to tell a data change from a metadata one;
that is a diagnostic only and still fails the check.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

#: (subdirectory, positional arguments after the output path, keyword arguments)
CASES = (
    ("a", (5000,), {"seed": 0, "chunk_size": 2000}),
    (
        "b",
        (5000,),
        {
            "seed": 5,
            "chunk_size": 2000,
            "bias": {"attribute": "gender", "group": "F", "dropout": 0.8, "window_days": 360},
        },
    ),
    (
        "c",
        (3000,),
        {
            "seed": 7,
            "chunk_size": 1000,
            "end_date": "2025-03-15",
            "horizon_days": 60,
            "history_days": 700,
            "bias": {"attribute": "region", "group": "Coastal", "dropout": 0.5},
        },
    ),
)


def generate_all(root: Path) -> None:
    import bigseg
    from bigseg.synth import generate

    print(f"bigseg from {bigseg.__file__}")
    for sub, (n,), kwargs in CASES:
        summary = generate(n, root / sub, **kwargs)
        print(sub, summary["rows"])


def digests(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def same_table(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    return pq.read_table(a).equals(pq.read_table(b), check_metadata=True)


def compare(before: Path, after: Path) -> int:
    da, db = digests(before), digests(after)
    if not da:
        print(f"no files under {before}")
        return 1
    bad = 0
    for rel in sorted(set(da) | set(db)):
        ha, hb = da.get(rel), db.get(rel)
        if ha is None or hb is None:
            print(f"MISSING in {before if ha is None else after}: {rel}")
            bad += 1
        elif ha != hb:
            note = ""
            if rel.endswith(".parquet"):
                equal = same_table(before / rel, after / rel)
                note = " (decoded tables equal)" if equal else " (decoded tables differ)"
            print(f"DIFFERS: {rel}{note}")
            bad += 1
        else:
            print(f"same  {ha}  {rel}")
    print(f"{len(set(da) | set(db))} files, {bad} different or missing")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path, help="BEFORE AFTER: directories to compare")
    ap.add_argument("--generate", type=Path, metavar="DIR", help="write the reference sets")
    args = ap.parse_args()
    if args.generate is not None and not args.dirs:
        generate_all(args.generate)
        return
    if args.generate is not None or len(args.dirs) != 2:
        ap.error("give either --generate DIR or two directories")
    sys.exit(compare(*args.dirs))


if __name__ == "__main__":
    main()
