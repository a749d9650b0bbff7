# Set-up on a fresh machine (Debian 12, root): `make demo`, then `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO_HOST ?= demo
SUITE  ?= trixie

.PHONY: demo demo-destroy test unit lint e2e bench docs monitoring-tools jaeger-artifact

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

## demo: boot a local staging VPS ($(DEMO_HOST), Debian $(SUITE)) and deploy everything to it
demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo $(DEMO_HOST) $(SUITE)

demo-destroy:
	scripts/staging-host destroy $(DEMO_HOST)

## test: unit tests, then the e2e loop on fresh staging hosts (Debian 13 and 12)
test: unit e2e

unit: $(VENV)/.installed lint monitoring-tools jaeger-artifact
	$(PY) -m pytest -q tests/unit

# promtool, amtool, mtail and the blackbox exporter's checker for the unit tests (unpacked, not installed)
monitoring-tools:
	scripts/monitoring-tools

# Jaeger's release tarball, built from the Go module proxy (its `jaeger validate` checks the
# rendered config in the unit tests; the staging hosts download it)
jaeger-artifact:
	scripts/jaeger-artifact >/dev/null

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# each Debian suite, and the harness's self-test, in a pytest process of its own, side by side
e2e: $(VENV)/.installed
	PY=$(PY) scripts/e2e

## bench: converge timings, then backup and restore of a ~1 GB database, on fresh staging hosts
bench: $(VENV)/.installed
	$(PY) bench/converge.py --suite $(SUITE)
	$(PY) bench/backup.py --suite $(SUITE)

## docs: regenerate the README settings table and group_data/all.py from the schema
docs: $(VENV)/.installed
	$(PY) -m holistix_deploy.docs
