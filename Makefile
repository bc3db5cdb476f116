# Two commands: `make up` runs the fleet, `make test` runs the tests. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install up up-daemon down test bench chaos status

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

up: install
	$(BIN)/botfleet up

up-daemon: install
	$(BIN)/botfleet up --daemon

down: install
	$(BIN)/botfleet down

status: install
	$(BIN)/botfleet status

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/botfleet config check
	$(BIN)/botfleet supervisor render --check
	$(BIN)/pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py

chaos: install
	$(BIN)/python bench/chaos.py
