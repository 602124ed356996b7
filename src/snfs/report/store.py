"""Where finished runs come from: the local results store (run JSONs) or a wandb project.

Both sources give the same run records (the fields of ``<results_dir>/<run_id>.json``:
``status, run_id, dataset, model, algorithm, density, seed, epochs, test_error, val_error,
git_commit, device, config, history``), so tables and figures do not care which one was read.

``RunIndex.match(job)`` finds the finished run of a grid point, ``RunIndex.match_diverged(job)`` its
diverged one (a run whose training loss became non-finite: an outcome, counted by tables and never
retried by sweeps): the run with the job's run id, else the run whose identity (``snfs.identity``:
names, density, seed, the values that differ from the declared defaults, unverified data checksums)
is the job's. Identities only count differences from the
defaults, so a record written before an option existed matches a run made after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from snfs.identity import identity, identity_hash
from snfs.results import RunLookup, RunRecord, iter_records, record_from_wandb


class RunIndex:
    """Finished runs, and diverged ones apart, looked up by run id or by identity (``snfs.results.RunLookup``)."""

    def __init__(self, runs: Iterable[dict], description: str = ""):
        runs = [r for r in runs if isinstance(r.get("config"), Mapping)]
        self.runs = [r for r in runs if r.get("status") == "finished"]
        self.diverged = [r for r in runs if r.get("status") == "diverged"]
        self.description = description
        self._finished, self._diverged = RunLookup(self.runs), RunLookup(self.diverged)

    def __len__(self) -> int:
        return len(self.runs)

    def match(self, run_id: str, config: Mapping[str, Any]) -> dict | None:
        return self._finished.find(run_id, identity_hash(identity(config)))

    def match_diverged(self, run_id: str, config: Mapping[str, Any]) -> dict | None:
        """The run's diverged record; callers ask for it where ``match`` found no finished run."""
        return self._diverged.find(run_id, identity_hash(identity(config)))


# --- sources ------------------------------------------------------------------------------------


def load_local(results_dir: str | Path) -> RunIndex:
    runs = []
    for path, raw in iter_records(results_dir, status=None):
        if raw.get("status") not in ("finished", "diverged"):
            continue
        try:  # every record in the one schema the trainer writes (snfs.results.RunRecord)
            r = RunRecord.from_dict(raw).to_dict()
        except TypeError:  # a JSON without a run record's required fields is not a run
            continue
        r["_source"] = str(path)
        runs.append(r)
    from snfs.report.paths import display

    return RunIndex(runs, description=f"local results store `{display(results_dir)}`")


def load_wandb(project: str, api: Any = None, filters: dict | None = None) -> RunIndex:
    """Every run of a wandb project (``entity/project``, or ``project`` for the default entity)
    through the public API: ``wandb.Api().runs(project)``, reading each run's config and summary."""
    if api is None:
        import wandb

        api = wandb.Api()
    runs = [record_from_wandb(r) for r in api.runs(project, filters=filters or {})]
    return RunIndex(runs, description=f"wandb project `{project}`")


def load(
    source: str = "local", results_dir: str | Path | None = None, wandb_project: str | None = None, api: Any = None
) -> RunIndex:
    if source == "local":
        from snfs.report.paths import RUNS_DIR

        return load_local(results_dir or RUNS_DIR)
    if source == "wandb":
        if not wandb_project:
            raise ValueError("source=wandb needs a project: WANDB_PROJECT=entity/project (make) or --wandb-project")
        return load_wandb(wandb_project, api=api)
    raise ValueError(f"source={source!r} is not a valid choice; valid choices: local, wandb")


def run_machine(run: dict) -> str:
    """The machine a run used: its ``machine`` field (train.py's description), else its ``device``."""
    return str(run.get("machine") or run.get("device") or "unknown")


def history(run: dict) -> list[dict]:
    """Per-epoch records of a run (``layer_density`` dicts included): the JSON's ``history``, or
    for a wandb run its logged history (``layer_density/<layer>`` keys grouped per epoch)."""
    if run.get("history"):
        return list(run["history"])
    wrun = run.get("_wandb_run")
    if wrun is None:
        return []
    records: dict[Any, dict] = {}
    for row in wrun.scan_history():
        epoch = row.get("epoch")
        if epoch is None:
            continue
        rec = records.setdefault(epoch, {"epoch": epoch, "layer_density": {}})
        for k, v in row.items():
            if k.startswith("layer_density/"):
                rec["layer_density"][k[len("layer_density/") :]] = v
            elif not k.startswith("_"):
                rec[k] = v
    run["history"] = [records[e] for e in sorted(records)]
    return run["history"]
