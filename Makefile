# spendguard — one Makefile for people and CI. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SG     := $(BIN)/spendguard
PYTEST_ARGS ?=
# Test processes for `make test` (pytest-xdist): CI has 2 cores, and many tests wait on servers,
# subprocesses and a browser. Each test file runs whole in one process (--dist loadfile), so a
# module's expensive fixture (the demo-loaded dashboard, LiteLLM, moto) is built once; files with
# `slow` tests are handed out first (tests/conftest.py) so that short ones even out the end;
# --no-loadscope-reorder keeps that order (xdist would put the files with most tests first, and
# the slow files, which have few tests, last: one process then finished them alone).
# (Not --dist loadgroup: pytest-xdist 3.8 cannot group tests under pytest 9.2, whose node ids
# moved; its groups are silently ignored.)
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help run test lint format demo bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "spendguard needs Python 3.11+; run: make PYTHON=python3.11 …")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --progress-bar off -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]'
	@touch $(VENV)/.installed $@

run: $(VENV)/.installed ## set up .venv, migrate, load demo data if empty, start api+worker+dashboard
	$(SG) db upgrade
	$(SG) demo --if-empty
	$(SG) up

# litellm (tests/test_litellm_hook.py) is large: only `make test` installs it, not `make lint`.
$(VENV)/.installed-gateways: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test,gateways]'
	@touch $(VENV)/.installed $(VENV)/.installed-test $@

test: $(VENV)/.installed-gateways lint ## set up .venv with test and gateway extras, lint, run the whole suite
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(VENV)/.installed-test ## ruff (check + format check) and mypy strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-test ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(VENV)/.installed ## (re)load 30 days of demo data into the configured warehouse
	$(SG) demo

bench: $(VENV)/.installed ## run the benchmarks in bench/ and print their figures
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean: ## remove the virtualenv, caches and the default SQLite warehouse
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache spendguard.db spendguard.db-wal spendguard.db-shm spendguard.db.*.lock demo-data
