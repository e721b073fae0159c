# Entry points: `make run` starts the whole stack, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The Open Inference Protocol's clients (tests/e2e/test_inference_protocol_clients.py) pin packages
# the project pins otherwise (tritonclient: greenlet): they get a small virtualenv of their own.
CLIENTS_VENV := .venv-clients
CLIENTS_INSTALLED := $(CLIENTS_VENV)/.installed

.PHONY: install run test test-deps clients-venv lint format bench compose-test clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[local,dev,bench]'
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(PY) -m core.harness.run

# Every test but the compose staging check (minutes of Docker builds: `make compose-test`).
test: test-deps $(INSTALLED) $(CLIENTS_INSTALLED)
	$(PY) -m pytest -m "not compose"

$(CLIENTS_INSTALLED): tests/clients-constraints.txt
	test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/python -m pip install --quiet -c tests/clients-constraints.txt \
		'tritonclient[http]==2.73.0' 'kserve==0.21.0'
	touch $(CLIENTS_INSTALLED)

clients-venv: $(CLIENTS_INSTALLED)

# What the tests need from the system, installed with apt when missing (as `bench` does for wrk):
# Debian's Chromium and its own chromedriver (tests/browser), and, as root, useradd (passwd), with
# which the embedded PostgreSQL gets the system user it runs as. Not root: stop with the command.
test-deps:
	@need=""; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	command -v chromedriver >/dev/null 2>&1 || need="$$need chromium-driver"; \
	if [ "$$(id -u)" = 0 ] && ! command -v useradd >/dev/null 2>&1; then need="$$need passwd"; fi; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "make test needs:$$need. Install it as root, then run make test again:" >&2; \
		echo "  sudo apt-get update && sudo apt-get install -y$$need" >&2; \
		exit 1; \
	fi; \
	echo "make test: installing$$need with apt"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$need >/dev/null

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

format: $(INSTALLED)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Benchmark: every prediction server side by side, interleaved (loadtests/bench.py).
# BENCH_ARGS passes options, e.g. `make bench BENCH_ARGS="--rounds 5 --seconds 15"`.
bench: $(INSTALLED)
	command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m loadtests.bench $(BENCH_ARGS)

# Staging check, not part of `make test`: build the compose stack, run a user's flow through web,
# restart and recreate services, check the volumes kept data and model
# (tests/compose/test_compose_stack.py). Starts a Docker engine with docker-offline if none answers;
# its Debian client (in /usr/bin) has BuildKit built in.
compose-test: $(INSTALLED)
	docker info >/dev/null 2>&1 || ../shared/tools/docker-offline/docker-offline setup
	PATH=/usr/bin:$$PATH $(PY) -m pytest tests/compose -m compose -s $(COMPOSE_TEST_ARGS)

clean:
	rm -rf $(VENV) $(CLIENTS_VENV) .pytest_cache .mypy_cache .ruff_cache
