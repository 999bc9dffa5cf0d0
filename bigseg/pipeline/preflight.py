"""Checks before any work starts: can the workers see the run's local paths? And, for
``bigseg cluster-check --config``, can every worker read each input and write under
``output:``?"""

from __future__ import annotations

import secrets

from bigseg.config import RunConfig
from bigseg.engine.checks import Problem
from bigseg.engine.visibility import unseen_paths
from bigseg.errors import ConfigError
from bigseg.io.commit import delete_file, write_text_atomic
from bigseg.io.layout import Layout
from bigseg.io.probe import place_token, remove_token, unreadable, write_probe
from bigseg.io.storage import is_remote


def check_workers_see(cfg: RunConfig, client, inputs: bool = True) -> None:
    """Refuse (exit 2), before anything is computed, a local ``output:`` or input path
    that a worker cannot see: workers read and write those paths themselves. The output
    is checked with a marker file the client writes there, so a different directory of
    the same name on a worker's own disk does not pass."""
    paths = [str(p) for p in cfg.local_input_paths() if p.exists()] if inputs else []
    if cfg.is_remote:  # object storage: every worker reaches it by URL
        unseen = unseen_paths(client, paths) if paths else {}
    else:
        unseen = _unseen_with_marker(cfg, client, paths)
    if unseen:
        lines = "; ".join(f"{w} cannot see {', '.join(p)}" for w, p in unseen.items())
        raise ConfigError(
            f"the Dask workers do not share this machine's files: {lines}. Workers read the "
            f"inputs and write output: themselves, so local paths must be on a filesystem "
            f"every worker mounts at the same path; otherwise put the inputs and output: on "
            f"object storage and give URLs (output: s3://bucket/prefix, path: s3://...)"
        )


def _unseen_with_marker(cfg: RunConfig, client, paths: list[str]) -> dict:
    """The output is checked with a marker the client writes there (a folder of the
    same name on a worker's own disk does not pass)."""
    out = Layout(cfg.output_dir)
    marker = out.root / f".bigseg-visible-{secrets.token_hex(8)}"
    token = secrets.token_hex(16)
    write_text_atomic(marker, token)
    try:
        return unseen_paths(client, paths, (str(marker), token))
    finally:
        delete_file(marker)


#: the fix of a worker without bigseg, or with one that cannot run the probes
INSTALL_FIX = "install bigseg on every worker, the client's version (see the version problems)"
#: what a worker cannot do with ``output:`` -> the fix, by :func:`write_probe`'s step
OUTPUT_FIXES = {
    "see": (
        "mount output: at the same path on every worker (a shared filesystem), or put it "
        "on object storage (output: s3://bucket/prefix)",
        "give every worker the client's storage environment (credentials, AWS_ENDPOINT_URL "
        "and the like) so that it reaches the same store",
    ),
    "write": ("grant every worker write access under output: (workers write the datasets)",) * 2,
    "delete": ("grant every worker delete access under output:",) * 2,
}


def _input_fix(location: str) -> str:
    if is_remote(location):
        return (
            "check the path, and give every worker the client's storage environment "
            "(credentials, AWS_ENDPOINT_URL and the like) and read access to it"
        )
    return (
        "mount it at the same path on every worker (a shared filesystem), or put the inputs "
        "on object storage (path: s3://bucket/prefix)"
    )


def storage_problems(cfg: RunConfig, client) -> list[Problem]:
    """Can every worker read each input of ``cfg`` and create and delete an object under
    its ``output:``? The problems, one per worker and input (or output). A probe object
    is deleted at once; the client's token, and the local folders it needed, after the
    workers are done: nothing is left behind."""
    opts = cfg.storage_options.as_dict()
    inputs = {cfg.location(tc.path): f"data.{t}.path" for t, tc in cfg.data.tables().items()}
    out = []
    for worker, got in sorted(
        client.run(unreadable, list(inputs), opts, on_error="return").items()
    ):
        where = f"worker {worker}"
        if isinstance(got, BaseException):
            out.append(Problem(where, f"cannot run the storage probe ({_why(got)})", INSTALL_FIX))
            continue
        for location, why in got:
            what = f"cannot read {inputs[location]} {location} ({why})"
            out.append(Problem(where, what, _input_fix(location)))
    return out + _output_problems(cfg, client, opts)


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _output_problems(cfg: RunConfig, client, opts: dict) -> list[Problem]:
    url = cfg.output_url
    try:
        token = place_token(url, opts)
    except Exception as e:  # noqa: BLE001 - the workers cannot be checked without it
        fix = "grant the client write access under output:, or choose another output:"
        return [Problem("client", f"cannot write under output: {url} ({_why(e)})", fix)]
    try:
        got = client.run(write_probe, url, opts, token, on_error="return")
    finally:
        remove_token(token, opts)
    what = {
        "see": f"does not see output: {url} as the client does",
        "write": f"cannot write under output: {url}",
        "delete": f"cannot delete under output: {url}",
    }
    out = []
    for worker, res in sorted(got.items()):
        where = f"worker {worker}"
        if isinstance(res, BaseException):
            out.append(Problem(where, f"cannot run the storage probe ({_why(res)})", INSTALL_FIX))
        elif res is not None:
            step, why = res
            fix = OUTPUT_FIXES[step][is_remote(url)]
            out.append(Problem(where, f"{what[step]} ({why})", fix))
    return out
