# `make test` sets up everything the suite needs on a fresh machine, then runs it.
# `.ci/run` calls exactly `make test`; with CI=true the PostgreSQL and MariaDB
# legs fail instead of skipping when their servers are unreachable.

VENV ?= .venv
PYTHON ?= python3

.PHONY: test install browser demo

install:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'

browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo 'installing chromium for the console tests'; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(VENV)/bin/pytest

demo: install
	$(VENV)/bin/jet-sqla demo
