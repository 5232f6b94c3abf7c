# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean build-TelemetryFunction build-ActionsFunction influxdb

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-local: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

demo: $(VENV)/.installed-local
	$(BIN)/telemetry demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check telemetry tests benchmarks dashboards
	$(BIN)/ruff format --check telemetry tests benchmarks dashboards
	$(BIN)/python -m dashboards.build --check

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev influxdb
	$(BIN)/pytest -n 2 -q --cov --cov-report=term

# The tests write to and query a real InfluxDB 1.x: Debian's `influxdb` package,
# installed here when we can (root with apt-get). Without it those tests are
# skipped, except in CI (CI set), where that is a failure. The tests start their
# own influxd on free loopback ports; they never use a system service.
influxdb:
	@command -v influxd >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends influxdb >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && \
	      apt-get install -y -qq --no-install-recommends influxdb >/dev/null; } || \
	    { echo "make: could not install Debian's influxdb package" >&2; [ -z "$$CI" ] || exit 1; }; \
	  elif [ -n "$$CI" ]; then \
	    echo "make: CI needs influxd (apt-get install influxdb, as root)" >&2; exit 1; \
	  else \
	    echo "make: influxd not found (apt-get install influxdb): its tests will be skipped" >&2; \
	  fi; }

test: lint typecheck unit

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# `sam build` (BuildMethod: makefile) calls this with ARTIFACTS_DIR set. boto3
# comes with the Lambda runtime; the rest is installed for arm64 / Python 3.13.
build-TelemetryFunction build-ActionsFunction:
	$(PYTHON) -m pip install --quiet --target "$(ARTIFACTS_DIR)" \
		--platform manylinux2014_aarch64 --implementation cp --python-version 3.13 \
		--only-binary=:all: "aws-lambda-powertools>=3.0" "pydantic>=2.6,<3" "PyYAML>=6.0"
	cp -r telemetry rules "$(ARTIFACTS_DIR)/"
	rm -rf "$(ARTIFACTS_DIR)/telemetry/local" "$(ARTIFACTS_DIR)/telemetry/samples"
