# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv on first use and installs exactly the versions in requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
# The image's environment (Dockerfile, deploy/install.sh): the runtime with the object-storage
# extras and the Kubernetes one (the client in a pod starts the DaskCluster), no dev tools.
IMAGE_LOCK   := requirements-image.lock
IMAGE_EXTRAS := --extra s3 --extra gcs --extra azure --extra kubernetes
# The one platform the lock is made for: the Python and OS that CI runs.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: demo test test-slow test-latest lint layers lock lock-image lock-check bench clean

# uv comes from the lock too, so the bootstrap pip install names the locked version; `uv pip sync`
# then makes .venv equal to the lock (removing anything else), and bigseg goes in editable, built
# by the locked setuptools rather than an isolated build environment with whatever is newest.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as on CI) nothing else
# writes it, and every Dask worker would compile pandas, scipy and xgboost from source at start
# (importing bigseg.pipeline: 7.7 s without, 3.6 s with).
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-deps "$$(grep -E '^uv==' $(LOCK))"
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q bigseg >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bigseg demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

# The newest versions pyproject.toml allows, in a venv of their own: what the next `make lock`
# would bring, tried without touching .venv.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q uv
	.venv-latest/bin/uv pip install -q --python .venv-latest/bin/python --upgrade -e ".[dev]"
	.venv-latest/bin/python tools/lock_check.py $(LOCK) .venv-latest/bin/python --report
	.venv-latest/bin/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bigseg tests benchmarks tools
	$(BIN)/ruff format --check bigseg tests benchmarks tools
	$(BIN)/hadolint Dockerfile
	$(MAKE) --no-print-directory layers

# The declared layers and no import cycles: the contracts in pyproject.toml [tool.importlinter].
layers: $(STAMP)
	$(BIN)/lint-imports --no-cache

# Refresh the lock to the newest versions pyproject.toml allows, then the image's; commit both.
lock: $(STAMP)
	$(BIN)/uv pip compile -q --upgrade --extra dev $(LOCK_TARGET) pyproject.toml -o $(LOCK)
	$(MAKE) --no-print-directory lock-image

# The image's lock, constrained by requirements.lock: a package both hold has the version CI
# tested (tests/test_deploy.py checks it); only the packages the dev lock lacks move on.
lock-image: $(STAMP)
	$(BIN)/uv pip compile -q --upgrade $(IMAGE_EXTRAS) --constraint $(LOCK) $(LOCK_TARGET) \
		pyproject.toml -o $(IMAGE_LOCK)

# .venv holds exactly the lock: what CI tested is what is installed.
lock-check: $(STAMP)
	$(BIN)/python tools/lock_check.py $(LOCK) $(BIN)/python

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_demo.py

clean:
	rm -rf $(VENV) .venv-latest bigseg-demo .pytest_cache
