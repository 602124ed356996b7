# snfs: `make help` lists the targets. Every target installs into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install lint format test test-all train bench bench-loaded throughput clean-venv

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_.%-]+:.*## ' $(MAKEFILE_LIST) | sort -u | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-28s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[all]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install snfs with its pinned dependencies

LINTED := src tests scripts benchmarks examples

lint: $(STAMP) ## ruff (lint + format check) and mypy on src/snfs, as CI and pre-commit run them
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

format: $(STAMP) ## ruff format and ruff's safe fixes, in place
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

.PHONY: test-unit test-integration
test: $(STAMP) ## what CI runs: tests/unit, then tests/integration (slow tests excluded; a test file elsewhere stops it)
	$(PY) -m pytest -m "unit and not slow" -q
	$(PY) -m pytest -m "integration and not slow" -q

test-unit: $(STAMP) ## tests/unit: one process, no training runs (about a minute)
	$(PY) -m pytest -m "unit and not slow" -q

test-integration: $(STAMP) ## tests/integration: training runs, CLI subprocesses, DDP, whole preset grids (slow excluded)
	$(PY) -m pytest -m "integration and not slow" -q

test-all: $(STAMP) ## run every test, slow ones included
	$(PY) -m pytest -q

train: $(STAMP) ## train the default experiment (paper's MNIST protocol) into results/local/runs; overrides via ARGS="density=0.02 seed=1"
	$(PY) -m snfs.train $(ARGS)

bench: $(STAMP) ## results/bench/: epoch time masked vs sparse execution (LeNet-300-100, 784-4096-4096-10), threads, convs, LeNet-5-Caffe (python -m benchmarks.<name>)
	$(PY) -m benchmarks.epoch_time --data-root $(or $(DATA_ROOT),data) $(ARGS)
	$(PY) -m benchmarks.layers
	$(PY) -m benchmarks.threads
	$(PY) -m benchmarks.conv
	$(PY) -m benchmarks.lenet5_caffe --data-root $(or $(DATA_ROOT),data)
	$(PY) -m benchmarks.export
	$(PY) -m benchmarks.truly_sparse all --data-root $(or $(DATA_ROOT),data)

bench-loaded: $(STAMP) ## the LeNet-300-100 part of make bench beside two busy single-thread processes
	$(PY) -m benchmarks.epoch_time lenet300_100 --load 2 --suffix _loaded --data-root $(or $(DATA_ROOT),data) $(ARGS)

throughput: $(STAMP) ## training images/s on generated data: WRN-16-8 and VGG16-D, sparse momentum 5% (ARGS="--device cuda --precision bf16 ...")
	$(PY) -m benchmarks.throughput $(ARGS)

clean-venv: ## remove .venv
	rm -rf $(VENV)

# --- reproduction: the paper's tables and figures (scripts/reproduce.py, src/snfs/report/) ----------------
# make reproduce-table-<name> [QUICK=1] [LAUNCHER=basic|joblib|submitit_local|submitit_slurm|slurm] [JOBS=2]
#      [DATA_ROOT=path] [RESULTS=dir] [SLURM_PARTITION=p SLURM_GPUS=1 SLURM_TIME_MIN=1440] [ARGS="hydra overrides"]
#   runs the Hydra preset conf/experiment/<name>.yaml (`python -m snfs.train +experiment=<name>`), skipping the
#   runs already in the results store, then writes results/tables/<name>.{md,csv} (and its figure);
#   on another dataset (ARGS="dataset=kmnist") the table is <name>-kmnist.{md,csv}, without paper numbers.
#   QUICK=1: one seed, 2 epochs, 2 batches per epoch, generated data where the real data is absent, all under
#   results/quick/ (runs, tables, figures), never mixed with real runs.
# make tables / figures [QUICK=1] [SOURCE=wandb WANDB_PROJECT=entity/project]: rebuild from the results store
#   (a table file is rewritten only when its content changes, not for its "built at commit" line alone).
QUICK ?=
LAUNCHER ?= basic
JOBS ?=
SOURCE ?= local
WANDB_PROJECT ?=
RESULTS ?=
DATA_ROOT ?=
SLURM_PARTITION ?=
SLURM_GPUS ?=
SLURM_TIME_MIN ?=
REPRO := $(PY) scripts/reproduce.py
# one table per preset: conf/experiment/<name>.yaml (the grid) + <name>.md (how it is shown); nothing else lists them
REPRO_TABLES := $(sort $(basename $(notdir $(wildcard conf/experiment/*.yaml))))
REPRO_COMMON = $(if $(filter 1 yes true,$(QUICK)),--quick) $(if $(RESULTS),--results $(RESULTS)) \
	$(if $(DATA_ROOT),--data-root $(DATA_ROOT))
REPRO_OVERRIDES = $(if $(SLURM_PARTITION),hydra.launcher.partition=$(SLURM_PARTITION)) \
	$(if $(SLURM_GPUS),hydra.launcher.gpus_per_node=$(SLURM_GPUS)) \
	$(if $(SLURM_TIME_MIN),hydra.launcher.timeout_min=$(SLURM_TIME_MIN)) $(ARGS)
REPRO_RUN_FLAGS = $(REPRO_COMMON) --launcher $(LAUNCHER) $(if $(JOBS),--jobs $(JOBS))
REPRO_READ_FLAGS = $(REPRO_COMMON) --source $(SOURCE) $(if $(WANDB_PROJECT),--wandb-project $(WANDB_PROJECT))

.PHONY: tables figures reproduce-list reproduce-quick help-tables $(addprefix reproduce-table-,$(REPRO_TABLES))

$(addprefix reproduce-table-,$(REPRO_TABLES)): reproduce-table-%: $(STAMP)
	$(REPRO) run $* $(REPRO_OVERRIDES) $(REPRO_RUN_FLAGS)

# `make help` lists one reproduce-table-<name> line per preset, from the `help:` line of its <name>.md
help: help-tables
help-tables:
	@for t in $(REPRO_TABLES); do printf "  \033[36m%-28s\033[0m %s\n" "reproduce-table-$$t" \
		"table: $$(sed -n 's/^help: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' conf/experiment/$$t.md)"; done

reproduce-quick: $(STAMP) ## every reproduce-table-* in QUICK mode (CPU smoke test of all presets; results/quick/)
	@set -e; for t in $(REPRO_TABLES); do $(REPRO) run $$t $(REPRO_OVERRIDES) --quick --launcher $(LAUNCHER) \
		$(if $(JOBS),--jobs $(JOBS)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)); done

reproduce-list: $(STAMP) ## list the tables and the Hydra commands (+experiment=<name>) behind each
	$(REPRO) list

tables: $(STAMP) ## rebuild results/tables/*.{md,csv} from results/runs (QUICK=1: results/quick; SOURCE=wandb WANDB_PROJECT=e/p)
	$(REPRO) tables $(REPRO_READ_FLAGS)

figures: $(STAMP) ## rebuild results/figures/*.png from results/runs (same QUICK / SOURCE / WANDB_PROJECT options)
	$(REPRO) figures $(REPRO_READ_FLAGS)

# --- dashboard: the results store in a browser (src/snfs/report/dashboard.py) -------------------------------
# make dashboard [RESULTS=dir] [QUICK=1] [PORT=8050] [HOST=127.0.0.1]; make report [OUT=results/local/report]
# Without RESULTS they read the committed store (results/runs) and yours (results/local/runs); what they write
# goes under results/local/ (untracked). The committed results/report/ comes from results/runs alone.
PORT ?= 8050
HOST ?= 127.0.0.1
OUT ?=
DASH := $(PY) -m snfs.report.dashboard
DASH_FLAGS = $(if $(filter 1 yes true,$(QUICK)),--quick) $(if $(RESULTS),--results $(RESULTS))

.PHONY: dashboard report report-committed check-dashboard

dashboard: $(STAMP) ## serve a local dashboard of results/runs and your results/local/runs at http://127.0.0.1:8050 (RESULTS=dir, QUICK=1, PORT=, HOST=)
	$(DASH) serve $(DASH_FLAGS) --host $(HOST) --port $(PORT)

report: $(STAMP) ## write the dashboard as static HTML (no server needed) to results/local/report/ (RESULTS=dir, QUICK=1, OUT=dir)
	$(DASH) report $(DASH_FLAGS) $(if $(OUT),--out $(OUT))

report-committed: $(STAMP) ## rebuild the committed results/report/ from the committed runs in results/runs alone
	$(DASH) report --committed

check-dashboard: $(STAMP) ## open the dashboard in headless Chromium, assert the run list and a curve, screenshot results/local/dashboard.png (ARGS="--run ID --run ID": overlaid)
	$(PY) scripts/check_dashboard.py $(DASH_FLAGS) $(ARGS)
