"""Can every worker see a path? Checked before a run that reads or writes local paths.

A local cluster shares the client's disk; workers on other hosts, in containers or in
their own mount namespaces do not, and would fail deep inside a stage with a
FileNotFoundError naming a path the client can open. A marker file written by the
client (the ``probe``) tells a shared directory from a different directory of the same
name on another disk.
"""

from __future__ import annotations

import os


def _check(paths: list[str], probe: tuple[str, str] | None) -> list[str]:
    """On a worker: the paths it cannot open, and the probe's path when its content is
    not the client's token (another disk, or no disk at all)."""
    missing = [p for p in paths if not os.path.exists(p)]
    if probe is not None:
        path, token = probe
        try:
            with open(path, encoding="utf-8") as f:
                seen = f.read() == token
        except OSError:
            seen = False
        if not seen:
            missing.append(os.path.dirname(path))
    return missing


def unseen_paths(client, paths: list[str], probe: tuple[str, str] | None = None) -> dict:
    """``{worker address: [paths it cannot see]}`` for the workers that miss any of
    ``paths`` or, with ``probe = (marker path, token)``, do not read the client's token
    from the marker. Empty when every worker sees everything."""
    got = client.run(_check, list(paths), probe)
    return {w: miss for w, miss in sorted(got.items()) if miss}
