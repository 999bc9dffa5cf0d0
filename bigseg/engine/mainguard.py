"""Detect a script that starts local worker processes without a main guard.

Dask starts local workers with ``multiprocessing`` *spawn*: each worker process imports
the user's script again as ``__mp_main__``. A script that calls :func:`bigseg.run` (or
:func:`bigseg.engine.connect`) at its top level, outside ``if __name__ == "__main__":``,
would start a cluster again in every worker as it is imported, and the user would see
hundreds of lines of Dask tracebacks ending in "Nanny failed to start". This module finds
that case before any process starts, from the script's source.
"""

from __future__ import annotations

import ast
import logging
import sys
from pathlib import Path

from bigseg.errors import ConfigError

log = logging.getLogger(__name__)


def _guarded_lines(tree: ast.Module) -> list[tuple[int, int]]:
    """Line ranges of the top-level ``if __name__ == "__main__":`` blocks."""
    out = []
    for node in tree.body:
        if not isinstance(node, ast.If):
            continue
        t = node.test
        if (
            isinstance(t, ast.Compare)
            and len(t.comparators) == 1
            and {ast.unparse(t.left), ast.unparse(t.comparators[0])} == {"__name__", "'__main__'"}
        ):
            out.append((node.lineno, node.end_lineno or node.lineno))
    return out


def unguarded_call() -> tuple[str, int] | None:
    """``(script, line)`` of the top-level statement of ``__main__`` that led to this
    call when it is not inside a main guard; None when it is, or when there is no script
    (an interactive session, ``python -c``, a notebook, a test runner)."""
    frame = sys._getframe(1)
    while frame is not None:
        g = frame.f_globals
        if g.get("__name__") == "__main__" and frame.f_code.co_name == "<module>":
            break
        frame = frame.f_back
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    line = frame.f_lineno
    if any(a <= line <= b for a, b in _guarded_lines(tree)):
        return None
    return str(path), line


class MainGuardMissing(ConfigError, SystemExit):
    """A script starts a local cluster at its unguarded top level. A :class:`ConfigError`
    (``except ConfigError`` catches it) that is also a :class:`SystemExit` with the code
    of a config error: uncaught, the script ends with exit code 2 and the one line
    :func:`check_main_guard` printed, not a traceback (README, "Exit codes")."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = self.exit_code


def check_main_guard() -> None:
    """Log one line (the script, the line and the fix; on stderr by default) and raise
    :class:`MainGuardMissing` when a local cluster is about to start from a script's
    unguarded top level."""
    found = unguarded_call()
    if found is not None:
        script, line = found
        message = (
            f"{script}, line {line}: local worker processes re-import this script, so "
            f'put the bigseg calls under `if __name__ == "__main__":` (see the README)'
        )
        # logged, not printed: without a logging setup Python's last-resort handler
        # writes the bare line to stderr, and a script's own setup formats it
        log.error("bigseg: error: %s", message)
        raise MainGuardMissing(message)
