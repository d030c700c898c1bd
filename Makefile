# dgcn: set-up, tests, benchmarks and the stage pipelines.
# Every pipeline step is a file target, so a rerun only redoes what changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DGCN := $(VENV)/bin/dgcn
DEVICE ?= auto

.PHONY: install test test-fast test-slow bench demo clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

## all tests, the slow end-to-end ones included
test: install
	$(PY) -m pytest -q

## unit tests only
test-fast: install
	$(PY) -m pytest -q -m "not slow"

## only the slow end-to-end tests
test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) benchmarks/bench_expanders.py

include pipelines.mk
include paper.mk
