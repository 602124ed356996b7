"""Run records, the one home of their schema: writing, reading, finding a run, and its wandb summary.

``<results_dir>/<run_id>.json`` holds a finished run (``status: finished``), one whose training loss
became non-finite (``status: diverged``: an outcome of its protocol, which tables count and sweeps do not
retry); records written before that status existed say ``status: failed``. The trainer writes them
(``write_record``, and ``wandb_summary`` to wandb); tables, sweeps and the dashboard read them
(``read_record``, ``iter_records``, ``record_from_wandb``) and find a run by run id or identity
(``RunLookup``). Like ``snfs.identity``, this module imports neither torch nor Hydra.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    """One run as the trainer writes it and the report reads it (``<results_dir>/<run_id>.json``)."""

    status: str  # finished | diverged (failed: a divergence recorded by older versions)
    run_id: str  # snfs.identity.run_id: <dataset>-<model>-<algorithm>-d<density>-s<seed>-<identity hash>
    dataset: str
    model: str
    algorithm: str  # the sparse algorithm (sparse.name)
    density: float  # the density asked for (1.0 for dense)
    seed: int
    config: dict[str, Any]  # the whole resolved config; its identity (snfs.identity) decides which table rows it fills
    epochs: int | None = None
    # one dict per epoch: losses, errors, lr, densities, mask updates
    history: list[dict[str, Any]] = field(default_factory=list)
    git_commit: str | None = None  # the commit the run started from, "+dirty" with uncommitted changes
    # finished runs
    test_error: float | None = None  # percent, on the test set after the last epoch
    test_loss: float | None = None
    val_error: float | None = None  # percent, on the validation split after the last epoch
    final_density: float | None = None  # the density the masks ended at
    train_flops: float | None = None  # training FLOPs (docs/algorithms.md, "Cost accounting")
    dense_train_flops: float | None = None
    flops_ratio: float | None = None  # train_flops / dense_train_flops
    wall_time_s: float | None = None  # training wall time, resumes summed
    median_epoch_time_s: float | None = None  # the median epoch's wall time (validation and mask updates included)
    execution: str | None = None  # masked | sparse | truly_sparse (how sparse layers computed)
    peak_rss_mb: float | None = None  # the process's peak resident memory (ru_maxrss), MiB; CPU memory only
    device: str | None = None
    world_size: int | None = None
    machine: str | None = None  # snfs.machine.describe_line: CPU model, vector extensions, threads, BLAS, host; or GPU
    # snfs.machine.describe: the same as fields, with torch's build and flush_denormal
    machine_info: dict[str, Any] | None = None
    fingerprint: str | None = None  # the identity hash (checkpoints are resumed only by the same)
    # md5 of each data file when not verified against the dataset's declared sums
    data_md5: dict[str, str] | None = None
    # speedup_estimate=true: timed dense convs, estimated sparse speedups
    speedup_estimate: dict[str, Any] | None = None
    # diverged and failed runs
    reason: str | None = None
    epochs_completed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        """A record from its JSON; fields this version does not know are dropped, missing optional ones are None."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in d.items() if k in known}
        section = fields.get("config")
        config: Mapping[str, Any] = section if isinstance(section, Mapping) else {}
        # the summary fields repeat the config; a record that lacks them (hand-written) takes them from it
        for key, (group, sub) in {
            "dataset": ("dataset", "name"),
            "model": ("model", "name"),
            "algorithm": ("sparse", "name"),
            "density": ("density", None),
            "seed": ("seed", None),
        }.items():
            if key not in fields:
                value = config.get(group)
                fields[key] = value.get(sub) if sub and isinstance(value, Mapping) else value
        return cls(**fields)


def is_dense(algorithm: str | None, density: float | None) -> bool:
    """Whether a run trains every weight: the dense baseline at any density, or any algorithm at density 1
    (nothing to prune or regrow: ``snfs.algorithms.build_algorithm`` trains it as ``dense``)."""
    return algorithm == "dense" or (density is not None and float(density) >= 1.0)


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a results file is as readable as any other
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def result_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def write_record(results_dir: str | Path, record: RunRecord) -> Path:
    """Write a run's record to ``<results_dir>/<run_id>.json``, atomically; returns the path."""
    path = result_path(results_dir, record.run_id)
    write_json(path, record.to_dict())
    return path


# --- reading --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: what tables and sweeps need of a record besides its config: they find it by run id and count it by status
STORE_FIELDS = ("run_id", "status")
#: what the dashboard's list of runs needs of a record (its config may be missing: a hand-written record)
LISTING_FIELDS = ("run_id", "dataset", "model", "algorithm")


def record_problem(obj: Any, fields: tuple[str, ...] = STORE_FIELDS, needs_config: bool = True) -> str | None:
    """Why a parsed JSON file of the store is not a run record that has the text ``fields`` (and a config where
    ``needs_config``), or None when it is one."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not a run record"
    missing = [k for k in fields if not isinstance(obj.get(k), str)]
    if missing:
        return "not a run record (no " + ", ".join(missing) + ")"
    config = obj.get("config")
    if config is None and needs_config:
        return "not a run record (no config)"
    if config is not None and not isinstance(config, Mapping):
        return "its config is not a mapping"
    for where, value in (("density", obj.get("density", 0.0)), ("config.density", (config or {}).get("density", 0.0))):
        if not _is_number(value):
            return f"its {where} is {value!r}, not a number"
    if "history" in obj and not isinstance(obj["history"], list):
        return "its history is not a list"
    return None


def read_record(
    path: str | Path, fields: tuple[str, ...] = STORE_FIELDS, needs_config: bool = True
) -> tuple[dict[str, Any] | None, str | None]:
    """(the record, None), or (None, why it cannot be used): unreadable, not UTF-8, not JSON, not a record
    (``record_problem``)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON, perhaps half-written ({exc})"
    why = record_problem(obj, fields, needs_config)
    return (None, why) if why is not None else (obj, None)


def iter_records(
    results_dir: str | Path, status: str | None = "finished", warn: bool = True
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, record) of every run record in the store (finished ones by default); any other file is skipped,
    and named on stderr where ``warn``."""
    for p in sorted(Path(results_dir).glob("*.json")):
        run, why = read_record(p)
        if run is None:
            if warn:
                print(f"warning: skipped {p}: {why}", file=sys.stderr)
            continue
        if status is None or run.get("status") == status:
            yield p, run


def iter_results(
    results_dir: str | Path, status: str | None = "finished", warn: bool = True
) -> Iterator[dict[str, Any]]:
    """Every run record in the store (finished ones by default); any other file is skipped, and named on stderr."""
    for _, run in iter_records(results_dir, status, warn):
        yield run


# --- finding a run ----------------------------------------------------------------------------


def record_identity(record: Mapping[str, Any]) -> str | None:
    """The identity hash of a record (``snfs.identity``: its config and data checksums); None for a record too
    old or too odd to have one."""
    from snfs.identity import identity, identity_hash

    try:
        return identity_hash(identity(record["config"], record.get("data_md5")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class RunLookup:
    """Records found by run id, else by identity hash: a record under a run id of an older scheme, or one made
    before an option with a default existed (identities count only differences from the defaults)."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        records = list(records)
        self.by_id = {r["run_id"]: r for r in records}
        self.by_identity: dict[str, dict[str, Any]] = {}
        # sorted by run id, so that which of two records of one identity is found never depends on file order
        for r in sorted(records, key=lambda r: str(r.get("run_id"))):
            ident = record_identity(r)
            if ident is not None:
                self.by_identity.setdefault(ident, r)

    def find(self, run_id: str, identity_hash: str) -> dict[str, Any] | None:
        found = self.by_id.get(run_id)
        return found if found is not None else self.by_identity.get(identity_hash)


def find_finished(results_dir: str | Path, run_id: str, identity_hash: str) -> tuple[dict[str, Any], Path] | None:
    """A finished run's record and its file: under ``run_id``, or under another file name with the same identity
    (a run id of an older scheme); None if the store has no finished record of this run."""
    path = result_path(results_dir, run_id)
    record, _ = read_record(path)
    if record is not None and record.get("status") == "finished":
        return record, path
    found = list(iter_records(results_dir, "finished", warn=False))
    match = RunLookup(r for _, r in found).find(run_id, identity_hash)
    return next(((r, p) for p, r in found if r is match), None)


# --- wandb ------------------------------------------------------------------------------------

#: the record fields a finished run also writes to its wandb summary, so that a table read from a wandb project
#: (``record_from_wandb``) has what one read from the local store has; the config travels as the run's config
WANDB_SUMMARY_FIELDS = (
    "test_error",
    "test_loss",
    "val_error",
    "final_density",
    "wall_time_s",
    "flops_ratio",
    "median_epoch_time_s",
    "speedup_estimate",
    "execution",
    "peak_rss_mb",
    "git_commit",
    "device",
    "machine",
)


def wandb_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the trainer writes to a finished run's wandb summary: the ``WANDB_SUMMARY_FIELDS`` of its record."""
    return {k: record[k] for k in WANDB_SUMMARY_FIELDS if k in record}


def _summary_dict(summary: Any) -> dict[str, Any]:
    if summary is None:
        return {}
    try:
        return {k: summary[k] for k in summary.keys()}
    except Exception:
        return dict(summary)


def record_from_wandb(run: Any) -> dict[str, Any]:
    """A run record from a ``wandb.apis.public.Run``: its config, its summary (``wandb_summary``), its name (our
    run id) and state; finished when wandb says so and the summary has a test error."""
    from snfs.identity import flatten

    config = dict(run.config or {})
    summary = _summary_dict(getattr(run, "summary", None))
    flat = flatten(config)
    status = str(getattr(run, "state", "unknown"))
    if status == "finished" and summary.get("test_error") is None:
        status = "unfinished"  # the process ended before the trainer wrote its result (stop_after_epoch, a signal)
    record = {
        "status": status,
        "run_id": str(getattr(run, "name", None) or getattr(run, "id", "")),
        "dataset": flat.get("dataset.name"),
        "model": flat.get("model.name"),
        "algorithm": flat.get("sparse.name"),
        "density": flat.get("density"),
        "seed": flat.get("seed"),
        "epochs": flat.get("epochs"),
        "config": config,
        "_wandb_run": run,
        "_source": "wandb:" + "/".join(str(p) for p in getattr(run, "path", []) or []),
    }
    record.update({k: summary.get(k) for k in WANDB_SUMMARY_FIELDS})
    # a summary without them: wandb's own record of the commit, the configured device
    record["git_commit"] = record["git_commit"] or getattr(run, "commit", None) or "unknown"
    record["device"] = record["device"] or flat.get("device")
    return record


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the source tree, with '+dirty' when it has uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def summarise_updates(updates: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-epoch totals of the mask updates: how many, and weights pruned and regrown."""
    if not updates:
        return {"mask_updates": 0, "pruned": 0, "regrown": 0}
    out = {
        "mask_updates": len(updates),
        "pruned": sum(int(u.get("pruned", 0)) for u in updates),
        "regrown": sum(int(u.get("regrown", 0)) for u in updates),
    }
    last = updates[-1]
    for key in ("pruned_per_layer", "regrown_per_layer"):
        if key in last:
            out[key] = last[key]
    return out


def median_epoch_time(history: list[dict[str, Any]]) -> float | None:
    """The median training epoch time of a run (wall clock, validation and mask updates included)."""
    times = sorted(float(h["epoch_time_s"]) for h in history if h.get("epoch_time_s") is not None)
    if not times:
        return None
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])
