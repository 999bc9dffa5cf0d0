"""The I/O seam: outside ``bigseg/io/`` nothing renames, links, deletes or writes files.

Ruff's banned-api (``pyproject.toml``, TID251) sees calls whose target it can resolve:
``os.replace``, ``shutil.rmtree``, ``pq.write_table``, ``Path.unlink(p)``. It cannot see
method calls on instances (``p.unlink()``, ``df.to_parquet(...)``), so this test walks the
AST of every module under ``bigseg/`` (``bigseg/io/`` excepted) and reports:

* any call of a method named in :data:`PATH_METHODS` (``.unlink(``, ``.rmdir(``,
  ``.rename(``, ``.to_parquet(``, ...), whatever the receiver: writes go through
  :mod:`bigseg.io.commit` (atomic, durable) or :mod:`bigseg.io.tables`. ``.rename(``
  with keyword arguments (pandas' ``df.rename(columns=...)``) is not a file rename and
  is allowed;
* ``.write_text(`` / ``.write_bytes(`` with exactly one positional argument (the data:
  ``Path.write_text(text)``); the registry's ``VersionWriter.write_bytes(name, data)``
  takes two and writes through the seam;
* ``.replace(`` with exactly one positional argument and no keywords, unless that
  argument is a dict or list literal: that is ``Path.replace(target)``. ``str.replace``
  takes two arguments, ``datetime.replace`` keywords, pandas' ``replace`` a mapping;
* the module functions ruff bans, called through ``os.``/``shutil.`` or by bare name
  (``write_table(``, ``write_feather(``, ``rmtree(``; a second line of defence);
* ``open(`` with a mode that writes (``w``, ``a``, ``x``, ``+``).

Writing rows into a writer that :mod:`bigseg.io.tables` opened (``writer.write_table``)
is allowed: the file was created by the seam.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bigseg"

#: method names that touch storage whatever their receiver
PATH_METHODS = {
    "unlink",
    "rmdir",
    "rename",
    "to_parquet",
    "to_feather",
    "symlink_to",
    "hardlink_to",
    "link_to",
    "touch",
}
#: module functions (``os.<name>``, ``shutil.<name>``) that change storage
MODULE_FUNCTIONS = {
    "os": {"replace", "rename", "renames", "link", "symlink", "unlink", "remove", "rmdir"},
    "shutil": {"rmtree", "move", "copy", "copy2", "copyfile", "copytree"},
}
#: functions that write tables, called by bare name or through their module
TABLE_WRITERS = {"write_table", "write_feather", "write_dataset", "write_to_dataset"}
TABLE_MODULES = {"pq", "parquet", "feather", "pa_ds", "ds", "dataset"}


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _writes(mode: ast.expr | None) -> bool:
    return (
        isinstance(mode, ast.Constant)
        and isinstance(mode.value, str)
        and any(c in mode.value for c in "wax+")
    )


def violations(source: str, filename: str = "<snippet>") -> list[str]:
    """The storage calls in ``source`` that must go through ``bigseg.io``, as
    ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        what = None
        if isinstance(f, ast.Attribute):
            recv = _receiver_name(f.value)
            if f.attr in MODULE_FUNCTIONS.get(recv, ()):
                what = f"{recv}.{f.attr}("
            elif f.attr in TABLE_WRITERS and recv in TABLE_MODULES:
                what = f"{recv}.{f.attr}("
            elif f.attr == "rename" and node.keywords:
                pass  # DataFrame.rename(columns=...)
            elif f.attr in {"write_text", "write_bytes"} and len(node.args) == 1:
                what = f".{f.attr}(<data>)"
            elif f.attr in PATH_METHODS:
                what = f".{f.attr}("
            elif (
                f.attr == "replace"
                and len(node.args) == 1
                and not node.keywords
                and not isinstance(node.args[0], ast.Dict | ast.List)
            ):
                what = ".replace(<one argument>) (Path.replace)"
        elif isinstance(f, ast.Name):
            if f.id in TABLE_WRITERS or f.id in {"rmtree", "unlink"}:
                what = f"{f.id}("
            elif f.id == "open":
                mode = node.args[1] if len(node.args) > 1 else None
                for kw in node.keywords:
                    if kw.arg == "mode":
                        mode = kw.value
                if _writes(mode):
                    what = "open(..., write mode)"
        if what is not None:
            found.append(f"{filename}:{node.lineno}: {what}")
    return found


def _modules():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        if rel.parts[0] == "io":
            continue
        yield p


def test_no_storage_calls_outside_io():
    found = [v for p in _modules() for v in violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert not found, (
        "storage is touched only in bigseg/io (bigseg.io.commit, bigseg.io.tables):\n  "
        + "\n  ".join(found)
    )


@pytest.mark.parametrize(
    "snippet",
    [
        "p.unlink()",
        "(out / 'x').rename(out / 'y')",
        "tmp.replace(path)",
        "df.to_parquet(path)",
        "path.write_text('x')",
        "path.write_bytes(b'x')",
        "d.rmdir()",
        "os.replace(a, b)",
        "shutil.rmtree(d)",
        "pq.write_table(t, path)",
        "write_table(t, path)",
        "open(path, 'w')",
        "open(path, mode='ab')",
    ],
)
def test_checker_reports_banned_calls(snippet):
    assert violations(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "name.replace('-', '_')",
        "now.replace(tzinfo=None)",
        "s.replace({'a': 'b'})",
        "df.rename(columns={'a': 'b'})",
        "writer.write_table(t)",
        "writer.write_bytes('churn.ubj', data)",
        "open(path)",
        "open(path, 'rb')",
        "p.read_text()",
    ],
)
def test_checker_allows_the_rest(snippet):
    assert violations(snippet) == [], snippet
