"""One writer per output directory.

Every command that writes under ``output:`` holds ``output/.lock`` for its whole run: a
file created create-only (:func:`bigseg.io.commit.create_only`: atomic on local and NFSv3+
file systems) holding who took it. A second run on the same output fails at once with
:class:`~bigseg.errors.PublishError` (exit code 6), naming the holder. A lock left by a
process that no longer exists on this host (killed with SIGKILL, machine rebooted) is
stale and taken over, with a warning; a lock from another host is never taken over
automatically (delete it by hand once that run is known to be gone).

Once the lock is held, staging directories left under ``output/.staging/`` by runs that
died are deleted (:func:`~bigseg.io.commit.remove_stale_staging`): with the lock
held nobody else can be writing there. The score stage's resumable staging is kept for
the score stage to reuse or discard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from bigseg.errors import PublishError
from bigseg.io.commit import create_only, delete_file, remove_stale_staging
from bigseg.io.layout import Layout

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def output_lock(output: str | Path, what: str) -> Iterator[Path]:
    """Hold ``output/.lock`` while the block runs (``what`` names the command)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    path = Layout(out).lock
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": what,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for _ in range(2):
        if not create_only(path, json.dumps(me).encode()):
            h = _holder(path)
            if (
                h.get("host") == me["host"]
                and isinstance(h.get("pid"), int)
                and not _alive(h["pid"])
            ):
                log.warning(
                    "%s: taking over a stale lock of pid %s (%s, started %s)",
                    path,
                    h.get("pid"),
                    h.get("command"),
                    h.get("started"),
                )
                delete_file(path)
                continue
            raise PublishError(
                f"{path}: another bigseg run is writing this output (pid {h.get('pid')} on "
                f"{h.get('host')}, `{h.get('command')}`, started {h.get('started')}); it must "
                f"finish first. If that run is gone, delete {path}"
            )
        break
    try:
        remove_stale_staging(out)
        yield path
    finally:
        if _holder(path).get("pid") == me["pid"]:
            delete_file(path)
