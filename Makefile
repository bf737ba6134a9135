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

# Figures, not tests: each script prints one JSON line per figure, kept in var/bench/ (about 80 min
# in all; docs/performance.md and docs/reliability.md quote them). One at a time: they measure CPU.
BENCH_OUT := var/bench
bench: $(VENV)/.test-deps system-deps
	bash scripts/install-system-deps.sh scripts/bench-packages.txt
	mkdir -p $(BENCH_OUT)
	$(BIN)/python bench/probes.py --seconds 30 --warmup 10 | tee $(BENCH_OUT)/probes.jsonl
	$(BIN)/python bench/scale.py --scrape-every 15 | tee $(BENCH_OUT)/scale.jsonl
	$(BIN)/python bench/scale.py --scenario 10k --scrape-every 15 --scrape-gzip | tee $(BENCH_OUT)/scale_gzip.jsonl
	$(BIN)/python bench/scale.py --scenario 10k --scrape-every 15 --history-days 89 | tee $(BENCH_OUT)/scale_held.jsonl
	$(BIN)/python bench/replay.py | tee $(BENCH_OUT)/replay.jsonl
	$(BIN)/python bench/api.py | tee $(BENCH_OUT)/api.jsonl
	$(BIN)/python bench/soak.py --services 1000 --minutes 10 --interval 10 | tee $(BENCH_OUT)/soak.jsonl
	$(BIN)/python bench/cluster.py | tee $(BENCH_OUT)/cluster.jsonl
	$(BIN)/python bench/kinds.py | tee $(BENCH_OUT)/kinds.jsonl
	$(BIN)/python bench/herd.py | tee $(BENCH_OUT)/herd.jsonl
	$(BIN)/python bench/per_check.py | tee $(BENCH_OUT)/per_check.jsonl
	$(BIN)/python bench/overload.py | tee $(BENCH_OUT)/overload.jsonl
	$(BIN)/python bench/status_page.py | tee $(BENCH_OUT)/status_page.jsonl
	$(BIN)/python bench/storage.py | tee $(BENCH_OUT)/storage.jsonl
	$(BIN)/python bench/retention.py | tee $(BENCH_OUT)/retention.jsonl
	$(BIN)/python bench/fold.py | tee $(BENCH_OUT)/fold.jsonl
	$(BIN)/python bench/loop_holds.py | tee $(BENCH_OUT)/loop_holds.jsonl
	$(BIN)/python bench/scrape_render.py | tee $(BENCH_OUT)/scrape_render.jsonl
	$(BIN)/python bench/history_memory.py | tee $(BENCH_OUT)/history_memory.jsonl

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
