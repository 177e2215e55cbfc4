# Two commands matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test test-fast bench browser migrate clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall only when the pinned requirements change.
$(RUN_STAMP): requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(RUN_STAMP) $@

run: $(RUN_STAMP)
	$(PY) -m devtools.run

# The browser tests drive Debian's chromium; install it when missing and we are allowed to.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng) >/dev/null; \
	  else echo "chromium missing and not root: browser tests will fail" >&2; fi; }

test: $(DEV_STAMP) browser
	$(PY) -m devtools.testrun $(PYTEST_ARGS)

# Everything but the slow end-to-end tests (a quick loop while developing).
test-fast: $(DEV_STAMP)
	$(PY) -m devtools.testrun -m "not slow" $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(PY) -m bench.run

migrate: $(RUN_STAMP)
	$(PY) manage.py migrate

clean:
	rm -rf var/test-* var/bench
