"""``bigseg export``: the committed scores as one plain Parquet dataset for other tools.

::

    bigseg export CONFIG [--as-of DATE] --to PATH_OR_URL
    -> <to>/as_of=YYYY-MM-DD/part-NNNNN.parquet   (+ _bigseg_export.json per partition)

Without ``--as-of`` every ``as_of`` the latest commit has is exported: the destination
is then the whole scoring history as one dataset, which is what a reader that lists
folders wants; ``--as-of`` exports that one date. Partitions of other dates already at
the destination are never touched. The storage side (byte copies checked against the
commit, markers, staging) is :mod:`bigseg.io.export`; this module decides what to export
and where, and refuses destinations that would mix with an output. (Not named
``bigseg/export.py``: importing it would replace the function :func:`bigseg.export`.)

Exit codes: 2 a bad ``--as-of`` or a destination inside the output (or holding it, or
another bigseg output); 3 nothing committed, no scores at that date, or a committed file
that does not match its checksum.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from bigseg.errors import ConfigError, DatasetMissing
from bigseg.io import export as io_export
from bigseg.io.commits import COMMITS, join, numbers
from bigseg.io.storage import SCHEMES, is_remote, local_path, url_scheme

log = logging.getLogger(__name__)


def parse_as_of(text: str) -> dt.date:
    """``--as-of`` as a date; a :class:`ConfigError` (exit 2) naming the format."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise ConfigError(
            f"--as-of {text}: not a date ({e}); write it as YYYY-MM-DD, e.g. --as-of 2026-06-30"
        ) from None


def _key(location: str) -> tuple[str, str]:
    """A location compared by meaning: ``(protocol, path)``, s3a:// as s3://, a local
    path resolved (symlinks too), no trailing slash."""
    if is_remote(location):
        scheme = url_scheme(location) or ""
        rest = location.split("://", 1)[1].rstrip("/")
        return SCHEMES.get(scheme, (scheme,))[0], rest
    return "", str(Path(local_path(location)).expanduser().resolve())


def _within(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or a[1].startswith(b[1].rstrip("/") + "/"))


def destination(cfg, to: str) -> str:
    """``--to`` as a full location (a local path made absolute against the working
    directory), refused (exit 2) where an export would mix with an output: inside
    ``output:``, holding it (a reader of ``<to>/**`` would read the output's files too),
    or at another bigseg output."""
    to = str(to)
    if not to.strip():
        raise ConfigError("--to: empty; give a folder or a URL (s3://bucket/prefix)")
    full = to if is_remote(to) else str(Path(local_path(to)).expanduser().resolve())
    dest, output = _key(full), _key(cfg.output_url)
    if _within(dest, output) or _within(output, dest):
        where = "inside" if _within(dest, output) else "around"
        raise ConfigError(
            f"--to {to}: {where} the output {cfg.output_url} (output:); an export goes "
            "outside it, e.g. beside it: --to <somewhere>/export"
        )
    storage = cfg.storage(full)
    if numbers(storage, join(full, COMMITS)):
        raise ConfigError(
            f"--to {to}: another bigseg output (it has {COMMITS}/); export to a folder of its own"
        )
    return full


def export_scores(cfg, to: str, as_of=None, say=None) -> dict:
    """Export the latest commit's scores (every ``as_of``, or only ``as_of``) to ``to``.

    Parameters
    ----------
    cfg : RunConfig
        The run config; its ``output:`` is read, its ``storage_options`` apply to a
        ``to`` URL too.
    to : str
        A folder or an object-storage URL.
    as_of : date or str, optional
        One date to export; default every committed one.
    say : callable, optional
        Called with one line per partition.

    Returns
    -------
    dict
        ``{"to", "commit", "written": [dates], "unchanged": [dates]}``.

    Raises
    ------
    ConfigError
        ``to`` inside, around or at an output (exit 2).
    DatasetMissing
        No scores committed, or none at ``as_of`` (exit 3).
    """
    from bigseg.store.lock import open_output

    full = destination(cfg, to)
    out = open_output(cfg)
    dates = out.scores_dates()
    if not dates:
        raise DatasetMissing(
            f"{cfg.output_url}: no scores committed yet (commit {out.parent or 'none'}); run "
            "`bigseg run` or `bigseg score` first"
        )
    if as_of is not None:
        if str(as_of) not in dates:
            raise DatasetMissing(
                f"{cfg.output_url}: no scores as of {as_of} in commit {out.parent}; "
                f"committed: {', '.join(dates)}"
            )
        dates = [str(as_of)]
    storage = cfg.storage(full)
    storage.makedirs(full)
    done: dict[str, list[str]] = {"written": [], "unchanged": []}
    try:
        for day in dates:
            wrote = io_export.export_partition(out, day, storage, _root(full))
            done["written" if wrote else "unchanged"].append(day)
            if say:
                state = "written" if wrote else "unchanged (already this commit's)"
                say(f"{io_export.partition(day)}: {state}")
    finally:  # a failed export leaves no staging folder either
        for name in io_export.clean_staging(storage, _root(full)):
            log.warning("%s: deleted staging left by an interrupted export: %s", full, name)
    return {"to": full, "commit": out.parent, **done}


def _root(full: str):
    return full if is_remote(full) else Path(full)


def command(args, say) -> int:
    """``bigseg export``'s handler (``say`` prints unless ``--quiet``)."""
    from bigseg.config import load_run_config

    as_of = parse_as_of(args.as_of) if args.as_of else None
    cfg = load_run_config(args.config)
    res = export_scores(cfg, args.to, as_of, say=say)
    say(
        f"exported commit {res['commit']} to {res['to']}: {len(res['written'])} partition(s) "
        f"written, {len(res['unchanged'])} unchanged"
    )
    return 0
