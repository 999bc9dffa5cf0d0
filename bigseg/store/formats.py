"""Which format an input file has, by its name, for tables given without ``format``.

A folder, prefix or glob whose files are of more than one format is refused when
``format`` is not set: reading only the format inferred from the path would drop the
other files' rows without a word, and reading them all as one format would fail on
some of them half-way through an ingest.
"""

from __future__ import annotations

from collections.abc import Iterable

from bigseg.errors import DataError

#: name endings of each format (a name with none of them is of no known format)
FORMAT_SUFFIXES = {
    "parquet": (".parquet", ".parq", ".pq"),
    "csv": (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"),
}


def by_format(names: Iterable[str]) -> dict[str, list[str]]:
    """The ``names`` of each known format, in the order given."""
    found: dict[str, list[str]] = {}
    for name in names:
        for fmt, suffixes in FORMAT_SUFFIXES.items():
            if name.lower().endswith(suffixes):
                found.setdefault(fmt, []).append(name)
    return found


def refuse_mixed(table: str, where: str, names: Iterable[str], glob: bool = False) -> None:
    """Raise :class:`DataError` (exit 3) when ``names`` (the files of ``data.<table>.path``
    = ``where``, a folder, prefix or glob) are of more than one format; the message
    lists each format with a count and an example and says how to read one of them."""
    found = by_format(names)
    if len(found) <= 1:
        return
    listing = "; ".join(f"{f}: {len(v)} file(s), e.g. {v[0]}" for f, v in found.items())
    if glob:
        fix = (
            f"Set data.{table}.format to read only the files of one format, or narrow "
            f"the glob to one format's files (e.g. *{FORMAT_SUFFIXES[next(iter(found))][0]})."
        )
    else:
        fix = (
            "Convert them to one format, or keep each format in its own directory; set "
            f"data.{table}.format to read only one of them."
        )
    raise DataError(
        f"data.{table}.path: {where} {'matches' if glob else 'holds'} files of more than "
        f"one format ({listing}) and data.{table}.format is not set. {fix}"
    )


def of_format(names: Iterable[str], fmt: str) -> list[str]:
    """``names`` without the files of another known format than ``fmt``: a glob with
    ``format`` set reads that format's files, as a folder does (files of no known
    format stay: a glob may name them on purpose)."""
    other = tuple(s for f, ss in FORMAT_SUFFIXES.items() if f != fmt for s in ss)
    return [n for n in names if not n.lower().endswith(other)]
