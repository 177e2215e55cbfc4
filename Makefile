# Two commands matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test test-fast bench browser pgbouncer migrate clean

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

# The PgBouncer test (tests/integration/test_pgbouncer.py) starts Debian's pgbouncer in front of the test database.
pgbouncer:
	@command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer) >/dev/null; \
	  else echo "pgbouncer missing and not root: the PgBouncer test will fail" >&2; fi; }

# The whole suite on Redis, in two lanes side by side (devtools/testrun.py LANES: tests/e2e | tests/unit,
# tests/integration, tests/reliability), each isolated as a separate run; the e2e lane then runs the job-running
# end-to-end modules again on RabbitMQ, on a vhost of their own: tests/e2e minus the browser pages, `make run`
# and test_amqp_broker.py (on RabbitMQ in the main run already), about 70 % of tests/e2e's time (measured:
# docs/BENCHMARKS.md, "make test's RabbitMQ pass"). RabbitMQ unreachable: a loud warning, no second pass.
# TEST_AMQP_PASS=0 skips it; TEST_BROKER=amqp runs the given tests on RabbitMQ instead; TEST_LANES=1 runs the
# whole suite as one session.
test: $(DEV_STAMP) browser pgbouncer
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
