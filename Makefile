# Two entry points, both self-contained on a fresh machine:
#   make demo   set up, train on real data, evaluate, export, serve, recommend
#   make test   set up and run the test suite (what .ci/run calls)

PYTHON ?= python3
VENV ?= .venv
DATASET ?= ml-100k
EPOCHS ?=
# Where the shared datasets are; see scripts/data_root.sh.
export DATA_ROOT := $(shell bash scripts/data_root.sh)

.PHONY: setup demo test clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	VENV=$(VENV) DATASET=$(DATASET) EPOCHS=$(EPOCHS) bash scripts/demo.sh

test: setup
	$(VENV)/bin/python -m pytest -q -ra

clean:
	rm -rf runs
