"""Scale and reliability: DDP agreement, preemption, divergence, wandb failure, bad inputs, launchers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from support import REPO, compose_cfg

import snfs.train as train_module
from snfs.errors import DatasetError, DivergenceError
from snfs.train import train

FAKE = [
    "dataset=fake",
    "dataset.n_train=640",
    "dataset.n_val=64",
    "dataset.n_test=128",
    "logger.mode=disabled",
    "progress=false",
    "device=cpu",
    "batch_size=32",
    "run_id=fixed",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, overrides: list[str], out_dir: str) -> None:
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
    trainer = train_module.Trainer(compose_cfg(overrides))
    try:
        trainer.fit()
    finally:
        train_module.cleanup()
    algo = trainer.algo
    torch.save(
        {"masks": algo.masks.state_dict(), "model": algo.ctx.model.state_dict()}, Path(out_dir) / f"rank{rank}.pt"
    )


@pytest.mark.ddp
def test_ddp_two_ranks_agree_and_match_single_process(tmp_path):
    overrides = FAKE + ["epochs=4", "limit_batches=10", f"results_dir={tmp_path / 'ddp'}"]
    mp.start_processes(_ddp_worker, args=(2, _free_port(), overrides, str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in r0["masks"]:
        assert torch.equal(r0["masks"][k], r1["masks"][k]), f"masks differ between ranks: {k}"
    torch.set_num_threads(1)
    single = tmp_path / "single"
    os.environ.pop("WORLD_SIZE", None)
    trainer = train_module.Trainer(compose_cfg(FAKE + ["epochs=4", "limit_batches=10", f"results_dir={single}"]))
    trainer.fit()
    algo = trainer.algo
    for k, m in algo.masks.state_dict().items():
        assert torch.equal(m, r0["masks"][k]), f"DDP mask differs from single process: {k}"
    worst = 0.0
    for k, w in algo.ctx.model.state_dict().items():
        torch.testing.assert_close(w, r0["model"][k], rtol=1e-4, atol=1e-5)
        if w.is_floating_point():
            worst = max(worst, float((w - r0["model"][k]).abs().max()))
    print(
        f"\n[ddp] 2 gloo ranks: masks bit-identical over {len(r0['masks'])} layers; "
        f"max |w_ddp - w_single| = {worst:.3g}"
    )
    # only rank 0 writes the results store
    assert len(list((tmp_path / "ddp").glob("*.json"))) == 1


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    """`python -m snfs.train` in ``cwd`` (a temporary folder: Hydra writes its outputs/ there)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "snfs.train", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_sigterm_checkpoints_and_rerun_resumes_to_same_weights(tmp_path):
    args = FAKE + ["dataset.n_train=6400", "epochs=3", "model=lenet300_100"]
    straight = _cli(args + [f"results_dir={tmp_path / 'a'}"], tmp_path)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    proc = _cli(args + [f"results_dir={tmp_path / 'b'}"], tmp_path)
    ckpt = tmp_path / "b" / "checkpoints" / "fixed.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # after epoch 1's checkpoint, wherever the run is now
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "checkpoint saved" in err
    assert not (tmp_path / "b" / "fixed.json").exists()
    state = torch.load(ckpt, weights_only=False)
    # stopped by the signal where it was: past epoch 1, before the end (mid-epoch or between epochs)
    assert state["preempted"] and 1 <= state["progress"]["epoch"] < 3
    again = _cli(args + [f"results_dir={tmp_path / 'b'}"], tmp_path)  # the same command, no resume flag
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resuming fixed" in err
    a = torch.load(tmp_path / "a" / "checkpoints" / "fixed.pt", weights_only=False)
    b = torch.load(ckpt, weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ra, rb = (json.loads((tmp_path / d / "fixed.json").read_text()) for d in ("a", "b"))
    assert ra["test_error"] == rb["test_error"]


def test_divergence_stops_keeps_checkpoint_and_records_failure(tmp_path, monkeypatch):
    real = train_module.F.cross_entropy
    calls = {"train": 0}

    def poisoned(out, y, *a, **kw):
        loss = real(out, y, *a, **kw)
        if kw.get("reduction") == "sum":  # evaluation
            return loss
        calls["train"] += 1
        return loss * float("nan") if calls["train"] > 25 else loss

    monkeypatch.setattr(train_module.F, "cross_entropy", poisoned)
    with pytest.raises(DivergenceError, match="non-finite"):
        train(compose_cfg(FAKE + ["epochs=3", "limit_batches=20", f"results_dir={tmp_path}"]))
    record = json.loads((tmp_path / "fixed.json").read_text())
    assert record["status"] == "diverged" and "non-finite" in record["reason"]
    assert record["epochs_completed"] == 1
    assert torch.load(tmp_path / "checkpoints" / "fixed.pt", weights_only=False)["progress"]["epoch"] == 1


def test_divergence_cli_message(tmp_path):
    proc = _cli(FAKE + ["epochs=2", "optim.lr=1e30", f"results_dir={tmp_path}"], tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "non-finite training loss" in err and "recorded as diverged" in err and "Traceback" not in err


def test_a_diverged_run_ends_without_stopping_its_multirun(tmp_path):
    """A joblib sweep whose first run diverges: the other run still finishes, and both are recorded."""
    proc = _cli(
        [
            "--multirun",
            *FAKE[:-1],
            "optim.lr=1e30,0.05",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"results_dir={tmp_path / 'runs'}",
            "epochs=1",
        ],
        tmp_path,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert sorted(r["status"] for r in records) == ["diverged", "finished"], err
    assert "non-finite training loss" in err


def test_wandb_failure_never_loses_the_run(tmp_path, monkeypatch):
    import wandb

    def broken(*a, **kw):
        raise wandb.errors.CommError("network unreachable")

    monkeypatch.setattr(wandb, "init", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(
            compose_cfg(FAKE + ["epochs=1", "limit_batches=2", "logger.mode=online", f"results_dir={tmp_path}"])
        )
    assert result["status"] == "finished"
    assert (tmp_path / "fixed.json").exists()
    assert any("wandb could not start" in str(w.message) for w in caught)


def test_corrupt_mnist_file_is_detected(tmp_path, real_mnist_root):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(real_mnist_root / "MNIST" / "raw", raw)
    with open(raw / "t10k-labels-idx1-ubyte", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    corrupt = (raw / "t10k-labels-idx1-ubyte").read_bytes()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte") as err:
        train(
            compose_cfg(
                [
                    f"data.root={tmp_path}",
                    "dataset.download=false",
                    "logger.mode=disabled",
                    "progress=false",
                    f"results_dir={tmp_path / 'runs'}",
                    "epochs=1",
                    "limit_batches=1",
                ]
            )
        )
    assert "md5" in str(err.value)
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == corrupt  # a user's file is named, never deleted


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    from snfs.errors import CheckpointError

    ckpt = tmp_path / "checkpoints" / "fixed.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(compose_cfg(FAKE + ["epochs=1", "resume=true", f"results_dir={tmp_path}"]))


def test_submitit_slurm_launcher_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=submitit_slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")


@pytest.mark.slow
def test_submitit_local_two_job_multirun(tmp_path):
    proc = _cli(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "seed=1,2",
            *[o for o in FAKE if o != "run_id=fixed"],
            "epochs=1",
            "limit_batches=2",
            f"results_dir={tmp_path}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.launcher.timeout_min=5",
        ],
        tmp_path,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert sorted(r["seed"] for r in runs) == [1, 2]


# --- issue 14: checkpoints that cannot be read, divergence before the first checkpoint, file modes ---


@pytest.mark.parametrize("content", ["garbage", "not_a_dict", "no_algorithm"])
def test_unreadable_checkpoint_is_moved_aside_never_overwritten(tmp_path, content):
    """Issue 14 bug 6: without resume=true a corrupt preemption checkpoint was ignored and overwritten;
    a checkpoint that was not a dict, or lacked its algorithm section, gave a traceback."""
    from snfs.errors import CheckpointError

    train(compose_cfg(FAKE + ["epochs=1", "limit_batches=2", f"results_dir={tmp_path}"]))
    (tmp_path / "fixed.json").unlink()  # as after a preemption: a checkpoint, no finished record
    ckpt = tmp_path / "checkpoints" / "fixed.pt"
    if content == "garbage":
        ckpt.write_bytes(b"\x80\x04 truncated preemption checkpoint")
    elif content == "not_a_dict":
        torch.save([1, 2, 3], ckpt)
    else:
        state = torch.load(ckpt, weights_only=False)
        del state["algorithm"]
        state["preempted"] = True
        torch.save(state, ckpt)
    original = ckpt.read_bytes()
    for resume in ("false", "true"):
        with pytest.raises(
            CheckpointError, match=r"cannot read checkpoint .*fixed\.pt.*moved to .*fixed\.pt\.unreadable"
        ):
            train(compose_cfg(FAKE + ["epochs=1", "limit_batches=2", f"resume={resume}", f"results_dir={tmp_path}"]))
        assert not ckpt.exists()
        ckpt.write_bytes(original)  # the same file again, for the resume=true pass
    kept = sorted((tmp_path / "checkpoints").glob("fixed.pt.unreadable*"))
    assert [p.read_bytes() for p in kept] == [original, original]
    ckpt.unlink()
    assert train(compose_cfg(FAKE + ["epochs=1", "limit_batches=2", f"results_dir={tmp_path}"]))["status"] == "finished"


@pytest.mark.slow  # a subprocess; the in-process test above covers the behaviour
def test_unreadable_checkpoint_cli_is_one_line(tmp_path):
    ckpt = tmp_path / "checkpoints" / "fixed.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"corrupt")
    proc = _cli(
        FAKE + ["epochs=1", "limit_batches=2", f"results_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        tmp_path,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert f"moved to {ckpt}.unreadable" in err.strip().splitlines()[-1]


def test_divergence_in_the_first_epoch_names_no_missing_checkpoint(tmp_path, monkeypatch):
    """Issue 14 bug 7: a non-finite loss in epoch 1 pointed to an 'epoch 0' checkpoint that does not exist."""
    real = train_module.F.cross_entropy
    monkeypatch.setattr(
        train_module.F,
        "cross_entropy",
        lambda out, y, *a, **kw: real(out, y, *a, **kw) * (1.0 if kw.get("reduction") == "sum" else float("nan")),
    )
    with pytest.raises(DivergenceError) as err:
        train(compose_cfg(FAKE + ["epochs=2", "limit_batches=3", f"results_dir={tmp_path}"]))
    message = str(err.value)
    assert "epoch 0" not in message and "no checkpoint of this run was written" in message
    assert not (tmp_path / "checkpoints" / "fixed.pt").exists()


def test_divergence_later_names_the_checkpoint_that_is_there(tmp_path, monkeypatch):
    real = train_module.F.cross_entropy
    calls = {"train": 0}

    def poisoned(out, y, *a, **kw):
        if kw.get("reduction") != "sum":
            calls["train"] += 1
        return real(out, y, *a, **kw) * (float("nan") if calls["train"] > 5 else 1.0)

    monkeypatch.setattr(train_module.F, "cross_entropy", poisoned)
    with pytest.raises(DivergenceError, match=r"last good checkpoint \(end of epoch 1\) is kept at .*fixed\.pt"):
        train(compose_cfg(FAKE + ["epochs=3", "limit_batches=3", f"results_dir={tmp_path}"]))
    assert torch.load(tmp_path / "checkpoints" / "fixed.pt", weights_only=False)["progress"]["epoch"] == 1


def test_results_and_checkpoints_respect_the_umask(tmp_path):
    """Results and checkpoints were written 0600 (mkstemp's mode); colleagues on a shared cluster could not read
    them."""
    old = os.umask(0o022)
    try:
        train(compose_cfg(FAKE + ["epochs=1", "limit_batches=2", f"results_dir={tmp_path / 'a'}"]))
        os.umask(0o027)
        train(compose_cfg(FAKE + ["epochs=1", "limit_batches=2", f"results_dir={tmp_path / 'b'}"]))
    finally:
        os.umask(old)
    for d, mode in (("a", 0o644), ("b", 0o640)):
        for path in (tmp_path / d / "fixed.json", tmp_path / d / "checkpoints" / "fixed.pt"):
            assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode))


def test_checkpoint_without_an_algorithm_state_key_is_a_clear_error(tmp_path):
    """A checkpoint written before an algorithm saved a key (RigL's step) stops with CheckpointError, not a KeyError."""
    from snfs.errors import CheckpointError

    args = FAKE + ["sparse=rigl", "epochs=2", "limit_batches=2", f"results_dir={tmp_path}"]
    train(compose_cfg(args + ["stop_after_epoch=1"]))
    ckpt = tmp_path / "checkpoints" / "fixed.pt"
    state = torch.load(ckpt, weights_only=False)
    del state["algorithm"]["step"]
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=r"does not fit this code \(KeyError: 'step'\)"):
        train(compose_cfg(args + ["resume=true"]))
