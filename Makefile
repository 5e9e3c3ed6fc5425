# `make test` sets up everything the suite needs on a fresh machine, then runs it.
# `.ci/run` calls exactly `make test`; with CI=true the PostgreSQL, MariaDB, Redis
# and RabbitMQ legs fail instead of skipping when their servers are unreachable.

VENV ?= .venv
PYTHON ?= python3

.PHONY: test install system-packages services demo

install:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'

# chromium drives the console's browser tests; wrk loads servers in the benchmark smoke tests.
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Starts PostgreSQL, MariaDB, Redis and RabbitMQ on loopback when they are installed but not running.
services:
	bash scripts/services.sh

test: install system-packages services
	$(VENV)/bin/pytest

demo: install
	$(VENV)/bin/jet-sqla demo
