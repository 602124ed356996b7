"""The interface every sparse training algorithm implements.

The training loop calls, in this order and nothing else:

    algo.init_masks()                 once, before the first step (and before a resume loads state)
    loss.backward()
    algo.before_step(step, masked)    gradients exist, weights not yet updated (``masked``: layers whose
                                      gradient the execution computed at active weights only)
    optimizer.step()
    algo.after_step(step)             returns a stats dict when it changed the masks, else None
    algo.on_epoch_end(epoch)          returns a stats dict when it changed the masks, else None

``step`` counts optimizer steps from 0; ``epoch`` counts from 0. An algorithm owns its masks
(``self.masks``) and its own random generator, and saves both through ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from snfs.costs import ROWS as FLOP_ROWS
from snfs.errors import ConfigError
from snfs.masks import (
    DISTRIBUTIONS,
    DropGrowChoice,
    DropGrowResult,
    MaskState,
    drop_and_grow,
    init_masks,
    optimizer_state_tensors,
    sparse_parameters,
)
from snfs.options import REQUIRED, Option, check_options, str_list

#: options every algorithm has
COMMON_OPTIONS = (
    Option("name", str, doc="the registered algorithm name (the conf/sparse/<file> picks it)"),
    Option("label", str, None, nullable=True, doc="a variant's own row name in the tables (e.g. deepr_dsr_code)"),
    Option("dense_layers", list, [], items=str_list, doc="exact parameter names kept dense, e.g. [conv1.weight]"),
)
#: the initial per-layer density, for every algorithm that draws a random initial mask
DISTRIBUTION = Option(
    "distribution",
    str,
    "uniform",
    choices=tuple(DISTRIBUTIONS),
    doc="initial per-layer density: uniform | erk | erdos_renyi",
)


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
    #: the weights that get masks (name -> parameter); None: every Linear/ConvNd weight of ``model``
    params: Mapping[str, nn.Parameter] | None = None

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
    #: this algorithm's row of the FLOP table (docs/algorithms.md; the formulas: snfs.costs.ROWS): sparse
    #: forward and backward ("sparse"), "dense", a dense weight gradient every step
    #: ("dense_weight_gradient"), or one every delta_t steps ("periodic_dense_weight_gradient")
    flops_accounting = "sparse"
    #: whether ``init_masks`` scores on a training batch (``ctx.sample_batch`` and ``ctx.loss_fn``)
    needs_sample_batch = False

    def __init__(self, ctx: TrainingContext, cfg: Mapping[str, Any]):
        self.ctx = ctx
        self.check_config(cfg)
        self.cfg = dict(cfg)
        self.params: dict[str, nn.Parameter] = self._sparse_params(ctx, list(self.cfg.get("dense_layers") or ()))
        self.generator = torch.Generator().manual_seed(int(ctx.seed))
        self._masks: MaskState | None = None

    #: every option this algorithm accepts under ``sparse.``, declared once (snfs.options.Option): the
    #: validator, the defaults of absent keys and the results store's reading of absent keys come from it
    options: tuple[Option, ...] = (*COMMON_OPTIONS, DISTRIBUTION)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [o.name for o in cls.options]
        if len(names) != len(set(names)):
            raise TypeError(f"{cls.__name__} declares an option twice: {names}")
        if cls.flops_accounting not in FLOP_ROWS:
            raise TypeError(
                f"{cls.__name__}.flops_accounting={cls.flops_accounting!r} is not a FLOP accounting row; "
                f"valid: {', '.join(FLOP_ROWS)}"
            )

    @staticmethod
    def _sparse_params(ctx: TrainingContext, dense_layers: list[str]) -> dict[str, nn.Parameter]:
        if ctx.params is None:
            return sparse_parameters(ctx.model, dense_layers)
        unknown = sorted(set(dense_layers) - set(ctx.params))
        if unknown:
            raise ConfigError(f"sparse.dense_layers names unknown layers {unknown}; valid: {', '.join(ctx.params)}")
        return {k: p for k, p in ctx.params.items() if k not in dense_layers}

    def option(self, key: str) -> Any:
        """The configured value of ``key``, or its declared default."""
        if key in self.cfg:
            return self.cfg[key]
        declared = {o.name: o for o in self.options}[key]
        if declared.default is REQUIRED:
            raise ConfigError(f"sparse.{key} must be set for sparse={self.name}")
        return declared.default

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Raise ConfigError for a key this algorithm does not declare, or a value its declaration refuses."""
        if type(cfg).__name__ == "DictConfig":  # from Hydra; the library itself never imports omegaconf
            from snfs.config import plain

            cfg = plain(cfg)
        check_options("sparse", f"sparse={cls.name}", cls.options, cfg)

    @classmethod
    def check_optimizer(cls, cfg: Mapping[str, Any], optim: Mapping[str, Any]) -> None:
        """Raise ConfigError if the optimizer (``optim``: ``describe_optimizer``'s keys) cannot serve ``cfg``."""

    # --- hooks -----------------------------------------------------------------------------
    @property
    def masks(self) -> MaskState:
        """The masks ``init_masks`` made (under ``execution=truly_sparse``, a view of the layers' indices)."""
        if self._masks is None:
            raise RuntimeError(f"sparse={self.name}: the masks do not exist before init_masks()")
        return self._masks

    @masks.setter
    def masks(self, masks: MaskState) -> None:
        self._masks = masks

    def init_masks(self) -> MaskState:
        self.masks = init_masks(self.params, self.ctx.density, self.option("distribution"), self.generator)
        self.masks.apply(self.params)
        return self.masks

    def masks_ready(self) -> None:
        """Called once the initial masks exist (what depends on their counts, e.g. DSR's target)."""

    def built_from_scratch(self, shapes: Mapping[str, torch.Size]) -> None:
        """The sparse linear layers of these ``shapes`` were drawn with no dense weight (``build_from_scratch``,
        PyTorch's default ``nn.Linear`` initialisation): set what ``init_masks`` would have read from them."""

    def before_step(self, step: int, masked_grads: Collection[str] = frozenset()) -> None:
        """``masked_grads``: the layers whose gradient of this step is already zero outside the mask (the
        execution computed it at the active weights only), so that masking it again is skipped."""
        if self.mask_gradients:
            self.mask_grads(skip=masked_grads)

    def after_step(self, step: int) -> dict[str, Any] | None:
        self.masks.apply(self.params)
        return None

    def on_epoch_end(self, epoch: int) -> dict[str, Any] | None:
        return None

    def needs_dense_grad(self, step: int) -> bool:
        """Whether ``step`` needs the dense weight gradient; otherwise only the active positions' is used.

        ``execution=sparse`` computes just what this asks for, so an algorithm that masks its
        gradients gets them restricted to active weights for free.
        """
        return not self.mask_gradients

    def flops_options(self) -> dict[str, Any]:
        """Extra arguments of this algorithm's FLOP formula (RigL: ``delta_t``, its update period)."""
        return {}

    def log_stats(self) -> dict[str, Any]:
        """Scalars worth logging every epoch (e.g. the current prune rate)."""
        return {}

    # --- the mask update as choices over the active values (execution=truly_sparse) -------------
    # An algorithm that declares ``index_space = True`` makes its mask update from these methods, which
    # see only each layer's active values (never a dense weight, mask or score): the truly sparse
    # execution calls them and applies the choice to layers that hold only their active entries
    # (snfs.truly_sparse; docs/findings/truly_sparse.md). Its masked path asks the same schedule.

    #: whether execution=truly_sparse can run this algorithm (it implements the methods below)
    index_space = False
    #: why not, for the one-line error that refuses it
    index_space_refusal = "it is not ported to index space yet"
    #: whether a model's sparse layers other than nn.Linear (convolutions) may keep the masked route in that mode
    mixes_masked_layers = True
    #: where a round refills the freed slots: "random" (uniformly among the inactive positions) or
    #: "gradient" (the inactive positions of largest |dense weight gradient| of the step's mini-batch)
    grows = "random"

    def round_after_step(self, step: int) -> bool:
        """Whether a drop-and-grow round follows optimizer step ``step``."""
        return False

    def round_at_epoch_end(self, epoch: int) -> bool:
        """Whether a drop-and-grow round follows epoch ``epoch`` (from 0)."""
        return False

    def drop_grow_choice(
        self,
        values: Mapping[str, torch.Tensor],
        numels: Mapping[str, int],
        step: int,
        positions: Mapping[str, torch.Tensor] | None = None,
    ) -> DropGrowChoice:
        """One round's choice from each layer's active values (in row-major order of their flat ``positions``)
        and dense size."""
        raise NotImplementedError(f"sparse={self.name} makes no drop-and-grow rounds")

    def to_index_space(self, masks: Any, params: dict[str, nn.Parameter]) -> None:
        """Called once the layers hold only their active entries: ``masks`` answers from their indices and
        ``params`` are their values. Subclasses drop what they kept per dense weight, after this."""
        self.masks = masks
        self.params = params
        if self.ctx.params is not None:
            self.ctx.params = {**self.ctx.params, **params}

    def index_space_before_step(self, step: int, positions: Mapping[str, torch.Tensor]) -> None:
        """``before_step`` with ``params`` the layers' active values (at flat ``positions``): what the algorithm
        adds to their gradients, or reads before the optimizer moves them."""

    def index_space_state_dict(self) -> dict[str, Any]:
        """``state_dict`` with only the masks of layers that stayed masked (the model's state holds the others')."""
        state = self.state_dict()
        if not state.get("masks"):
            state.pop("masks", None)
        return state

    def load_index_space_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_state_dict({"masks": {}, **state})

    def new_weight_values(self) -> Callable[[str, int], torch.Tensor] | None:
        """The start values of grown weights, ``f(layer, n)``; None: 0."""
        return None

    def advance(self, step: int) -> None:
        """Bookkeeping after optimizer step ``step`` that every execution does (e.g. the step its logs report)."""

    # --- helpers for subclasses --------------------------------------------------------------
    def mask_grads(self, skip: Collection[str] = frozenset()) -> None:
        grads = {k: p.grad for k, p in self.params.items() if p.grad is not None and k not in skip}
        if grads:
            masks = self.masks.as_float(next(iter(grads.values())).dtype)
            torch._foreach_mul_(list(grads.values()), [masks[k] for k in grads])

    def momentum(self, name: str) -> torch.Tensor | None:
        """The optimizer's momentum of a weight: SGD's buffer, or Adam's update direction.

        For Adam and AdamW it is ``exp_avg / (sqrt(exp_avg_sq) + 1e-8)``, as the sparse momentum
        authors' code scores by (``get_momentum_for_weight``, sparselearning/core.py). None before
        the optimizer's first step, or for an optimizer with neither.
        """
        state = self.ctx.optimizer.state.get(self.params[name], {})
        if "momentum_buffer" in state:
            return cast(torch.Tensor, state["momentum_buffer"])
        if "exp_avg" in state and "exp_avg_sq" in state:
            return cast(torch.Tensor, state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8))
        return None

    def drop_and_grow(
        self,
        kept: Mapping[str, torch.Tensor],
        grow_counts: Mapping[str, int],
        grow_scores: Mapping[str, torch.Tensor] | None = None,
        new_values: Callable[[str, int], torch.Tensor] | None = None,
        reset_optimizer_state: bool = True,
        **extras: Any,
    ) -> DropGrowResult:
        """``snfs.masks.drop_and_grow`` on this algorithm's masks, weights and optimizer; random growth
        draws from ``self.generator``."""
        return drop_and_grow(
            self.masks,
            self.params,
            self.ctx.optimizer,
            kept,
            grow_counts,
            grow_scores,
            self.generator,
            new_values,
            reset_optimizer_state,
            **extras,
        )

    def optimizer_state(self, name: str) -> list[torch.Tensor]:
        """Every per-weight state tensor the optimizer keeps for this layer (reset where a weight is new)."""
        return optimizer_state_tensors(self.ctx.optimizer, self.params[name])

    # --- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.masks.load_state_dict(state["masks"])
        self.generator.set_state(state["generator"])
        self.masks.apply(self.params)
