# The front door. `make run` starts the daemon on the embedded store; `make test` runs every gate.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: run test lint format system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: re-install only when pyproject.toml changes.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test]'
	touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(BIN)/uptime-daemon --env dev run

system-deps:
	bash scripts/install-system-deps.sh

lint: $(VENV)/.test-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(VENV)/.test-deps system-deps lint
	$(BIN)/pytest

format: $(VENV)/.test-deps
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Figures, not tests: prints one JSON line per figure (see docs/reliability.md).
bench: $(VENV)/.test-deps system-deps
	$(BIN)/python bench/soak.py --services 1000 --minutes 10 --interval 10

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
