# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where `make run` listens: `make run PORT=9000`, `make run HOST=0.0.0.0` (every interface).
PORT ?= 8000
HOST ?= 127.0.0.1
# Two installs, each stamped once it is newer than pyproject.toml: what running needs (`make run`,
# ~70 packages), and that plus the test, lint and type tools of the `dev` extra (`make test`).
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp

.PHONY: run test lint typecheck pytest migrate runtime venv clean bench bench-finance

runtime: $(RUNTIME_STAMP)
venv: $(DEV_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip prints each package as it goes: a first run takes a minute or two, and shows it.
$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing the runtime dependencies into $(VENV) (first run only)..."
	$(BIN)/pip install --disable-pip-version-check -e .
	touch $(RUNTIME_STAMP)

# The dev install contains the runtime one, so it stamps both: `make run` after it installs nothing.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing the runtime and development dependencies into $(VENV) (first run only)..."
	$(BIN)/pip install --disable-pip-version-check -e '.[dev]'
	touch $(RUNTIME_STAMP) $(DEV_STAMP)

## Start the gateway on the embedded default (SQLite in ./data, local blob store, local placeholder
## provider), migrated first.
run: runtime
	@echo "Image Gateway on http://$(HOST):$(PORT) (API docs at /docs); Ctrl-C stops it."
	$(BIN)/image-gateway serve --host $(HOST) --port $(PORT)

migrate: runtime
	$(BIN)/image-gateway migrate

lint: venv
	$(BIN)/ruff check app tests migrations
	$(BIN)/ruff format --check app tests migrations

typecheck: venv
	$(BIN)/mypy

# The suite waits on sockets and subprocesses far more than on the CPU: four workers on two cores.
pytest: venv
	$(BIN)/pytest -q -n 4

## Every check CI runs: lint, types, and the whole test suite on SQLite and PostgreSQL.
test: lint typecheck pytest

## Overhead, capacity and memory against a fake upstream (a few minutes; installs wrk with apt if
## missing). Pass options through BENCH_ARGS, e.g. BENCH_ARGS="--workers 1 --backends sqlite".
bench: venv
	sh tests/benchmarks/setup.sh
	$(BIN)/python -m tests.benchmarks.run $(BENCH_ARGS)

## Finance's usage report and CSV exports over a month of 1,000,000 requests, on SQLite and
## PostgreSQL: time and peak memory of each (~30 min; PostgreSQL on BENCH_POSTGRES_URL). Options
## through BENCH_FINANCE_ARGS, e.g. BENCH_FINANCE_ARGS="--backends sqlite --requests 20000".
bench-finance: venv
	$(BIN)/python -m tests.benchmarks.finance $(BENCH_FINANCE_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
