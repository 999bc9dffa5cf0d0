"""Reading YAML config files and formatting pydantic validation errors, with messages that
name the file and the key path. A leaf module (it imports only :mod:`bigseg.errors`), so
both the run config (:mod:`bigseg.config`) and the cluster config
(:mod:`bigseg.engine.config`) use it without the engine importing the run config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bigseg.errors import ConfigError


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<top level>"


def format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        key = _key_path(e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


class _BadDate(ValueError):
    """A YAML timestamp that names no real date (``2026-09-31``)."""

    def __init__(self, node, err: ValueError):
        super().__init__(str(err))
        self.line, self.value = node.start_mark.line + 1, node.value


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose dates that do not exist raise :class:`_BadDate` (with
    the line) instead of a bare ``ValueError`` from deep inside the parser."""


def _timestamp(loader, node):
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError as e:
        raise _BadDate(node, e) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    text = p.read_text()
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except _BadDate as e:
        line = text.splitlines()[e.line - 1].strip()
        raise ConfigError(
            f"{p}: line {e.line} ({line!r}): {e.value} is not a date that exists ({e}); "
            f"write a real calendar date as YYYY-MM-DD"
        ) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc
