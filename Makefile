# hisx: every target builds .venv and installs what it needs on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HISX_HOME ?= $(CURDIR)/.hisx
export HISX_HOME
# Debian packages the tests need: unixODBC + psqlODBC (+ FreeTDS for the mssql path),
# PostgreSQL 15 server binaries for the primary + hot standby rig.
APT_PACKAGES := unixodbc unixodbc-dev odbc-postgresql tdsodbc postgresql-15

.PHONY: venv demo test ui bench lint fmt system-deps clean docs

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: venv
	$(BIN)/hisx demo

test: venv system-deps
	bash scripts/test.sh

ui: venv
	bash scripts/ui.sh

$(VENV)/.bench-stamp: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

bench: venv system-deps $(VENV)/.bench-stamp
	@dpkg -s wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	bash scripts/bench.sh

docs: venv
	$(BIN)/hisx standards dictionary --out docs/data-dictionary

lint: venv
	$(BIN)/ruff check src tests bench

fmt: venv
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(HISX_HOME) .pytest_cache
