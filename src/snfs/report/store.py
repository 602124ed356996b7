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

from snfs.identity import flatten, identity, identity_hash
from snfs.results import RunRecord, iter_results

SUMMARY_KEYS = (
    "test_error",
    "val_error",
    "final_density",
    "wall_time_s",
    "test_loss",
    "flops_ratio",
    "speedup_estimate",
    "execution",
    "median_epoch_time_s",
)


class _Lookup:
    """Runs by run id, else by identity."""

    def __init__(self, runs: list[dict]):
        self.by_id = {r["run_id"]: r for r in runs}
        self.by_identity: dict[str, dict] = {}
        # sorted by run id, so that which of two runs of one identity is used never depends on file order
        for r in sorted(runs, key=lambda r: str(r.get("run_id"))):
            self.by_identity.setdefault(identity_hash(identity(r["config"], r.get("data_md5"))), r)

    def __call__(self, run_id: str, config: Mapping[str, Any]) -> dict | None:
        if run_id in self.by_id:
            return self.by_id[run_id]
        return self.by_identity.get(identity_hash(identity(config)))


class RunIndex:
    """Finished runs, and diverged ones apart, looked up by run id or by identity."""

    def __init__(self, runs: Iterable[dict], description: str = ""):
        runs = [r for r in runs if isinstance(r.get("config"), Mapping)]
        self.runs = [r for r in runs if r.get("status") == "finished"]
        self.diverged = [r for r in runs if r.get("status") == "diverged"]
        self.description = description
        self._finished, self._diverged = _Lookup(self.runs), _Lookup(self.diverged)

    def __len__(self) -> int:
        return len(self.runs)

    def match(self, run_id: str, config: Mapping[str, Any]) -> dict | None:
        return self._finished(run_id, config)

    def match_diverged(self, run_id: str, config: Mapping[str, Any]) -> dict | None:
        """The run's diverged record; callers ask for it where ``match`` found no finished run."""
        return self._diverged(run_id, config)


# --- sources ------------------------------------------------------------------------------------


def load_local(results_dir: str | Path) -> RunIndex:
    runs = []
    for raw in iter_results(results_dir, status=None):
        if raw.get("status") not in ("finished", "diverged"):
            continue
        try:  # every record in the one schema the trainer writes (snfs.results.RunRecord)
            r = RunRecord.from_dict(raw).to_dict()
        except TypeError:  # a JSON without a run record's required fields is not a run
            continue
        r["_source"] = str(Path(results_dir) / f"{r.get('run_id')}.json")
        runs.append(r)
    from snfs.report.paths import display

    return RunIndex(runs, description=f"local results store `{display(results_dir)}`")


def _summary_dict(summary: Any) -> dict:
    if summary is None:
        return {}
    try:
        return {k: summary[k] for k in summary.keys()}
    except Exception:
        return dict(summary)


def wandb_record(run: Any) -> dict:
    """A run record from a ``wandb.apis.public.Run``: its config, summary, name (= our run id), state."""
    config = dict(run.config or {})
    summary = _summary_dict(getattr(run, "summary", None))
    flat = flatten(config)
    finished = getattr(run, "state", None) == "finished" and summary.get("test_error") is not None
    record = {
        "status": "finished" if finished else str(getattr(run, "state", "unknown")),
        "run_id": str(getattr(run, "name", None) or getattr(run, "id", "")),
        "dataset": flat.get("dataset.name"),
        "model": flat.get("model.name"),
        "algorithm": flat.get("sparse.name"),
        "density": flat.get("density"),
        "seed": flat.get("seed"),
        "epochs": flat.get("epochs"),
        "git_commit": summary.get("git_commit") or getattr(run, "commit", None) or "unknown",
        "device": summary.get("device") or flat.get("device"),
        "machine": summary.get("machine"),
        "config": config,
        "_wandb_run": run,
        "_source": "wandb:" + "/".join(str(p) for p in getattr(run, "path", []) or []),
    }
    for k in SUMMARY_KEYS:
        record[k] = summary.get(k)
    return record


def load_wandb(project: str, api: Any = None, filters: dict | None = None) -> RunIndex:
    """Every run of a wandb project (``entity/project``, or ``project`` for the default entity)
    through the public API: ``wandb.Api().runs(project)``, reading each run's config and summary."""
    if api is None:
        import wandb

        api = wandb.Api()
    runs = [wandb_record(r) for r in api.runs(project, filters=filters or {})]
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
