"""Every registered algorithm through the real training loop: DDP, a SIGTERM resume and density 1 (issue 14).

The runs are small (LeNet-300-100 on generated data, 3 epochs of 7 batches) with update schedules
fast enough that every dynamic algorithm changes its masks several times. The generated training
set has 193 samples, so the last batch of every epoch holds one sample: under 2 DDP ranks one rank's
share of it is empty.
"""

from __future__ import annotations

import math
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from support import compose_cfg

import snfs.train as train_module
from snfs.algorithms import ALGORITHMS
from snfs.data.batches import TensorBatches, shard_bounds
from snfs.errors import SnfsError
from snfs.train import Trainer

BASE = [
    "dataset=fake",
    "dataset.n_train=193",
    "dataset.n_val=64",
    "dataset.n_test=64",
    "logger.mode=disabled",
    "progress=false",
    "device=cpu",
    "batch_size=32",
    "epochs=3",
    "density=0.1",
    "run_id=fixed",
]
STEPS_PER_EPOCH = 7  # ceil(193 / 32)
# Faster update schedules, so that every dynamic algorithm updates its masks within 21 steps.
FAST = {
    "dsr": ["sparse.rewire_periods=[[0,2]]", "sparse.target_prune=0.05"],
    "rigl": ["sparse.delta_t=2"],
    "set": ["sparse.schedule=step", "sparse.period=4"],
    "deepr": ["sparse.temperatures=[[0.0,1.0e-4],[0.5,1.0e-8]]"],
    "deepr_dsr_code": ["sparse.temperatures=[[0.0,1.0e-4],[0.5,1.0e-8]]"],
}
VARIANTS = [*ALGORITHMS.names(), "deepr_dsr_code"]
DYNAMIC = {"momentum", "set", "dsr", "rigl", "deepr", "deepr_dsr_code"}


def overrides(variant: str, results_dir: Path) -> list[str]:
    return BASE + [f"sparse={variant}", *FAST.get(variant, []), f"results_dir={results_dir}"]


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "epoch_time_s"} for record in history]


def assert_histories_close(got: list[dict], want: list[dict], where: str) -> None:
    """Counts, densities and epochs exactly; losses, errors and schedule values to float tolerance."""
    assert len(got) == len(want), where
    for a, b in zip(comparable(got), comparable(want)):
        assert a.keys() == b.keys(), where
        for key in a:
            x, y = a[key], b[key]
            if isinstance(x, float) or isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6), f"{where}, epoch {a['epoch']}: {key} {x} vs {y}"
            else:
                assert x == y, f"{where}, epoch {a['epoch']}: {key} {x} vs {y}"


# --- DDP --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_capturing(cfg) -> tuple[dict, object]:
    """Train; return the result record and the algorithm object."""
    trainer = Trainer(cfg)
    return trainer.fit(), trainer.algo


def _ddp_worker(rank: int, world: int, port: int, jobs: dict[str, list[str]], out_dir: str) -> None:
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
    out = {}
    try:
        for name, job in jobs.items():
            try:
                cfg = compose_cfg(job)
                if name == "rank_dependent":  # a deliberately broken algorithm: each rank draws its own mask
                    cfg.seed = cfg.seed + rank
                result, algo = _run_capturing(cfg)
                out[name] = {
                    "history": result["history"],
                    "checksum": algo.masks.checksum(),
                    "model": {k: v.clone() for k, v in algo.ctx.model.state_dict().items()},
                }
            except SnfsError as exc:
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        train_module.cleanup()
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.ddp
def test_ddp_every_algorithm_matches_single_process(tmp_path):
    """Two gloo ranks: same masks on both ranks and as one process, same logged history, an empty share is harmless.

    Covers issue 14 bugs 1 (SNIP scored each rank's half of the first batch and nothing checked the
    masks after init_masks) and 2 (an empty last-batch share gave a NaN loss and a 'failed' run).
    """
    jobs = {v: overrides(v, tmp_path / "ddp" / v) for v in VARIANTS}
    # the post-init mask check catches ranks that disagree from the start (a run-dependent seed)
    jobs["rank_dependent"] = overrides("static", tmp_path / "ddp" / "rank_dependent")
    # SyncBatchNorm runs on GPUs only: on gloo/CPU sync_bn=true is refused with a clear error
    jobs["sync_bn_cpu"] = overrides("static", tmp_path / "ddp" / "sync_bn") + ["sync_bn=true", "+model.batch_norm=true"]
    mp.start_processes(_ddp_worker, args=(2, _free_port(), jobs, str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert "mask checksum differs between ranks" in ranks[0]["rank_dependent"].get("error", ""), ranks[0][
        "rank_dependent"
    ]
    assert "RankMismatchError" in ranks[1]["rank_dependent"].get("error", "")
    for r in (0, 1):
        assert "ConfigError: sync_bn=true is not valid on device cpu" in ranks[r]["sync_bn_cpu"].get("error", "")
    torch.set_num_threads(1)
    worst = {}
    for variant in VARIANTS:
        r0, r1 = ranks[0][variant], ranks[1][variant]
        assert "error" not in r0 and "error" not in r1, (variant, r0.get("error"), r1.get("error"))
        assert r0["checksum"] == r1["checksum"], f"{variant}: masks differ between ranks"
        for k in r0["model"]:
            assert torch.equal(r0["model"][k], r1["model"][k]), f"{variant}: {k} differs between ranks"
        assert_histories_close(r0["history"], r1["history"], f"{variant}, rank 0 vs rank 1")
        single, algo = _run_capturing(compose_cfg(overrides(variant, tmp_path / "single" / variant)))
        assert algo.masks.checksum() == r0["checksum"], f"{variant}: DDP masks differ from one process"
        assert_histories_close(r0["history"], single["history"], f"{variant}, DDP vs one process")
        assert all(math.isfinite(rec["train_loss"]) for rec in r0["history"])
        if variant in DYNAMIC:
            assert sum(rec["mask_updates"] for rec in r0["history"]) > 0, f"{variant} never updated its masks"
        worst[variant] = max(
            float((w - r0["model"][k]).abs().max())
            for k, w in algo.ctx.model.state_dict().items()
            if w.is_floating_point()
        )
        for k, w in algo.ctx.model.state_dict().items():
            torch.testing.assert_close(w, r0["model"][k], rtol=1e-4, atol=1e-5, msg=f"{variant}: {k}")
    print(
        "\n[ddp] 2 gloo ranks vs one process, max |w_ddp - w_single|: "
        + ", ".join(f"{k} {v:.2g}" for k, v in worst.items())
    )


def test_shards_are_balanced_and_cover_the_batch():
    for n in range(0, 9):
        for world in (1, 2, 3, 4):
            parts = [shard_bounds(10, 10 + n, r, world) for r in range(world)]
            sizes = [hi - lo for lo, hi in parts]
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
            assert parts[0][0] == 10 and all(parts[i][1] == parts[i + 1][0] for i in range(world - 1))
            assert (min(sizes) == 0) == (n < world)
    batches = TensorBatches(torch.arange(5.0), torch.arange(5), 4, shuffle=False)
    assert [batches.global_batch_size(i) for i in range(len(batches))] == [4, 1]


# --- SIGTERM and resume -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_sigterm_resume_keeps_the_full_history(variant, tmp_path, monkeypatch):
    """SIGTERM on the last batch of epoch 2, then the same command: the same history as a straight run.

    Covers issue 14 bug 5: RigL and DeepR did not checkpoint their step counter, so the resumed
    epoch logged the schedule of step 0 (RigL drop_fraction, DeepR temperature).
    """
    torch.set_num_threads(1)
    straight = Trainer(compose_cfg(overrides(variant, tmp_path / "a"))).fit()
    stop_at = 2 * STEPS_PER_EPOCH
    real_step = Trainer.train_step

    def step_then_signal(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        if self.progress.step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    cfg = compose_cfg(overrides(variant, tmp_path / "b"))
    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    assert Trainer(cfg).fit() is None  # stopped by the signal, checkpointed
    monkeypatch.setattr(Trainer, "train_step", real_step)
    state = torch.load(tmp_path / "b" / "checkpoints" / "fixed.pt", weights_only=False)
    assert state["preempted"] and state["progress"]["step"] == stop_at and state["progress"]["epoch"] == 1
    resumed = Trainer(cfg).fit()
    assert comparable(resumed["history"]) == comparable(straight["history"])
    assert resumed["test_error"] == straight["test_error"] and resumed["train_flops"] == straight["train_flops"]


# --- density 1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "dense"])
def test_density_one_trains_exactly_like_dense(variant, tmp_path):
    """Issue 14 bug 8: at density 1 a dynamic method pruned and regrew, zeroing live weights."""
    torch.set_num_threads(1)
    dense_result, dense = _run_capturing(compose_cfg(overrides("dense", tmp_path / "dense") + ["density=1.0"]))
    result, algo = _run_capturing(compose_cfg(overrides(variant, tmp_path / variant) + ["density=1.0"]))
    for k, w in dense.ctx.model.state_dict().items():
        assert torch.equal(w, algo.ctx.model.state_dict()[k]), f"{variant}: {k} differs from sparse=dense"
    assert [r["train_loss"] for r in result["history"]] == [r["train_loss"] for r in dense_result["history"]]
    assert all(r["pruned"] == 0 and r["density"] == 1.0 for r in result["history"])
    assert result["algorithm"] == variant.replace("deepr_dsr_code", "deepr")
