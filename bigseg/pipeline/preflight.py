"""Checks before any work starts: can the workers see the run's local paths?"""

from __future__ import annotations

import secrets

from bigseg.config import RunConfig
from bigseg.engine.visibility import unseen_paths
from bigseg.errors import ConfigError
from bigseg.io.commit import delete_file, write_text_atomic
from bigseg.io.layout import Layout


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
