"""Two DDP edge cases that once ended in a gloo traceback and no record (issue 26, findings 11 and 14).

11: a non-finite loss that only one rank sees at an every-100-steps check: the check is all-reduced, so
    every rank stops there and rank 0 records the run as diverged.
14: a last global batch that would leave one rank a single sample, which BatchNorm cannot normalise in
    training mode: it is folded into the batch before it (snfs.data.batches.TensorBatches).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from support import compose_cfg

FAKE = [
    "dataset=fake",
    "dataset.n_val=64",
    "dataset.n_test=128",
    "logger.mode=disabled",
    "progress=false",
    "device=cpu",
    "batch_size=32",
    "run_id=fixed",
    "threads=1",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, overrides: list[str], out_dir: str, nan_at_step: int | None) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
        }
    )
    torch.set_num_threads(1)
    import snfs.train as train_module
    from snfs.errors import DivergenceError

    if nan_at_step is not None and rank == 1:  # only rank 1's reported loss is non-finite: the gradients stay finite
        real_step = train_module.Trainer.train_step

        def step(self, x, y, global_n):
            reported, out, update = real_step(self, x, y, global_n)
            return (reported * float("nan") if self.progress.step == nan_at_step else reported), out, update

        train_module.Trainer.train_step = step
    outcome = "finished"
    try:
        train_module.train(compose_cfg(overrides))
    except DivergenceError as exc:
        outcome = f"diverged: {exc}"
    finally:
        train_module.cleanup()
    Path(out_dir, f"rank{rank}.txt").write_text(outcome)


def _run_two_ranks(tmp_path: Path, overrides: list[str], nan_at_step: int | None = None) -> list[str]:
    mp.start_processes(
        _worker, args=(2, _free_port(), overrides, str(tmp_path), nan_at_step), nprocs=2, start_method="spawn"
    )
    return [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]


@pytest.mark.ddp
def test_a_non_finite_loss_seen_by_one_rank_stops_every_rank_and_is_recorded(tmp_path):
    runs = tmp_path / "runs"
    # 1280 samples, global batch 32: 40 steps an epoch, so step 100 is mid-epoch 3, away from end_epoch's check
    outcomes = _run_two_ranks(
        tmp_path,
        FAKE + ["dataset.n_train=1280", "epochs=3", "model=lenet300_100", f"results_dir={runs}"],
        nan_at_step=100,
    )
    assert all(o.startswith("diverged: non-finite training loss at step 100 (epoch 3)") for o in outcomes), outcomes
    record = json.loads((runs / "fixed.json").read_text())
    assert record["status"] == "diverged" and record["world_size"] == 2


@pytest.mark.ddp
def test_ddp_with_batch_norm_trains_when_the_last_batch_would_leave_a_rank_one_sample(tmp_path):
    runs = tmp_path / "runs"
    outcomes = _run_two_ranks(
        tmp_path,
        FAKE
        + ["dataset.n_train=643", "epochs=1", "model=lenet300_100", "+model.batch_norm=true", f"results_dir={runs}"],
    )
    assert outcomes == ["finished", "finished"]
    assert json.loads((runs / "fixed.json").read_text())["status"] == "finished"
