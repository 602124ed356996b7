# snfs: `make help` lists the targets. Every target installs into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test test-all train bench clean-venv

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_.%-]+:.*## ' $(MAKEFILE_LIST) | sort -u | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-28s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install snfs with its pinned dependencies

test: $(STAMP) ## run the fast test suite (what CI runs)
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP) ## run every test, slow ones included
	$(PY) -m pytest -q

train: $(STAMP) ## train the default experiment (paper's MNIST protocol); overrides via ARGS="density=0.02 seed=1"
	$(PY) -m snfs.train $(ARGS)

bench: $(STAMP) ## epoch time of sparse momentum vs a plain dense loop (LeNet-300-100, MNIST); final line is JSON
	$(PY) scripts/bench.py $(ARGS)

clean-venv: ## remove .venv
	rm -rf $(VENV)
