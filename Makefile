# Two commands: `make up` runs the fleet, `make test` runs the tests. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Debian packages the tests need beside Python's: tmux is the real terminal the Ctrl-C tests type into; chromium the
# real browser the console's tests drive (Playwright launches it: nothing is downloaded).
DEBIAN_PACKAGES := tmux chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install debian-packages up up-daemon down test bench chaos status screenshots

install: $(STAMP)

# Installed with apt-get only when one is missing, so a machine that has them needs neither root nor a network.
debian-packages:
	@missing="$$(for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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

test: install debian-packages
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/botfleet config check
	$(BIN)/botfleet supervisor render --check
	$(BIN)/pytest $(PYTEST_ARGS)

# The README's pictures of the console, made by its browser test on the whole shipped fleet.
screenshots: install debian-packages
	CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest -q -p no:cacheprovider tests/test_console_browser.py -k shipped

bench: install
	$(BIN)/python bench/run.py

chaos: install
	$(BIN)/python bench/chaos.py
