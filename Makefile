# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The function's dependencies, pinned with their hashes (`make lock` renews it).
LOCK   := requirements/function.txt

.PHONY: demo test lint typecheck unit bench clean build-TelemetryFunction build-ActionsFunction influxdb mosquitto \
	lambda-python function-files lock checkov

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The function's dependencies come from the lock file, hashes checked, exactly as
# the build installs them; the rest of the extra is resolved around them.
$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed-local: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
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

unit: $(VENV)/.installed-dev influxdb mosquitto checkov
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

# The local IoT Core's broker is Debian's mosquitto 2.0 (its clients, mosquitto_pub and
# mosquitto_sub, are what the tests connect with too), and its policy plugin is compiled
# on first use (telemetry/local/thing_policy.c: gcc, the mosquitto and OpenSSL headers).
# Installed as influxd is: root with apt-get; in CI (CI set) a missing one is a failure.
MOSQUITTO_PACKAGES := mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev libssl-dev gcc libc6-dev

mosquitto:
	@{ command -v mosquitto_pub >/dev/null 2>&1 && command -v cc >/dev/null 2>&1 && \
	   { command -v mosquitto || test -x /usr/sbin/mosquitto; } >/dev/null 2>&1 && \
	   test -f /usr/include/mosquitto_plugin.h && test -f /usr/include/openssl/x509.h; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends $(MOSQUITTO_PACKAGES) >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null && \
	      apt-get install -y -qq --no-install-recommends $(MOSQUITTO_PACKAGES) >/dev/null; } || \
	    { echo "make: could not install Debian's mosquitto packages" >&2; [ -z "$$CI" ] || exit 1; }; \
	  elif [ -n "$$CI" ]; then \
	    echo "make: CI needs mosquitto (apt-get install $(MOSQUITTO_PACKAGES), as root)" >&2; exit 1; \
	  else \
	    echo "make: mosquitto not found (apt-get install $(MOSQUITTO_PACKAGES)): its tests will be skipped" >&2; \
	  fi; }

test: lint typecheck unit

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# checkov scans the template in the tests (tests/test_template.py). Its own pins
# (an older boto3 among them) clash with ours, so it lives in a venv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION := 3.3.30

checkov: $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

# Renew the lock file: the function's dependencies (pyproject's, without boto3 and
# its own, which the Lambda runtime brings) for Python 3.11 to 3.13 on any platform,
# every wheel's hash. Pins already there stay unless `UPGRADE=--upgrade`.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--no-emit-package boto3 --no-emit-package botocore --no-emit-package s3transfer \
		--no-emit-package urllib3 --no-emit-package python-dateutil --no-emit-package six \
		--quiet $(UPGRADE) -o $(LOCK)

# The Lambda runtime, as template.yaml's Globals name it (python3.13), and an
# interpreter of exactly that version: the artifact's bytecode is compiled by it,
# since /var/task is read-only and bytecode of any other version is ignored (every
# cold start would compile the package from source). LAMBDA_PYTHON picks one; by
# default `python3.13` on PATH, else pyenv's. A mismatch refuses to build.
LAMBDA_RUNTIME := $(shell sed -n 's/^ *Runtime: *\(python3\.[0-9][0-9]*\) *$$/\1/p' template.yaml | sort -u)
LAMBDA_PYTHON ?= $(shell for p in $(LAMBDA_RUNTIME) \
	$$(pyenv root 2>/dev/null)/versions/$(subst python,,$(LAMBDA_RUNTIME)).*/bin/$(LAMBDA_RUNTIME); do \
	"$$p" -c pass >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

lambda-python:
	@test "$(words $(LAMBDA_RUNTIME))" = 1 || { \
	  echo "make: template.yaml must name one python runtime, not '$(LAMBDA_RUNTIME)'" >&2; exit 1; }
	@test -n "$(LAMBDA_PYTHON)" || { \
	  echo "make: the build needs $(LAMBDA_RUNTIME), the function's runtime (or LAMBDA_PYTHON=...)" >&2; \
	  exit 1; }
	@found=$$("$(LAMBDA_PYTHON)" -c 'import sys; print("python%d.%d" % sys.version_info[:2])') && \
	test "$$found" = "$(LAMBDA_RUNTIME)" || { \
	  echo "make: $(LAMBDA_PYTHON) is $$found, the function runs $(LAMBDA_RUNTIME): refusing to build" \
	    "bytecode the runtime would ignore" >&2; exit 1; }

# The rules are checked and compiled at build time (rules/.compiled.json, stamped
# with the digest of the YAML it stands for), so that a cold start reads them without
# YAML or pydantic; compiled by this repository's tooling (any platform), not the
# runtime's interpreter, which has no pydantic of the build machine's platform.
RULES_PYTHON ?= $(firstword $(wildcard $(BIN)/python) $(PYTHON))

# What of this repository the function imports: the package without the command
# line, the local runs and their samples; and the rules. Then no bin/, no bytecode
# of another interpreter, and bytecode of the runtime's, checked by nothing but its
# hash header (unchecked-hash: the zip's file times cannot invalidate it).
FUNCTION_EXCLUDES := telemetry/local telemetry/samples telemetry/importers telemetry/cli.py telemetry/backtest.py \
	telemetry/terminal.py telemetry/__main__.py

function-files:
	@test -n "$(ARTIFACTS_DIR)" || { echo "make: ARTIFACTS_DIR is not set" >&2; exit 1; }
	cp -r telemetry rules "$(ARTIFACTS_DIR)/"
	cd "$(ARTIFACTS_DIR)" && rm -rf bin $(FUNCTION_EXCLUDES)
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +
	find "$(ARTIFACTS_DIR)" -name '*.py[co]' -delete
	PYTHONPATH="$(CURDIR)" PYTHONDONTWRITEBYTECODE=1 "$(RULES_PYTHON)" -m telemetry.core.rule_specs "$(ARTIFACTS_DIR)/rules"
	"$(LAMBDA_PYTHON)" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)" >/dev/null

# `sam build` (BuildMethod: makefile) calls this with ARTIFACTS_DIR set. boto3
# comes with the Lambda runtime; the rest is the lock file's, for arm64 and the
# runtime's Python, hashes checked: what the tests ran with.
build-TelemetryFunction build-ActionsFunction: lambda-python
	"$(LAMBDA_PYTHON)" -m pip install --quiet --require-hashes --no-deps --target "$(ARTIFACTS_DIR)" \
		--platform manylinux2014_aarch64 --implementation cp \
		--python-version $(subst python,,$(LAMBDA_RUNTIME)) --only-binary=:all: -r $(LOCK)
	$(MAKE) --no-print-directory function-files ARTIFACTS_DIR="$(ARTIFACTS_DIR)" LAMBDA_PYTHON="$(LAMBDA_PYTHON)"
