"""The local results store: one JSON file per run (a ``RunRecord``), written atomically.

``<results_dir>/<run_id>.json`` holds a finished run (``status: finished``), one whose training loss
became non-finite (``status: diverged``: an outcome of its protocol, which tables count and sweeps do not
retry); records written before that status existed say ``status: failed``. Tables are built from these files only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
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
    config: dict  # the whole resolved config; its identity (snfs.identity) decides which table rows it fills
    epochs: int | None = None
    history: list = field(default_factory=list)  # one dict per epoch: losses, errors, lr, densities, mask updates
    git_commit: str | None = None  # the source tree's commit, "+dirty" with uncommitted changes
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
    machine_info: dict | None = None  # snfs.machine.describe: the same as fields, with torch's build and flush_denormal
    fingerprint: str | None = None  # the identity hash (checkpoints are resumed only by the same)
    data_md5: dict | None = None  # md5 of each data file when not verified against the dataset's declared sums
    speedup_estimate: dict | None = None  # speedup_estimate=true: timed dense convs, estimated sparse speedups
    # diverged and failed runs
    reason: str | None = None
    epochs_completed: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        """A record from its JSON; fields this version does not know are dropped, missing optional ones are None."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in d.items() if k in known}
        config = fields.get("config") if isinstance(fields.get("config"), Mapping) else {}
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_problem(obj: Any) -> str | None:
    """Why a parsed JSON file of the store is not a run record that tables, sweeps and the dashboard can use."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not a run record"
    for key in ("run_id", "status"):
        if not isinstance(obj.get(key), str):
            return f"not a run record (no {key})"
    config = obj.get("config")
    if not isinstance(config, Mapping):
        return "not a run record (no config)"
    for where, value in (("density", obj.get("density", 0.0)), ("config.density", config.get("density", 0.0))):
        if not _is_number(value):
            return f"its {where} is {value!r}, not a number"
    if "history" in obj and not isinstance(obj["history"], list):
        return "its history is not a list"
    return None


def read_record(path: str | Path) -> tuple[dict | None, str | None]:
    """(the record, None), or (None, why it cannot be used): unreadable, not UTF-8, not JSON, not a record."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON, perhaps half-written ({exc})"
    why = record_problem(obj)
    return (None, why) if why is not None else (obj, None)


def iter_results(results_dir: str | Path, status: str | None = "finished", warn: bool = True) -> Iterator[dict]:
    """Every run record in the store (finished ones by default); any other file is skipped, and named on stderr."""
    for p in sorted(Path(results_dir).glob("*.json")):
        run, why = read_record(p)
        if run is None:
            if warn:
                print(f"warning: skipped {p}: {why}", file=sys.stderr)
            continue
        if status is None or run.get("status") == status:
            yield run


def find_finished(results_dir: str | Path, run_id: str, identity_hash: str) -> tuple[dict, Path] | None:
    """A finished run's record and its file: under ``run_id``, or under another file name with the same identity
    (a run id of an older scheme); None if the store has no finished record of this run."""
    from snfs.identity import record_identity_hash

    path = result_path(results_dir, run_id)
    record, _ = read_record(path)
    if record is not None and record.get("status") == "finished":
        return record, path
    for other in sorted(Path(results_dir).glob("*.json")):
        record, _ = read_record(other)
        if record is None or record.get("status") != "finished":
            continue
        try:
            if record_identity_hash(record) == identity_hash:
                return record, other
        except (KeyError, TypeError, ValueError):  # a record too old or too odd to have an identity
            continue
    return None


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


def summarise_updates(updates: list[dict]) -> dict:
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


def median_epoch_time(history: list[dict]) -> float | None:
    """The median training epoch time of a run (wall clock, validation and mask updates included)."""
    times = sorted(float(h["epoch_time_s"]) for h in history if h.get("epoch_time_s") is not None)
    if not times:
        return None
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])
