# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine.
# Each target installs only what it needs: the demo the runtime, tests and lint the dev
# tools, benchmarks their peers (lm-eval, TRL). One stamp per extra records what is there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch pinned here lies on the development machines' disk; GPU users bring their own.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed-runtime: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-runtime
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-dev
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $@

install: $(VENV)/.installed-runtime

demo: $(VENV)/.installed-runtime
	$(BIN)/alignpt demo

test: export OMP_WAIT_POLICY ?= PASSIVE
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

bench: export OMP_WAIT_POLICY ?= PASSIVE
bench: $(VENV)/.installed-bench
	set -e; for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
