"""Where finished runs come from: the local results store (run JSONs) or a wandb project.

Both sources give the same run records (the fields of ``<results_dir>/<run_id>.json``:
``status, run_id, dataset, model, algorithm, density, seed, epochs, test_error, val_error,
git_commit, device, config, history``), so tables and figures do not care which one was read.

``RunIndex.match(job)`` finds the run of a grid point: the run with the job's run id, else a
run whose config agrees with the job's (keys that only change where a run is stored or shown are
ignored). The second rule keeps a run usable after a new option with a default is added to a
config group, which changes every run id. A key that only one of the two configs has:
- an algorithm option with a registered meaning when absent (``option_defaults`` of its class,
  e.g. DeepR's ``new_sign: fixed``) agrees only if its value is that default, so a variant run
  (``+sparse.new_sign=first_update``) never fills a default row, nor a default run a variant's row;
- ``sparse.label`` (a variant's row name) never agrees with its absence;
- any other key agrees if it is missing from the run (an option newer than the run), and not if
  only the run has it (the run was made with an override the grid point does not have).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from snfs.results import iter_results
from snfs.train import NON_SEMANTIC_KEYS

IGNORED_KEYS = {"dataset.download", "dataset.verify_md5"}
SUMMARY_KEYS = ("test_error", "val_error", "final_density", "wall_time_s", "test_loss", "flops_ratio", "speedup_estimate",
                "execution", "median_epoch_time_s")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def semantic(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config without the keys that do not change what a run computes."""
    return {k: v for k, v in flatten(config).items()
            if k.split(".", 1)[0] not in NON_SEMANTIC_KEYS and k not in IGNORED_KEYS}


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def _coarse(config: Mapping[str, Any]) -> tuple:
    c = flatten(config)
    density = c.get("density")
    return (c.get("dataset.name"), c.get("model.name"), c.get("sparse.name"),
            round(float(density), 9) if isinstance(density, (int, float)) else density, c.get("seed"))


class RunIndex:
    """Finished runs, looked up by run id or by config."""

    def __init__(self, runs: Iterable[dict], description: str = ""):
        self.runs = [r for r in runs if r.get("status") == "finished" and isinstance(r.get("config"), Mapping)]
        self.description = description
        self.by_id = {r["run_id"]: r for r in self.runs}
        self.by_coarse: dict[tuple, list[dict]] = {}
        for r in self.runs:
            self.by_coarse.setdefault(_coarse(r["config"]), []).append(r)
        self._semantic: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def _sem(self, run: dict) -> dict:
        key = id(run)
        if key not in self._semantic:
            self._semantic[key] = semantic(run["config"])
        return self._semantic[key]

    def match(self, run_id: str, config: Mapping[str, Any]) -> dict | None:
        if run_id in self.by_id:
            return self.by_id[run_id]
        expected = semantic(config)
        defaults = absent_defaults(expected.get("sparse.name"))
        for run in self.by_coarse.get(_coarse(config), []):
            if configs_agree(expected, self._sem(run), defaults):
                return run
        return None


NEVER_ASSUMED = {"sparse.label"}


def absent_defaults(algorithm: Any) -> dict[str, Any]:
    """``sparse.<option>`` -> what its absence means, for the algorithm's registered options."""
    from snfs.algorithms import ALGORITHMS

    if str(algorithm) not in ALGORITHMS:  # an unknown algorithm has no registered defaults
        return {}
    return {f"sparse.{k}": v for k, v in ALGORITHMS.get(str(algorithm)).option_defaults.items()}


def configs_agree(expected: Mapping[str, Any], have: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
    """Whether a run's flattened config (``have``) is the grid point's (``expected``); see the module docstring."""
    for key in expected.keys() | have.keys():
        if key in expected and key in have:
            if not same_value(expected[key], have[key]):
                return False
        elif key in defaults:
            if not same_value(expected.get(key, have.get(key)), defaults[key]):
                return False
        elif key in NEVER_ASSUMED or key not in expected:
            return False
    return True


# --- sources ------------------------------------------------------------------------------------


def load_local(results_dir: str | Path) -> RunIndex:
    runs = list(iter_results(results_dir, status="finished"))
    for r in runs:
        r.setdefault("_source", str(Path(results_dir) / f"{r.get('run_id')}.json"))
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


def load(source: str = "local", results_dir: str | Path | None = None, wandb_project: str | None = None,
         api: Any = None) -> RunIndex:
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
                rec["layer_density"][k[len("layer_density/"):]] = v
            elif not k.startswith("_"):
                rec[k] = v
    run["history"] = [records[e] for e in sorted(records)]
    return run["history"]
