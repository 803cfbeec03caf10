# flowline: `make demo` runs the churn use case end to end; `make test` passes the tests.
# Both work on a fresh machine with only python3: they build .venv with the pinned set.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# Datasets live beside the checkout (../shared/data), never in it; see DESIGN.md, "Data".
SHARED_DATA := $(abspath ../shared/data)
export FLOWLINE_DATA_HOME ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(HOME)/.cache/flowline/data)
PYTEST_WORKERS ?= 2

.PHONY: install install-test demo test compile clean help

help:
	@echo "make demo     install, run churn locally, serve its package, send it a v2 and a v1 explain request"
	@echo "make test     install with test extras and run the whole test suite"
	@echo "make compile  write the churn pipeline as KFP IR YAML to build/churn.yaml"
	@echo "make clean    remove .venv, build/ and runs/"

$(VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/flowline run churn --summary runs/demo-summary.json
	$(BIN)/python -m flowline.pipelines.demo runs/demo-summary.json

test: install-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

compile: install
	mkdir -p build
	$(BIN)/flowline compile churn -o build/churn.yaml

clean:
	rm -rf $(VENV) build runs *.egg-info
