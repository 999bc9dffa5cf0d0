#!/usr/bin/env bash
# Installs bigseg as its image runs it into a new virtual environment VENV: exactly the
# packages of requirements-image.lock (the runtime, object storage and Kubernetes extras; no
# dev tools), then bigseg itself, not editable. The Dockerfile runs it; .ci/run runs it into
# a temporary venv and starts the CLI from there.
#   usage: deploy/install.sh VENV      (PYTHON picks the interpreter; default python3)
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 VENV" >&2
  exit 2
fi
venv=$1
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
# uv at the version requirements.lock pins, in a throwaway venv of its own: `uv pip sync`
# leaves VENV holding the image lock and nothing else, so uv cannot live inside it.
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
"$python" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q --no-cache-dir --disable-pip-version-check --no-deps \
  "$(grep -E '^uv==' "$repo/requirements.lock")"
uv="$tools/venv/bin/uv"
# Bytecode compiled now: the image's files are read-only to its non-root user, and without
# it every Dask worker would compile pandas, scipy and xgboost again at each start.
"$uv" pip sync -q --compile-bytecode --python "$venv/bin/python" "$repo/requirements-image.lock"
# bigseg is built by the setuptools that requirements.lock pins, not the newest one, from a
# copy of its sources: a build in the checkout would leave build/lib there, whose stale
# modules a later build would package again.
mkdir "$tools/src"
cp -R "$repo/pyproject.toml" "$repo/README.md" "$repo/bigseg" "$tools/src/"
"$uv" pip install -q --compile-bytecode --no-deps --python "$venv/bin/python" \
  --build-constraints "$repo/requirements.lock" "$tools/src"
