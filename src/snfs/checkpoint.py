"""End-of-epoch checkpoints, written atomically so a crash never corrupts the latest one."""

from __future__ import annotations

import io
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


def load_checkpoint(path: str | Path, fingerprint: str) -> dict[str, Any]:
    """Load a checkpoint and check that it belongs to this run's config (``fingerprint``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}. Delete it to start the run afresh.") from exc
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written by a different model or config "
            f"(its fingerprint {state.get('fingerprint')!r}, this run {fingerprint!r}); "
            f"delete it or set run_id to start a new run"
        )
    return state
