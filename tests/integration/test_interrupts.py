"""Ctrl-C, restarts and precision: a user's interruptions never destroy training, and say what happened."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from support import compose_cfg
from support.interrupts import BASE

from snfs.train import Interrupted, Trainer

STEPS_PER_EPOCH = 7  # ceil(193 / 32)


def cfg(tmp_path, *extra):
    return compose_cfg(BASE + [f"results_dir={tmp_path}", *extra])


def history(result):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in result["history"]]


def test_ctrl_c_checkpoints_and_the_same_command_resumes(tmp_path, monkeypatch):
    straight = Trainer(cfg(tmp_path / "a")).fit()
    real_step = Trainer.train_step

    def step_then_ctrl_c(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        if self.progress.step == STEPS_PER_EPOCH + 3:  # mid-epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    with pytest.raises(Interrupted, match="run the same command again"):
        Trainer(cfg(tmp_path / "b")).fit()
    monkeypatch.setattr(Trainer, "train_step", real_step)
    state = torch.load(tmp_path / "b" / "checkpoints" / "fixed.pt", weights_only=False)
    assert state["preempted"] and state["progress"]["step"] == STEPS_PER_EPOCH + 3
    resumed = Trainer(cfg(tmp_path / "b")).fit()  # the same command, no resume=true needed
    assert history(resumed) == history(straight)
    assert resumed["test_error"] == straight["test_error"]


def test_starting_afresh_moves_an_earlier_checkpoint_aside(tmp_path, capsys):
    Trainer(cfg(tmp_path, "stop_after_epoch=1")).fit()
    ckpt = tmp_path / "checkpoints" / "fixed.pt"
    before = ckpt.read_bytes()
    Trainer(cfg(tmp_path)).fit()  # resume=false: a fresh run
    assert "moved to" in capsys.readouterr().err
    kept = tmp_path / "checkpoints" / "fixed.pt.previous"
    assert kept.read_bytes() == before


def test_a_finished_run_stored_under_an_older_id_is_not_trained_again(tmp_path, capsys, monkeypatch):
    first = Trainer(cfg(tmp_path, "epochs=1")).fit()
    (tmp_path / "fixed.json").rename(tmp_path / "mnist-an-older-run-id-scheme.json")
    monkeypatch.setattr(Trainer, "run_epoch", lambda *a, **k: pytest.fail("trained a finished run again"))
    again = Trainer(cfg(tmp_path, "epochs=1")).fit()
    assert again["test_error"] == first["test_error"]
    assert "mnist-an-older-run-id-scheme.json" in capsys.readouterr().err
