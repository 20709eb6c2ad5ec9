# The README's commands. Each target installs what it needs and is safe to run twice.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ANVIL := node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

.PHONY: install demo test test-fast lint contracts bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(ANVIL): package.json package-lock.json
	npm ci --no-audit --no-fund
	test -x $(ANVIL)
	touch $(ANVIL)

install: $(STAMP) $(ANVIL)

demo: install
	$(BIN)/python -m app.demo

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check app chains wallets tests bench

contracts: $(ANVIL)
	node contracts/build.js

bench: install
	$(BIN)/python bench/backfill.py

clean:
	rm -rf $(VENV) node_modules .settle .pytest_cache
