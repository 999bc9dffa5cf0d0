"""Where the latest commit of a local output keeps each dataset, for tests and scripts.

Readers go through the commit manifest (:class:`bigseg.io.output.Output`); these helpers
answer the questions a test asks ("the scores folder", "metrics.json") from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bigseg.io.output import Output, model_dataset, scores_dataset


def committed(out) -> Output:
    """The latest commit of the output at ``out``."""
    return Output.open(Path(out))


def _prefix(o: Output, name: str) -> Path:
    """The one folder that holds every file of dataset ``name``; an AssertionError when
    the dataset lists files of several runs (an incremental store, an erased dataset
    carries the files it did not rewrite): read those through :func:`files`."""
    e = o.need(name)
    pre = e["prefix"]
    outside = [f["path"] for f in e["files"] if not f["path"].startswith(pre + "/")]
    assert not outside, f"{name}: files outside {pre}/: {outside[:3]}; use files()"
    return Path(o.root) / pre


def dataset_dir(out, name: str) -> Path:
    """The folder that holds dataset ``name`` in the latest commit (see :func:`_prefix`)."""
    return _prefix(committed(out), name)


def files(out, name: str) -> list[Path]:
    """The files of dataset ``name`` in the latest commit."""
    return [Path(p) for p in committed(out).files(name)]


def scores_dir(out, as_of=None) -> Path:
    """The folder of the committed scores at ``as_of`` (default: the latest date)."""
    o = committed(out)
    day = str(as_of) if as_of is not None else o.scores_dates()[-1]
    return _prefix(o, scores_dataset(day))


def model_dir(out, version: str | None = None) -> Path:
    """The folder of a committed model version (default: the latest)."""
    o = committed(out)
    v = version or o.latest_model()
    return _prefix(o, model_dataset(v))


def metrics_path(out) -> Path:
    return files(out, "metrics")[0]


def metrics(out) -> dict:
    """The committed ``metrics.json``."""
    return json.loads(metrics_path(out).read_text())


def report_path(out) -> Path:
    return files(out, "report")[0]
