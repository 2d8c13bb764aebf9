# rdg-platform developer commands. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: ## Create/reuse the virtualenv with the pinned dependencies (needs Python 3.11, Java 17, Maven)
	@scripts/bootstrap.sh

demo: install ## Install, start Kafka/Cassandra/registry, topics, apps, API, Dagster UI, and send events
	$(BIN)/rdg demo

test: install ## Install and run the whole test suite (unit + integration on real services)
	$(BIN)/pytest -v -ra $(PYTEST_ARGS)

unit: install ## Run only the unit tests (no services needed)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

lint: install ## ruff + mypy
	$(BIN)/ruff check rdg_platform tests benchmarks
	$(BIN)/mypy rdg_platform tests benchmarks

services-up: install ## Start the local services (Kafka, Cassandra, schema registry)
	$(BIN)/rdg services up

services-down: install ## Stop the local services this project started
	$(BIN)/rdg services down

bench: install ## Run all benchmarks and print their tables (see benchmarks/RESULTS.md)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; PYTHONPATH=. $(BIN)/python $$b || exit 1; done

.PHONY: help install demo test unit lint services-up services-down bench
