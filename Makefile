# `make test` sets up everything the suite needs on a fresh machine, then runs it.
# `.ci/run` calls exactly `make test`; with CI=true the PostgreSQL and MariaDB
# legs fail instead of skipping when their servers are unreachable.

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

# The background-job tests need Redis and RabbitMQ on 127.0.0.1: start whichever does not answer.
PROBE = $(PYTHON) -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)"
services:
	@$(PROBE) 6379 2>/dev/null || { echo 'starting redis-server'; redis-server --bind 127.0.0.1 --daemonize yes >/dev/null; }
	@$(PROBE) 5672 2>/dev/null || { echo 'starting rabbitmq-server'; rabbitmq-server -detached >/dev/null 2>&1; \
		for i in $$(seq 60); do $(PROBE) 5672 2>/dev/null && break; sleep 1; done; }

test: install system-packages services
	$(VENV)/bin/pytest

demo: install
	$(VENV)/bin/jet-sqla demo
