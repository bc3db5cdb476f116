# Two commands: `make up` runs the fleet, `make test` runs the tests. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# Debian packages the tests need beside Python's: tmux is the real terminal the Ctrl-C tests type into; chromium the
# real browser the console's tests drive (Playwright launches it: nothing is downloaded); Zabbix 6.0's server schema,
# agent and PHP for its frontend, which the template is imported into; prometheus for promtool.
DEBIAN_PACKAGES := tmux chromium zabbix-server-pgsql zabbix-agent prometheus \
	php8.2-cli php8.2-pgsql php8.2-mbstring php8.2-xml php8.2-gd php8.2-bcmath
# The Zabbix frontend's files, unpacked from its package: installing it would pull in Apache.
ZABBIX_FRONTEND := .cache/zabbix-frontend
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install debian-packages up up-daemon down test bench chaos status screenshots

install: $(STAMP)

# Installed with apt-get only when one is missing, so a machine that has them needs neither root nor a network.
# A package that cannot be installed at all leaves its tests skipped, each naming what is missing.
debian-packages: $(ZABBIX_FRONTEND)/usr/share/zabbix/api_jsonrpc.php
	@missing="$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing (apt-get)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing \
			|| echo "could not install every Debian package: the tests that need one are skipped"; \
	fi

$(ZABBIX_FRONTEND)/usr/share/zabbix/api_jsonrpc.php:
	@mkdir -p $(ZABBIX_FRONTEND)/deb
	@cd $(ZABBIX_FRONTEND)/deb && { ls zabbix-frontend-php_*.deb >/dev/null 2>&1 || apt-get download zabbix-frontend-php \
		|| { $(SUDO) apt-get update -qq && apt-get download zabbix-frontend-php; }; } \
		&& dpkg-deb -x zabbix-frontend-php_*.deb .. \
		|| echo "could not unpack zabbix-frontend-php: the Zabbix import test is skipped"

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

# The README's pictures: the console and the Prometheus alerts page, made by their tests on the whole shipped fleet.
screenshots: install debian-packages
	README_SCREENSHOTS=docs/console $(BIN)/pytest -q -p no:cacheprovider tests/test_console_browser.py -k shipped
	README_SCREENSHOTS=docs/monitoring $(BIN)/pytest -q -p no:cacheprovider tests/test_prometheus_rules.py -k real_prometheus

bench: install
	$(BIN)/python bench/run.py

chaos: install
	$(BIN)/python bench/chaos.py
