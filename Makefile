# rdbench front door. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help install test test-fast lint

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: ## Create .venv with the pinned stack and rdbench in editable mode
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements/dev-pinned.txt
	$(BIN)/pip install --no-deps -e .

test: ## Run the whole test suite (what CI runs)
	$(BIN)/pytest -q

test-fast: ## The fast suite: skip slow and Docker tests
	$(BIN)/pytest -q -m "not slow and not docker"

lint: ## ruff
	$(BIN)/ruff check rdbench tests
