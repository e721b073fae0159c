# Entry points: `make run` starts the whole stack, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint format bench compose-test clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[local,dev,bench]'
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(PY) -m stack.run

# Every test but the compose staging check (minutes of Docker builds: `make compose-test`).
test: $(INSTALLED)
	$(PY) -m pytest -m "not compose"

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
