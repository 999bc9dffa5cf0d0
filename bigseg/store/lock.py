"""One writer per output directory.

Every command that writes under ``output:`` holds ``output/.lock`` for its whole run: a
file created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file systems) holding
who took it. A second run on the same output fails at once with
:class:`~bigseg.errors.PublishError` (exit code 6), naming the holder. A lock left by a
process that no longer exists on this host (killed with SIGKILL, machine rebooted) is
stale and taken over, with a warning; a lock from another host is never taken over
automatically (delete it by hand once that run is known to be gone).

Once the lock is held, staging directories left under ``output/.staging/`` by runs that
died are deleted (:func:`~bigseg.store.publish.remove_stale_staging`): with the lock
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
from bigseg.store.publish import remove_stale_staging

log = logging.getLogger(__name__)

LOCK = ".lock"


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
    path = out / LOCK
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": what,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
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
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            raise PublishError(
                f"{path}: another bigseg run is writing this output (pid {h.get('pid')} on "
                f"{h.get('host')}, `{h.get('command')}`, started {h.get('started')}); it must "
                f"finish first. If that run is gone, delete {path}"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        remove_stale_staging(out)
        yield path
    finally:
        if _holder(path).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
