"""What breaks a cluster before any work runs, for ``bigseg cluster-check``: different
package versions on the client, the scheduler and the workers.

Dask pickles tasks, data and models on one side and unpickles them on the other, so the
client, the scheduler and every worker must run the same versions of the packages whose
objects travel (dask, distributed, pyarrow, numpy, xgboost) and of bigseg itself, whose
functions the workers run. A mismatch shows up late and far from its cause (a task that
fails to unpickle, an XGBoost model that loads differently), so it is checked first.

The storage checks of a run config (can every worker read the inputs and write under
``output:``?) need ``bigseg.io``, which the engine may not import: they are given to
:func:`bigseg.engine.cluster_check` as ``checks`` (``bigseg.pipeline.preflight``).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from distributed import Client

log = logging.getLogger(__name__)

#: packages whose versions must be the same on the client, the scheduler and every worker
PACKAGES = ("bigseg", "dask", "distributed", "pyarrow", "numpy", "xgboost")
#: the ones the scheduler must have: it runs no bigseg task and unpickles no data or model,
#: so it may lack the others (but where it has one, its version must match)
SCHEDULER_NEEDS = ("dask", "distributed")
VERSION_FIX = (
    "install the same versions everywhere (one environment for the client, the scheduler "
    "and the workers: the same container image, or `pip install -r requirements.lock` "
    "and the same bigseg)"
)


class Problem(NamedTuple):
    """Something that stops the cluster from running a job: where, what, and the fix."""

    #: ``"client"``, ``"scheduler tcp://..."`` or ``"worker tcp://..."``
    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.fix}"


def _version_reader():
    """A function ``names -> {name: version}`` (None: not installed; ``"unimportable
    (...)"``: installed but broken). It is defined inside this function so that
    cloudpickle ships it by value: a scheduler without bigseg installed still answers.

    It reads ``module.__version__`` after importing, not the installed distribution's
    metadata: what counts is the code the process runs (a checkout on ``PYTHONPATH``
    shadows the installed bigseg, whose metadata would still say the installed version).
    The import by name also keeps the engine from importing the bigseg package itself."""

    def versions(names):
        import importlib

        out = {}
        for name in names:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as e:
                # a dependency of the package missing is a broken package, not an absent one
                out[name] = None if e.name == name else f"unimportable ({e})"
                continue
            except Exception as e:  # noqa: BLE001 - a broken install is reported, not raised
                out[name] = f"unimportable ({type(e).__name__}: {e})"
                continue
            out[name] = str(getattr(module, "__version__", "unknown"))
        return out

    return versions


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """The versions of ``names`` in this process (see :data:`PACKAGES`).

    Examples
    --------
    >>> package_versions(("distributed",))["distributed"] is not None
    True
    """
    return _version_reader()(names)


def gather_versions(client: Client, names: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """``{"client": {...}, "scheduler": {...} or the exception, "workers": {address:
    {...} or the exception}}``, from ``client.run_on_scheduler`` and ``client.run``."""
    read = _version_reader()
    try:
        scheduler: Any = client.run_on_scheduler(read, names)
    except Exception as e:  # noqa: BLE001 - reported as a problem
        scheduler = e
    workers = client.run(read, names, on_error="return")
    return {"client": read(names), "scheduler": scheduler, "workers": workers}


def _installed(version: str | None) -> bool:
    return version is not None and not version.startswith("unimportable")


def _compare(where: str, got: Any, ref: dict, needed: tuple[str, ...]) -> list[Problem]:
    if isinstance(got, BaseException):
        return [
            Problem(
                where,
                f"could not report its package versions ({type(got).__name__}: {got})",
                VERSION_FIX,
            )
        ]
    out = []
    for name, mine in ref.items():
        theirs = got.get(name)
        if not _installed(mine) or theirs == mine:
            continue  # the client's own problem is reported once, for the client
        if not _installed(theirs):  # absent or broken: a problem where it is needed
            if name in needed:
                what = f"{name} is {theirs or 'not installed'} (client {mine})"
                out.append(Problem(where, what, VERSION_FIX))
            continue
        out.append(Problem(where, f"{name} {theirs}, client {mine}", VERSION_FIX))
    return out


def version_problems(versions: dict[str, Any], scheduler: str = "") -> list[Problem]:
    """The problems in :func:`gather_versions`' result: a checked package missing or of
    another version than the client's on a worker, or on the scheduler (where only
    :data:`SCHEDULER_NEEDS` must be installed); one missing or broken on the client.

    Examples
    --------
    >>> v = {"numpy": "2.0.0", "dask": "2025.1.0"}
    >>> [str(p) for p in version_problems({"client": v, "scheduler": v,
    ...     "workers": {"tcp://w:1": {"numpy": "1.26.4", "dask": "2025.1.0"}}})]  # doctest: +ELLIPSIS
    ['worker tcp://w:1: numpy 1.26.4, client 2.0.0: install the same versions everywhere ...']
    """
    ref = versions["client"]
    out = [
        Problem("client", f"{name} is {v or 'not installed'}", VERSION_FIX)
        for name, v in ref.items()
        if not _installed(v)
    ]
    where = f"scheduler {scheduler}".rstrip()
    out += _compare(where, versions["scheduler"], ref, SCHEDULER_NEEDS)
    for address, got in sorted(versions["workers"].items()):
        out += _compare(f"worker {address}", got, ref, tuple(ref))
    return out
