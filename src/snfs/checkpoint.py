"""End-of-epoch checkpoints, written atomically so a crash never corrupts the latest one."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from snfs.errors import CheckpointError
from snfs.results import atomic_write_bytes


def checkpoint_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{run_id}.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


#: the sections every checkpoint written by ``Trainer.save_checkpoint`` holds
SECTIONS = ("fingerprint", "model", "optimizer", "lr_schedule", "algorithm", "scaler", "flops", "rng", "progress")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint and check that it is one (a dict with every section); CheckpointError if not."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read checkpoint {path}: it holds a {type(state).__name__}, not a checkpoint")
    missing = [k for k in SECTIONS if k not in state]
    if missing:
        raise CheckpointError(f"cannot read checkpoint {path}: it lacks its {', '.join(missing)} section(s)")
    return state


def check_fingerprint(path: str | Path, state: dict[str, Any], fingerprint: str) -> None:
    """Raise CheckpointError unless the checkpoint was written by this run's config (``fingerprint``)."""
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written by a different model or config "
            f"(its fingerprint {state.get('fingerprint')!r}, this run {fingerprint!r}); "
            f"delete it or set run_id to start a new run"
        )


def load_checkpoint(path: str | Path, fingerprint: str) -> dict[str, Any]:
    """Load a checkpoint and check that it belongs to this run's config (``fingerprint``)."""
    state = read_checkpoint(path)
    check_fingerprint(path, state, fingerprint)
    return state


def move_aside(path: str | Path, tag: str = "unreadable") -> Path:
    """Rename a checkpoint to ``<name>.<tag>[-N]`` so that nothing overwrites it; returns the new path."""
    path = Path(path)
    target, n = path.with_name(f"{path.name}.{tag}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.{tag}-{n}"), n + 1
    os.replace(path, target)
    return target
