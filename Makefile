# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv and installs bigseg (with the dev tools) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bigseg demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bigseg tests benchmarks
	$(BIN)/ruff format --check bigseg tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_demo.py

clean:
	rm -rf $(VENV) bigseg-demo .pytest_cache
