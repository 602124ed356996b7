"""``scripts/reproduce.py``: run a table's sweep (skipping finished runs), build tables and figures.

    scripts/reproduce.py run NAME [HYDRA_OVERRIDES...] [--quick] [--launcher joblib --jobs 2] [--dry-run]
    scripts/reproduce.py tables [NAMES... [--dataset kmnist]] [--quick] [--source wandb --wandb-project entity/project]
    scripts/reproduce.py figures [--quick] [--source wandb --wandb-project entity/project]
    scripts/reproduce.py list

``run`` expands the preset(s) behind table NAME, launches the runs that the results store does not
have (one ``python -m snfs.train --multirun +experiment=...`` per block of missing runs, through the
chosen Hydra launcher), then writes the table and its figure. The Makefile's
``reproduce-table-<name>`` (one per preset), ``tables`` and ``figures`` targets call these. A
``dataset=`` override (``run``) or ``--dataset`` (``tables``) makes the table ``<name>-<dataset>``;
``tables`` without names rebuilds every preset's table and the other-dataset tables already there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snfs.report import paths


def _dataset_of(preset: str, overrides: list[str]) -> str:
    from snfs.report.sweep import preset_dataset

    return preset_dataset(preset, overrides)


class Context:
    """The options every command shares: where runs are, QUICK or not, data root, source."""

    def __init__(self, args: argparse.Namespace):
        self.quick = bool(args.quick)
        self.fake_data = bool(getattr(args, "fake_data", False))
        self.data_root = args.data_root
        default_runs = paths.QUICK_RUNS_DIR if self.quick else paths.RUNS_DIR
        self.results = Path(args.results or default_runs).resolve()
        self.tables_dir = Path(args.tables_dir or (paths.QUICK_TABLES_DIR if self.quick else paths.TABLES_DIR))
        self.figures_dir = Path(args.figures_dir or (paths.QUICK_FIGURES_DIR if self.quick else paths.FIGURES_DIR))
        self.source = getattr(args, "source", "local") or "local"
        self.wandb_project = getattr(args, "wandb_project", None)
        self.user_overrides = list(getattr(args, "overrides", []) or [])

    def data_root_value(self) -> str:
        return self.data_root or "data"

    def overrides(self, group, extra: tuple[str, ...] = ()) -> list[str]:
        """Overrides added to a run group: the user's (and ``extra``), QUICK's, data.root."""
        from snfs.report.quick import quick_overrides

        out = list(self.user_overrides) + list(extra)
        if self.quick:
            dataset = _dataset_of(group.preset, list(group.overrides) + out)
            out = quick_overrides(dataset, self.data_root_value(), force_fake=self.fake_data) + out
        if self.data_root:
            out.append(f"data.root={self.data_root}")
        return out

    def fallback(self, group, extra: tuple[str, ...] = ()) -> list[str]:
        """Overrides that let a preset compose without its dataset's config (to list the table's rows)."""
        from snfs.report.quick import fake_overrides

        return fake_overrides(_dataset_of(group.preset, list(group.overrides) + self.user_overrides + list(extra)))

    def index(self):
        from snfs.report.store import load

        return load(self.source, results_dir=self.results, wandb_project=self.wandb_project)


def _build(ctx: Context, names: list[str], composer, index, dataset: str = ""):
    """The tables ``names``; ``dataset``: on that dataset (``dataset=<name>``), else the user's or the preset's."""
    from snfs.report.tables import TABLES, build_table

    extra = (f"dataset={dataset}",) if dataset else ()
    tables = []
    for name in names:
        tables.append(
            build_table(
                TABLES[name],
                index,
                composer,
                extra_overrides=lambda g: ctx.overrides(g, extra),
                quick=ctx.quick,
                data_root=ctx.data_root_value(),
                fallback_overrides=lambda g: ctx.fallback(g, extra),
                dataset=dataset or _dataset_of(name, ctx.user_overrides),
            )
        )
    return tables


def _write(ctx: Context, tables, figures: bool = True, tables_out: bool = True) -> None:
    from snfs.report.figures import draw_table_figure
    from snfs.report.tables import write_table

    for t in tables:
        if tables_out:
            md, csv_path = write_table(t, ctx.tables_dir)
            print(
                f"[reproduce] {t.stem}: {t.done}/{len(t.jobs)} runs -> {paths.display(md)}, {paths.display(csv_path)}"
            )
        if figures:
            fig = draw_table_figure(t, ctx.figures_dir)
            if fig:
                print(f"[reproduce] figure -> {paths.display(fig)}")


def other_dataset_tables(tables_dir: str | Path) -> list[tuple[str, str]]:
    """(preset, dataset) of the ``<preset>-<dataset>.csv`` tables already in ``tables_dir``."""
    from snfs.report.tables import TABLES

    out = []
    for path in sorted(Path(tables_dir).glob("*-*.csv")):
        name, _, dataset = path.stem.partition("-")
        if name in TABLES and dataset:
            out.append((name, dataset))
    return out


def build_all(ctx: Context, composer, index, existing: str | Path | None = None) -> list:
    """Every preset's table on its own dataset, then the tables on other datasets that ``existing``
    (default: the output folder) already has."""
    from snfs.report.tables import TABLES

    tables = _build(ctx, list(TABLES), composer, index)
    for name, dataset in other_dataset_tables(existing or ctx.tables_dir):
        tables += _build(ctx, [name], composer, index, dataset=dataset)
    return tables


def _drop_finished_checkpoints(index) -> None:
    """QUICK runs are smoke tests: their end-of-epoch checkpoints (hundreds of MB for a WRN or a
    ResNet-50) are deleted once the run's JSON is written."""
    from snfs.checkpoint import checkpoint_path

    for run in index.runs:
        source = run.get("_source")
        if source:
            ckpt = checkpoint_path(Path(source).parent, run["run_id"])
            if ckpt.exists():
                ckpt.unlink()


def cmd_run(args: argparse.Namespace) -> int:
    from snfs.report.figures import draw_layer_density_figures
    from snfs.report.store import load_local
    from snfs.report.sweep import Composer, expand, launch
    from snfs.report.tables import TABLES, lacking

    ctx = Context(args)
    spec = TABLES[args.name]
    index = load_local(ctx.results)
    # Hydra's sweep folders (configs and logs of each job): beside a QUICK store, else the gitignored multirun/
    sweep_root = (ctx.results.parent / "multirun") if ctx.quick else (paths.REPO_ROOT / "multirun" / "reproduce")
    failed = []
    with Composer() as composer:
        for group in spec.groups:
            overrides = ctx.overrides(group) + [f"results_dir={ctx.results}", "resume=true"] + list(group.overrides)
            try:
                exp = expand(composer, group.preset, overrides, group=group, validate=True)
            except Exception as exc:  # noqa: BLE001 - one clear line, not a Hydra traceback
                print(f"[reproduce] {group.command()}: cannot compose: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed.append(group.preset)
                continue
            lacking_here = lacking(spec.needs, ctx.data_root_value()) if not ctx.quick else ()
            if lacking_here and args.launcher in ("basic", "joblib"):
                print(
                    f"[reproduce] warning: these runs need {' and '.join(lacking_here)}, which this machine lacks; "
                    "QUICK=1 runs a CPU smoke version, LAUNCHER=slurm sends the runs to a GPU cluster",
                    file=sys.stderr,
                )
            missing, diverged, seen = [], 0, set()
            for job in exp.jobs:
                if job.run_id not in seen and index.match(job.run_id, job.config) is None:
                    # a diverged run is an outcome of its protocol: retrying it would diverge again
                    if index.match_diverged(job.run_id, job.config) is None:
                        missing.append(job)
                    else:
                        diverged += 1
                seen.add(job.run_id)
            done = len(seen) - len(missing) - diverged
            print(
                f"[reproduce] {group.command()}: {len(seen)} runs, {done} finished, "
                + (
                    f"{diverged} diverged (not retried: a divergence is an outcome of the protocol; RESULTS=<another "
                    f"folder> trains the grid anew there), "
                    if diverged
                    else ""
                )
                + f"{len(missing)} to run ({'QUICK, ' if ctx.quick else ''}results in {paths.display(ctx.results)})"
            )
            codes = launch(
                exp, missing, launcher=args.launcher, jobs=args.jobs, sweep_root=sweep_root, dry_run=args.dry_run
            )
            if any(codes):
                failed.append(group.preset)
        if args.dry_run:
            return 0
        index = load_local(ctx.results)
        if ctx.quick:
            _drop_finished_checkpoints(index)
        tables = _build(ctx, [args.name], composer, index)
    _write(ctx, tables)
    if spec.layer_density or ctx.quick:
        for fig in draw_layer_density_figures(tables[0].runs, ctx.figures_dir, quick=ctx.quick):
            print(f"[reproduce] figure -> {paths.display(fig)}")
    if failed:
        print(
            f"[reproduce] some runs failed or could not start ({', '.join(failed)}); the table shows what finished. "
            "Rerun the same command to retry only the missing runs.",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_tables(args: argparse.Namespace, figures: bool = False, tables_out: bool = True) -> int:
    from snfs.report.figures import draw_layer_density_figures
    from snfs.report.sweep import Composer
    from snfs.report.tables import TABLES, write_index

    ctx = Context(args)
    names = list(getattr(args, "names", None) or [])
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        print(f"unknown table(s) {', '.join(unknown)}; valid choices: {', '.join(TABLES)}", file=sys.stderr)
        return 2
    if args.dataset and not names:
        print(
            "--dataset needs the tables to build on it, e.g. `tables mnist_methods --dataset kmnist`", file=sys.stderr
        )
        return 2
    try:
        index = ctx.index()
    except ValueError as exc:  # e.g. --source wandb without a project: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with Composer() as composer:
        tables = (
            _build(ctx, names, composer, index, dataset=args.dataset or "")
            if names
            else build_all(ctx, composer, index)
        )
    _write(ctx, tables, figures=figures, tables_out=tables_out)
    if tables_out and not names:
        print(f"[reproduce] index -> {paths.display(write_index(tables, ctx.tables_dir))}")
    if figures:
        for fig in draw_layer_density_figures(index.runs, ctx.figures_dir, quick=ctx.quick):
            print(f"[reproduce] figure -> {paths.display(fig)}")
    return 0


def rebuild_tables(results: str | Path, out_dir: str | Path, description: str | None = None) -> list[Path]:
    """``make tables`` for a given store and output folder (the rebuild test's entry); returns the files written.

    ``description`` replaces the store's own (its path) in the tables' "Runs from" line.
    """
    from snfs.report.store import load_local
    from snfs.report.sweep import Composer
    from snfs.report.tables import write_index, write_table

    ctx = Context(parser().parse_args(["tables", "--results", str(results), "--tables-dir", str(out_dir)]))
    index = load_local(ctx.results)
    if description is not None:
        index.description = description
    with Composer() as composer:
        tables = build_all(ctx, composer, index, existing=paths.TABLES_DIR)
    written = [p for t in tables for p in write_table(t, ctx.tables_dir)]
    return written + [write_index(tables, ctx.tables_dir)]


def cmd_list(args: argparse.Namespace) -> int:
    from snfs.report.tables import TABLES

    for name, spec in TABLES.items():
        print(f"{name:24s} {spec.title_on()}")
        for g in spec.groups:
            print(f"{'':24s}   {g.command()}")
    return 0


def parser() -> argparse.ArgumentParser:
    from snfs.report.sweep import LAUNCHERS
    from snfs.report.tables import TABLES

    p = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, source: bool):
        sp.add_argument(
            "--quick", action="store_true", help="QUICK mode: cut-down runs in results/quick/ (see snfs.report.quick)"
        )
        sp.add_argument("--results", help="results store (default results/runs, or results/quick/runs with --quick)")
        sp.add_argument(
            "--data-root", help="data.root for the runs and for the real-data checks (default: the config's)"
        )
        sp.add_argument("--tables-dir", help="where tables go (default results/tables, or results/quick/tables)")
        sp.add_argument("--figures-dir", help="where figures go (default results/figures, or results/quick/figures)")
        if source:
            sp.add_argument(
                "--source",
                choices=("local", "wandb"),
                default="local",
                help="read runs from the local results store or a wandb project",
            )
            sp.add_argument("--wandb-project", help="entity/project for --source wandb")

    run = sub.add_parser("run", help="run a table's sweep (only missing runs), then write the table and figures")
    run.add_argument("name", choices=list(TABLES), metavar="NAME", help=f"table / preset: {', '.join(TABLES)}")
    run.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every run, e.g. seed=17 or hydra.launcher.partition=gpu"
    )
    run.add_argument("--launcher", choices=tuple(LAUNCHERS), default="basic", help="Hydra launcher (default basic)")
    run.add_argument("--jobs", type=int, default=None, help="parallel jobs for the joblib launcher")
    run.add_argument(
        "--fake-data", action="store_true", help="with --quick: generated data even where the real data is present"
    )
    run.add_argument("--dry-run", action="store_true", help="print the Hydra commands without running them")
    common(run, source=False)

    for name, help_ in (
        ("tables", "rebuild tables from the results store"),
        ("figures", "rebuild figures from the results store"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "names", nargs="*", help="tables to build (default: all, and those on other datasets already built)"
        )
        sp.add_argument(
            "--dataset", help="build the named tables on this dataset: <name>-<dataset>.md, no paper column"
        )
        sp.add_argument("--fake-data", action="store_true", help=argparse.SUPPRESS)
        common(sp, source=True)
    sub.add_parser("list", help="list the tables and the Hydra commands behind each")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "tables":
        return cmd_tables(args)
    if args.command == "figures":
        return cmd_tables(args, figures=True, tables_out=False)
    return cmd_list(args)
