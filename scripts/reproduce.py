#!/usr/bin/env python
"""Reproduce the paper's tables and figures: ``scripts/reproduce.py {run NAME,tables,figures,list}``.

    scripts/reproduce.py run mnist_compression                 # missing runs of the preset, then its table
    scripts/reproduce.py run cifar10_main --quick              # the CPU smoke version (results/quick/)
    scripts/reproduce.py run mnist_methods --launcher joblib --jobs 2
    scripts/reproduce.py run cifar10_main --launcher slurm hydra.launcher.partition=gpu
    scripts/reproduce.py tables [--source wandb --wandb-project entity/project]
    scripts/reproduce.py figures

The Makefile wraps these: `make reproduce-table-<name> [QUICK=1] [LAUNCHER=joblib JOBS=2]`,
`make tables`, `make figures`. The code is snfs.report.cli.
"""

import sys

from snfs.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
