"""Ctrl-C, restarts and precision: a user's interruptions never destroy training, and say what happened."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from support import compose_cfg
from support.interrupts import BASE

from snfs.train import Preemption, Trainer


def test_a_second_ctrl_c_stops_at_once():
    with Preemption() as preemption:
        os.kill(os.getpid(), signal.SIGINT)
        assert preemption.signum == signal.SIGINT  # the first one only asks for a checkpoint
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_bf16_on_cpu_uses_cpu_autocast():
    trainer = Trainer(compose_cfg(BASE + ["precision=bf16", "results_dir=/nonexistent-unused"]))
    with trainer.autocast():
        out = (
            trainer.model.fc1(torch.randn(2, trainer.model.fc1.in_features)) if hasattr(trainer.model, "fc1") else None
        )
    assert out is not None and out.dtype == torch.bfloat16


def test_fp16_on_cpu_says_it_runs_in_fp32(capsys):
    Trainer(compose_cfg(BASE + ["precision=fp16", "results_dir=/nonexistent-unused"]))
    assert "computes in fp32" in capsys.readouterr().err
