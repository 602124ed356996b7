"""Sparse training in any model and training loop: one object that takes over ``optimizer.step()``.

    sparse = snfs.sparsify(model, optimizer, "momentum", density=0.05, epochs=E, steps_per_epoch=len(loader))
    ...
    loss.backward()
    sparse.step()                      # instead of optimizer.step()

Why the object wraps the optimizer step instead of following it (docs/library.md): the
algorithms act on both sides of it. Before the step they mask gradients, add DeepR's L1 and noise
or read RigL's dense gradient; after it they re-mask the weights and rewire. One call keeps that
order right in every loop. Mask updates that the paper ties to epoch ends happen inside the step
that ends an epoch (``epoch_end="auto"``), so a plain loop needs no second call.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from snfs.algorithms import ALGORITHMS, SparseAlgorithm, TrainingContext, build_algorithm, resolve_algorithm
from snfs.errors import ConfigError
from snfs.execution import EXECUTIONS, RouteSettings, build_execution
from snfs.masks import ParamPredicate, dense_parameter_report, select_parameters
from snfs.options import Option
from snfs.results import is_dense

#: the arguments of ``sparsify`` besides the algorithm's own options, checked like the command line's keys
ARGUMENTS = (
    Option("density", float, low=0.0, low_open=True, high=1.0, doc="fraction of the sparse layers' weights active"),
    Option("epochs", int, low=1, doc="training epochs"),
    Option("steps_per_epoch", int, low=1, doc="optimizer steps per epoch"),
    Option("epoch_end", str, choices=("auto", "manual"), doc="epoch-end mask updates inside step() or by epoch_end()"),
    Option("execution", str, choices=EXECUTIONS, doc="how sparse layers compute"),
)
Batch = tuple[torch.Tensor, torch.Tensor]


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer as an algorithm's ``check_optimizer`` reads it (the keys of the ``optim`` config group)."""
    group = optimizer.param_groups[0]
    momentum = group["betas"][0] if "betas" in group else group.get("momentum", 0.0)
    return {
        "name": type(optimizer).__name__.lower(),
        "lr": float(group.get("lr", 0.0)),
        "momentum": float(momentum or 0.0),
        "nesterov": bool(group.get("nesterov", False)),
        "weight_decay": float(group.get("weight_decay", 0.0)),
    }


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel or DataParallel, so that parameter names carry no ``module.``."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Sparsifier:
    """A sparse training algorithm attached to a model and its optimizer; build it with ``snfs.sparsify``.

    State is explicit: the algorithm (its masks and random generator) and the count of optimizer
    steps taken, both in ``state_dict()``. The masks are applied to the model's weights in place,
    so the model stays an ordinary ``nn.Module`` that saves, loads and runs as before.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        algorithm: str = "momentum",
        density: float = 0.05,
        *,
        epochs: int,
        steps_per_epoch: int,
        seed: int = 0,
        include: Iterable[str] | ParamPredicate | None = None,
        exclude: Iterable[str] = (),
        execution: str = "masked",
        routes: RouteSettings | None = None,
        epoch_end: str = "auto",
        sample_batch: Batch | Callable[[], Batch] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        sample_batch_is_shard: bool = False,
        verbose: bool = True,
        **options: Any,
    ):
        given = {
            "density": density,
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "epoch_end": epoch_end,
            "execution": execution,
        }
        for option in ARGUMENTS:  # the command line's declarations and messages (snfs.options)
            why = option.problem(given[option.name])
            if why is not None:
                kind = "a valid choice" if option.choices is not None and why.startswith("valid choices") else "valid"
                raise ConfigError(f"{option.name}={given[option.name]!r} is not {kind}; {why}")
        self.model = model = _unwrap(model)
        self.optimizer = optimizer
        self.steps_per_epoch, self.epoch_end_mode = int(steps_per_epoch), epoch_end
        self.verbose = verbose
        cfg = resolve_algorithm(algorithm, options)  # one line naming the valid algorithms
        # our models name the layers the paper keeps dense (e.g. a first convolution); a user's model may too
        cfg["dense_layers"] = list(cfg.get("dense_layers") or []) + list(getattr(model, "dense_layer_names", []))
        cls = ALGORITHMS.get(cfg["name"])
        cls.check_config(cfg)
        cls.check_optimizer(cfg, describe_optimizer(optimizer))
        if not is_dense(cls.name, density) and cls.needs_sample_batch and (sample_batch is None or loss_fn is None):
            raise ConfigError(
                f"sparse={algorithm} scores connections on one batch before training: pass "
                f"sample_batch=(inputs, targets) and loss_fn"
            )
        batch_of = sample_batch if callable(sample_batch) or sample_batch is None else (lambda: sample_batch)
        ctx = TrainingContext(
            model=model,
            optimizer=optimizer,
            density=float(density),
            epochs=int(epochs),
            steps_per_epoch=int(steps_per_epoch),
            seed=int(seed),
            sample_batch=batch_of,
            loss_fn=loss_fn,
            params=select_parameters(model, include, exclude),
        )
        if sample_batch_is_shard:
            ctx.extra["sample_batch_is_shard"] = True
        self.algorithm: SparseAlgorithm = build_algorithm(ctx, cfg)
        self.algorithm.init_masks()
        device = next(iter(self.algorithm.params.values())).device if self.algorithm.params else torch.device("cpu")
        if execution == "truly_sparse" and _distributed():
            raise ConfigError(
                "execution=truly_sparse does not run under DDP (a layer's parameter changes length when it rewires); "
                "valid choices: masked, sparse"
            )
        self.execution = build_execution(execution, model, self.algorithm, device, routes, optimizer)
        # an execution that holds the sparse layers itself (truly_sparse) runs the algorithm's hooks on them
        self._hooks = self.execution if getattr(self.execution, "runs_algorithm", False) else self.algorithm
        self.steps = 0
        self._masks_changed()
        self.execution.begin_step(self.steps)
        self._say(
            f"snfs: sparse={self.algorithm.name}, density {self.density:.4f} over {len(self.masks)} weights "
            f"(summary() lists them); {dense_parameter_report(model, self.algorithm.params)}"
        )

    # --- the loop -----------------------------------------------------------------------
    def step(self, scaler: torch.amp.GradScaler | None = None, max_grad_norm: float | None = None) -> dict | None:
        """One optimizer step with the algorithm around it; call it instead of ``optimizer.step()``.

        With a ``GradScaler`` (fp16), pass it here instead of calling ``scaler.step`` and
        ``scaler.update``: the gradients are unscaled first (unless you already called
        ``scaler.unscale_``), so the algorithm and the clipping see their true values.
        ``max_grad_norm`` clips after the gradients are masked, so inactive weights do not count.
        Returns the mask update's statistics when the masks changed, else None.
        """
        step = self.steps
        amp = scaler if scaler is not None and scaler.is_enabled() else None
        if amp is not None:
            _unscale_once(amp, self.optimizer)
        self._hooks.before_step(step, self.execution.masked_grads())
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm)
        if amp is not None:
            amp.step(self.optimizer)
            amp.update()
        else:
            self.optimizer.step()
        update = self._hooks.after_step(step)
        self.steps += 1
        if update:
            self._masks_changed()
        if self.epoch_end_mode == "auto" and self.steps % self.steps_per_epoch == 0:
            update = _merge(update, self.epoch_end())
        self.execution.begin_step(self.steps)
        return update

    def epoch_end(self, epoch: int | None = None) -> dict | None:
        """The algorithm's end-of-epoch mask update (``epoch`` counts from 0; default: the epoch just ended).

        Called by ``step()`` itself unless ``epoch_end="manual"``; call it yourself then, e.g. after
        validating, so that the validation sees the network as trained (our trainer does).
        """
        if epoch is None:
            epoch = max(0, self.steps // self.steps_per_epoch - 1)
        update = self._hooks.on_epoch_end(epoch)
        if update:
            self._masks_changed()
        return update

    # --- what users read ---------------------------------------------------------------
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Parameter name -> boolean mask (True: active weight); formed on each call under ``truly_sparse``."""
        return self.algorithm.masks.masks

    @property
    def density(self) -> float:
        """Active weights over all weights of the sparse layers."""
        return self.algorithm.masks.density()

    def layer_densities(self) -> dict[str, float]:
        return self.algorithm.masks.layer_densities()

    def active_counts(self) -> dict[str, int]:
        return self.algorithm.masks.active_counts()

    def mask_checksum(self) -> int:
        """Which weights are active, as one number (ranks compare it under DDP)."""
        return self.algorithm.masks.checksum()

    def summary(self) -> str:
        """A table of the sparse layers: shape, active weights, density."""
        rows = [("layer", "shape", "active", "density")]
        for name, shape in self.algorithm.masks.shapes().items():
            active, numel = self.algorithm.masks.active(name), math.prod(shape)
            rows.append((name, "x".join(map(str, shape)), str(active), f"{active / max(1, numel):.4f}"))
        total = self.algorithm.masks
        rows.append(("all", "", str(total.total_active()), f"{total.density():.4f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
        )

    def __repr__(self) -> str:
        return (
            f"Sparsifier({self.algorithm.name}, density={self.density:.4f}, layers={len(self.masks)}, "
            f"steps={self.steps}, execution={self.execution.name})"
        )

    # --- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The algorithm's state and the steps taken (under ``truly_sparse`` the model's state holds the pattern)."""
        return {"algorithm": self._hooks.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._hooks.load_state_dict(state["algorithm"])
        self.steps = int(state["steps"])
        self._masks_changed()
        self.execution.begin_step(self.steps)

    def export(self, path: str, config: Mapping[str, Any] | None = None) -> int:
        """Write the model with its sparse weights stored sparse (``snfs.save_sparse``); returns the file's bytes."""
        from snfs.export import save_sparse

        meta = {"algorithm": self.algorithm.name, "density": self.density, **(config or {})}
        if hasattr(self.execution, "export"):  # truly_sparse: from the active entries, no dense weight formed
            return self.execution.export(path, meta)
        return save_sparse(self.model, path, self.masks, meta)

    def adapt_checkpoint(self, state: Mapping[str, Any]) -> dict:
        """A training checkpoint (``model``, ``optimizer``, ``algorithm``) written under any execution, in this
        one's layout: a masked run resumes a truly sparse one's checkpoint and the other way round."""
        if hasattr(self.execution, "adapt_checkpoint"):
            return self.execution.adapt_checkpoint(state)
        from snfs.truly_sparse import adapt_masked_checkpoint

        shapes = {name: tuple(mask.shape) for name, mask in self.masks.items()}
        return adapt_masked_checkpoint(state, self.model, shapes)

    # --- internals ---------------------------------------------------------------------
    def _masks_changed(self) -> None:
        if _distributed():  # every rank must hold the same masks; a mismatch stops the run in one line
            from snfs.distributed import assert_same_on_all_ranks

            device = next(iter(self.algorithm.params.values())).device
            assert_same_on_all_ranks(self.mask_checksum(), "mask checksum", device)

    def _say(self, message: str) -> None:
        if not self.verbose:
            return
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            print(message, file=sys.stderr)


def sparsify(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    algorithm: str = "momentum",
    density: float = 0.05,
    **kwargs: Any,
) -> Sparsifier:
    """Attach a sparse training algorithm to ``model`` and ``optimizer``; see ``Sparsifier`` and docs/library.md.

    Keyword arguments: ``epochs`` and ``steps_per_epoch`` (optimizer steps, required), ``seed``,
    ``include``/``exclude`` (which weights are sparse), ``execution`` (``routes``: its ``RouteSettings``),
    ``epoch_end``, ``sample_batch``/``loss_fn`` (SNIP), and the algorithm's own options (``prune_rate=0.5``, ...).
    """
    return Sparsifier(model, optimizer, algorithm, density, **kwargs)


def _unscale_once(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> None:
    """``scaler.unscale_(optimizer)`` unless the user already did (e.g. to clip); a second call would raise."""
    try:
        scaler.unscale_(optimizer)
    except RuntimeError as exc:
        if "already been called" not in str(exc):
            raise


def _merge(first: dict | None, second: dict | None) -> dict | None:
    """One step's statistics when a per-step update and the epoch-end update both changed the masks."""
    if not first or not second:
        return first or second
    return {
        **second,
        "pruned": first.get("pruned", 0) + second.get("pruned", 0),
        "regrown": first.get("regrown", 0) + second.get("regrown", 0),
    }
