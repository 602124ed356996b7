"""Config composition, one-batch runs, bad overrides, results JSON and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from support import REPO, compose_cfg

import snfs.train as train_module
from snfs.checkpoint import checkpoint_path
from snfs.train import Trainer, train

MNIST_MODELS = ["lenet300_100", "lenet5_caffe"]


def test_the_record_names_the_commit_the_run_started_from(quick_overrides, tmp_path, monkeypatch):
    """A tree edited while a run trains does not relabel the run: its record keeps the commit it started at."""
    trainer = Trainer(compose_cfg(quick_overrides + ["epochs=1", "limit_batches=1"]))
    started = trainer.source_commit
    monkeypatch.setattr(train_module, "git_commit", lambda *args, **kwargs: "edited-while-it-trained")
    result = trainer.fit()
    assert result["git_commit"] == started
    assert started != "edited-while-it-trained"


@pytest.mark.parametrize("model", MNIST_MODELS)
def test_one_batch_cpu_run_per_model(model, quick_overrides, tmp_path):
    """The record says what ran (its fields agree with the config) and what came out (its test error is that of
    the final weights on the test split)."""
    cfg = compose_cfg(quick_overrides + [f"model={model}", "epochs=1", "limit_batches=1", "seed=3"])
    result = train(cfg)
    saved = json.loads((Path(cfg.results_dir) / f"{result['run_id']}.json").read_text())
    assert saved == json.loads(json.dumps(result))  # the store holds exactly what train() returned
    assert (saved["status"], saved["dataset"], saved["model"]) == ("finished", "mnist", model)
    assert saved["algorithm"] == "momentum"
    assert (saved["density"], saved["seed"], saved["epochs"], saved["device"]) == (0.05, 3, 1, "cpu")
    assert saved["config"] == OmegaConf.to_container(cfg, resolve=True)
    assert saved["final_density"] == pytest.approx(0.05, abs=1e-3)
    assert saved["git_commit"] and saved["wall_time_s"] > 0
    (epoch,) = saved["history"]
    # one batch, and no mask update after the last epoch
    assert (epoch["epoch"], epoch["step"], epoch["mask_updates"]) == (1, 1, 0)
    assert saved["val_error"] == epoch["val_error"]
    # the reported test error is the final model's on the test split: evaluate the saved weights again
    trainer = Trainer(cfg)
    trainer.model.load_state_dict(
        torch.load(checkpoint_path(Path(cfg.results_dir), result["run_id"]), weights_only=False)["model"]
    )
    loss, error = train_module.evaluate(trainer.model, trainer.data.test, trainer.autocast, trainer.channels_last)
    assert (saved["test_loss"], saved["test_error"]) == (pytest.approx(loss, rel=1e-6), error)


def test_short_run_learns_and_logs_updates(quick_overrides):
    cfg = compose_cfg(quick_overrides + ["epochs=4", "density=0.3", "model=lenet300_100", "batch_size=50"])
    result = train(cfg)
    hist = result["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[0]["pruned"] > 0 and hist[0]["pruned"] == hist[0]["regrown"]
    assert hist[-1]["pruned"] == 0  # no mask update after the last epoch
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert result["test_error"] < 50.0  # generated classes are easy; chance is 90%
    assert hist[0]["prune_rate"] > hist[-1]["prune_rate"]


def run_cli(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m snfs.train` in ``cwd`` (a temporary folder: Hydra writes its outputs/ there)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "snfs.train", *overrides], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "override,needle",
    [
        ("model=resnet9000", "model"),
        ("sparse=magic", "sparse"),
        ("density=1.5", "density=1.5"),
        ("density=0", "density=0"),
        ("precision=fp8", "precision"),
        ("sparse.growth=gradient", "sparse.growth"),
    ],
)
def test_bad_override_exits_nonzero_naming_key(override, needle, tmp_path):
    proc = run_cli(
        override,
        "logger.mode=disabled",
        f"results_dir={tmp_path}",
        "data.root=/nonexistent",
        "dataset.download=false",
        "progress=false",
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    err = proc.stderr
    assert needle in err, err
    if "=" in override and override.split("=")[0] in ("model", "sparse"):
        assert "lenet300_100" in err or "momentum" in err  # the valid choices are listed
    if override.startswith(("precision", "sparse.growth")):
        assert "valid choices" in err
    assert "Traceback" not in err


def test_missing_data_is_a_clear_error(tmp_path):
    proc = run_cli(
        "logger.mode=disabled",
        f"results_dir={tmp_path}",
        f"data.root={tmp_path / 'nodata'}",
        "dataset.download=false",
        "progress=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "MNIST files missing" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_matches_uninterrupted_run(quick_overrides, tmp_path):
    common = quick_overrides + ["epochs=3", "limit_batches=8", "sparse.distribution=erk"]
    straight = train(compose_cfg(common + [f"results_dir={tmp_path / 'a'}"]))
    assert train(compose_cfg(common + [f"results_dir={tmp_path / 'b'}", "stop_after_epoch=1"])) is None
    assert not (tmp_path / "b" / f"{straight['run_id']}.json").exists()
    resumed = train(compose_cfg(common + [f"results_dir={tmp_path / 'b'}", "resume=true"]))
    assert resumed["run_id"] == straight["run_id"]
    a = torch.load(tmp_path / "a" / "checkpoints" / f"{straight['run_id']}.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / f"{straight['run_id']}.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["algorithm"]["masks"]:
        assert torch.equal(a["algorithm"]["masks"][k], b["algorithm"]["masks"][k]), k
    assert resumed["test_error"] == straight["test_error"]
    assert len(resumed["history"]) == 3


def test_resume_rejects_checkpoint_of_other_config(quick_overrides, tmp_path):
    common = quick_overrides + ["epochs=2", "limit_batches=2", "run_id=fixed"]
    assert train(compose_cfg(common + ["stop_after_epoch=1"])) is None
    from snfs.errors import CheckpointError

    with pytest.raises(CheckpointError, match="different model or config"):
        train(compose_cfg(common + ["resume=true", "model=lenet5_caffe"]))
