# The two commands a newcomer needs: `make run` and `make test`. Everything else is for development.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS_STAMP := tests/js/node_modules/.installed

# Byte-compiled modules are written and reused. Where the environment sets PYTHONDONTWRITEBYTECODE
# (this machine's shell does), every process would compile the project's sources again, and
# pytest would rewrite every test module again in each of its workers: the suite starts about 200
# service and CLI processes, and a worker's collection took 14 s of CPU instead of 5.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help install browser proto run test test-fast soak bench bench-peers profile fmt lint typecheck check lock hooks clean

help:
	@echo "make run    start the service on the embedded SQLite store (installs first)"
	@echo "make test   install and run the whole test suite"
	@echo "make test-fast  the suite without the tests marked slow (for the edit-test loop)"
	@echo "make soak   the reliability suite at full size (minutes; prints its numbers)"
	@echo "make bench  beside the peers and against bare ceilings, every path (h2load; writes bench/results.md)"
	@echo "make bench-peers  just the side-by-side on SQLite: ours, the peers, the bare ceilings"
	@echo "make profile SCENARIO=refresh  one scenario under load, sampled by py-spy (PROFILE_ARGS=--gil --native)"
	@echo "make proto  regenerate gen/ from protos/"
	@echo "make fmt    ruff check --fix, then ruff format"
	@echo "make lint   ruff (lint + format check)"
	@echo "make lock   regenerate constraints.txt from pyproject.toml (commit both)"
	@echo "make hooks  install the pre-commit hooks (ruff, ruff format, mypy)"
	@echo "make check  lint, types and tests"

# Every package at the version constraints.txt pins, so that CI runs what was tested. PIP_CONSTRAINT
# also pins what pip installs to build the editable project (setuptools), which `-c` does not reach.
CONSTRAINTS := constraints.txt
PIP_LOCKED  := PIP_CONSTRAINT=$(CURDIR)/$(CONSTRAINTS) $(BIN)/python -m pip install --quiet -c $(CONSTRAINTS)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) --upgrade pip
	$(PIP_LOCKED) -e '.[dev]'
	$(BIN)/python -m compileall -q -j 0 gen server http_bridge launcher token_validator
	touch $(STAMP)

# The npm clients the tests run against the service (tests/js): only where npm is installed.
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix tests/js --no-audit --no-fund --loglevel=error && touch $(JS_STAMP); \
	else echo "npm not found: the tests that run openid-client, oauth4webapi and Chromium will skip" >&2; fi

install: $(STAMP) $(JS_STAMP)

# Debian's Chromium for the browser tests and PgBouncer for the pooler tests, installed with apt
# where this runs as root; elsewhere those tests skip with a notice.
DEBIAN_TEST_TOOLS := chromium:chromium pgbouncer:/usr/sbin/pgbouncer
browser:
	@missing=""; for pair in $(DEBIAN_TEST_TOOLS); do \
		command -v "$${pair#*:}" >/dev/null || missing="$$missing $${pair%%:*}"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's$$missing for the tests" >&2; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
		|| { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "$$missing could not be installed: their tests will skip" >&2; \
	fi

# Generated code lives only in gen/ and is written only here.
proto: $(STAMP)
	rm -rf gen/tokenservice
	mkdir -p gen
	PROTO_INCLUDE=$$($(BIN)/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))'); \
	COMMON_PROTOS=$$($(BIN)/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))'); \
	$(BIN)/python -m grpc_tools.protoc -Iprotos -I"$$COMMON_PROTOS" -I"$$PROTO_INCLUDE" \
		--python_out=gen --pyi_out=gen --grpc_python_out=gen \
		$$(find protos -name '*.proto' | sort)
	touch gen/tokenservice/__init__.py gen/tokenservice/v1/__init__.py

run: $(STAMP)
	$(BIN)/tokenservice serve

# Two pytest-xdist workers per core: a worker waits on its subprocesses, sockets and PostgreSQL
# about as long as it computes (on 2 cores, 4 workers took the suite from 419 s to 296 s, with
# the cores then busy). loadgroup keeps the tests that share one in-process ledger
# (tests/reliability) on one worker, in their order; the rest are spread.
PYTEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(2 * (os.cpu_count() or 1))')
XDIST := -n $(PYTEST_WORKERS) --dist loadgroup

test: install browser
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: install browser
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# tests/reliability at full size: 5,000 tokens through a SIGKILL, 200 rounds of 16 and of 100
# racing refreshes, PostgreSQL outages, 10,000 fuzz cases per transport. Needs PostgreSQL.
SOAK_REPORT ?= reliability-report.json
soak: $(STAMP)
	TOKENSERVICE_SOAK=1 TOKENSERVICE_TEST_REQUIRE_POSTGRES=$${TOKENSERVICE_TEST_REQUIRE_POSTGRES:-1} \
	TOKENSERVICE_RELIABILITY_REPORT=$(SOAK_REPORT) \
		$(BIN)/python -m pytest tests/reliability -p no:cacheprovider -rA $(PYTEST_ARGS)

# Loopback only; h2load is installed from Debian's nghttp2-client when missing and run as root.
# The peers (node-oidc-provider, django-oauth-toolkit) are installed at pinned versions into
# ~/.cache/tokenservice-bench (TOKENSERVICE_BENCH_CACHE) when missing; --peers off leaves them out.
# A smoke run (labelled so in the report):
#   make bench BENCH_ARGS="--runs 1 --requests 1000 --memory-tokens 0 --no-workers"
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# One scenario under py-spy (bench/profile.py): make profile SCENARIO=refresh PROFILE_ARGS="--gil --native"
SCENARIO ?= introspect_seen
profile: $(STAMP)
	$(BIN)/python -m bench.profile $(SCENARIO) $(PROFILE_ARGS)

bench-peers: $(STAMP)
	$(BIN)/python -m bench.run --stores sqlite --memory-tokens 0 --no-workers --no-http-protocols $(BENCH_ARGS)

# Fixes first, then formatting: a fix can leave code that needs reformatting (ruff's advice).
fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# Resolves pyproject.toml afresh (the newest versions its ranges allow) in a throw-away virtualenv
# and writes every installed version to constraints.txt. Run it after changing a dependency,
# then `make install` and `make test`, and commit both files (tests/project/test_lock_file.py fails
# while pyproject.toml asks for what the lock does not pin).
lock:
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	$(PYTHON) -m venv "$$scratch/venv"; \
	"$$scratch/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$scratch/venv/bin/python" -m pip install --quiet -e '.[dev]'; \
	{ echo "# Generated by \`make lock\` from pyproject.toml: every package \`make install\` and CI install,"; \
	  echo "# at the version tested. Do not edit by hand."; \
	  "$$scratch/venv/bin/python" -m pip freeze --all --exclude-editable; } > $(CONSTRAINTS).new; \
	mv $(CONSTRAINTS).new $(CONSTRAINTS); \
	echo "wrote $(CONSTRAINTS): run make install and make test, then commit it"

# The hooks run the virtualenv's ruff and mypy, so their versions are the ones pyproject.toml pins.
hooks: $(STAMP)
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules
