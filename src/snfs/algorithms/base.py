"""The interface every sparse training algorithm implements.

The training loop calls, in this order and nothing else:

    algo.init_masks()                 once, before the first step (and before a resume loads state)
    loss.backward()
    algo.before_step(step)            gradients exist, weights not yet updated
    optimizer.step()
    algo.after_step(step)             returns a stats dict when it changed the masks, else None
    algo.on_epoch_end(epoch)          returns a stats dict when it changed the masks, else None

``step`` counts optimizer steps from 0; ``epoch`` counts from 0. An algorithm owns its masks
(``self.masks``) and its own random generator, and saves both through ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from snfs.errors import ConfigError
from snfs.masks import DISTRIBUTIONS, MaskState, init_masks, sparse_parameters


@dataclass
class TrainingContext:
    """What an algorithm may know about the run it is part of."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    density: float
    epochs: int
    steps_per_epoch: int
    seed: int
    # One training mini-batch (inputs, targets) on the training device; SNIP scores with it.
    sample_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class SparseAlgorithm:
    """Base class: a fixed random mask re-applied after every step (the ``static`` behaviour)."""

    name = "base"
    #: whether gradients of inactive weights are zeroed before the optimizer step
    mask_gradients = True
    #: which row of the FLOP table in ALGORITHMS.md applies (see snfs.costs): sparse forward and
    #: backward ("static"), a dense weight gradient every step ("momentum"), "dense", or "rigl"
    flops_accounting = "static"

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]):
        self.ctx = ctx
        self.check_config(cfg)
        self.cfg = dict(cfg)
        self.params: dict[str, nn.Parameter] = sparse_parameters(ctx.model, self.cfg.get("dense_layers") or ())
        self.generator = torch.Generator().manual_seed(int(ctx.seed))
        self.masks: MaskState | None = None

    #: option -> valid values, checked before any data is loaded
    choices: dict[str, tuple[str, ...]] = {"distribution": tuple(DISTRIBUTIONS)}
    #: option -> the value an absent option means. Options added after runs were logged belong here:
    #: the results store then matches an old run (without the key) only to configs with this value.
    option_defaults: dict[str, Any] = {}

    def option(self, key: str) -> Any:
        """The configured value of ``key``, or its entry in ``option_defaults``."""
        return self.cfg.get(key, self.option_defaults[key])

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Raise ConfigError for an option value this algorithm does not support."""
        for key, valid in cls.choices.items():
            if key in cfg and cfg[key] not in valid:
                raise ConfigError(f"sparse.{key}={cfg[key]!r} is not valid for sparse={cls.name}; valid choices: {', '.join(valid)}")

    # --- hooks -----------------------------------------------------------------------------
    def init_masks(self) -> MaskState:
        self.masks = init_masks(self.params, self.ctx.density, self.cfg.get("distribution", "uniform"), self.generator)
        self.masks.apply(self.params)
        return self.masks

    def before_step(self, step: int) -> None:
        if self.mask_gradients:
            self.mask_grads()

    def after_step(self, step: int) -> dict | None:
        self.masks.apply(self.params)
        return None

    def on_epoch_end(self, epoch: int) -> dict | None:
        return None

    def flops_options(self) -> dict:
        """Extra arguments of this algorithm's FLOP formula (RigL: its update period)."""
        return {}

    def log_stats(self) -> dict:
        """Scalars worth logging every epoch (e.g. the current prune rate)."""
        return {}

    # --- helpers for subclasses --------------------------------------------------------------
    def mask_grads(self) -> None:
        names = [k for k, p in self.params.items() if p.grad is not None]
        if names:
            masks = self.masks.as_float(self.params[names[0]].grad.dtype)
            torch._foreach_mul_([self.params[k].grad for k in names], [masks[k] for k in names])

    def momentum_buffer(self, name: str) -> torch.Tensor | None:
        state = self.ctx.optimizer.state.get(self.params[name], {})
        return state.get("momentum_buffer")

    # --- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"masks": self.masks.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.masks.load_state_dict(state["masks"])
        self.generator.set_state(state["generator"])
        self.masks.apply(self.params)
