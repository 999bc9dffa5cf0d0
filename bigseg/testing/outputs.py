"""Where the latest commit of a local output keeps each dataset, for tests and scripts.

Readers go through the commit manifest (:class:`bigseg.io.output.Output`); these helpers
answer the questions a test asks (a dataset's files, "metrics.json") from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bigseg.io.output import Output


def committed(out) -> Output:
    """The latest commit of the output at ``out``."""
    return Output.open(Path(out))


def files(out, name: str) -> list[Path]:
    """The files of dataset ``name`` in the latest commit."""
    return [Path(p) for p in committed(out).files(name)]


def metrics_path(out) -> Path:
    return files(out, "metrics")[0]


def metrics(out) -> dict:
    """The committed ``metrics.json``."""
    return json.loads(metrics_path(out).read_text())


def report_path(out) -> Path:
    return files(out, "report")[0]
