"""The optimizer and learning-rate schedule of a ``python -m snfs.train`` run (the ``optim`` config group)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from snfs.errors import ConfigError


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.name != "sgd":
        raise ConfigError(f"optim.name={cfg.name!r} is not a valid choice; valid choices: sgd")
    # fused: one pass over each tensor instead of five (SGD's own kernel, the same update; what it saves:
    # docs/findings/sparse_execution.md, "The benchmark")
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        fused=True,
    )


def build_lr_schedule(cfg: DictConfig, optimizer, steps_per_epoch: int, epochs: int):
    """A per-optimizer-step LR schedule; milestones given in epochs are converted to steps."""
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(cfg.every_steps), gamma=cfg.gamma)
    if cfg.name == "multistep":
        steps = [int(e) * steps_per_epoch for e in cfg.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=steps, gamma=cfg.gamma)
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * epochs)
    raise ConfigError(f"optim.schedule.name={cfg.name!r} is not a valid choice; valid choices: step, multistep, cosine")
