# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest migrate venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start the gateway on the embedded default (SQLite, local blob store, local placeholder provider).
run: venv
	$(BIN)/image-gateway serve

migrate: venv
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

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
