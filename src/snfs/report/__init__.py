"""Reproduction reports: experiment sweeps that skip finished runs, tables and figures.

Modules (none imports matplotlib or wandb until a function needs it):

* ``paths``     where the configs, results store, reference CSVs, tables and figures live;
* ``stats``     mean, standard error and 95% confidence intervals;
* ``reference`` the paper's numbers (``results/reference/*.csv``);
* ``sweep``     expand a Hydra experiment preset into its runs, find the finished ones,
                launch the missing ones through Hydra multirun with any launcher;
* ``store``     read runs (``snfs.results.RunRecord``) from the local results store or a wandb project,
                and match them to grid points by identity (``snfs.identity``);
* ``tables``    one table per preset (its spec: ``conf/experiment/<name>.yaml`` and ``<name>.md``):
                ours (mean +/- se, n, collapsed runs apart) beside the paper's number;
* ``figures``   the paper's figures redrawn with our runs;
* ``quick``     the QUICK=1 cut-down (one seed, 2 epochs, few batches, generated data where needed);
* ``flops``     FLOP-based speedups of a run from its per-layer densities;
* ``cli``       ``scripts/reproduce.py`` (``make reproduce-table-<name>``, ``make tables``, ``make figures``).
"""
