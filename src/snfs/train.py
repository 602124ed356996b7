"""``python -m snfs.train``: train one dataset x model x sparse algorithm, from Hydra configs.

The loop below knows nothing about any single algorithm: it calls the hooks of
``snfs.algorithms.base.SparseAlgorithm`` around the optimizer step and at the end of each epoch.
"""

from __future__ import annotations

import math
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # a bad command line: one line within about a second, before torch loads
    from snfs.command_line import check_command_line

    check_command_line(sys.argv[1:])

import hydra  # noqa: E402
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from snfs import identity
from snfs.checkpoint import check_fingerprint, checkpoint_path, move_aside, read_checkpoint, save_checkpoint
from snfs.config import CONF_DIR, plain, validate_config
from snfs.costs import FlopCounter, layer_macs, speedup_estimate
from snfs.data import build_data
from snfs.distributed import all_reduce_sum, cleanup, init_distributed
from snfs.errors import CheckpointError, ConfigError, DivergenceError, SnfsError
from snfs.evaluation import evaluate
from snfs.execution import RouteSettings
from snfs.logger import RunLogger
from snfs.machine import denormals_flushed, describe, describe_line, flush_denormals, peak_rss_mb
from snfs.malloc import keep_freed_memory
from snfs.models import build_model
from snfs.optim import build_lr_schedule, build_optimizer
from snfs.precision import mixed_precision
from snfs.preemption import Interrupted, Preemption
from snfs.results import (
    RunRecord,
    find_finished,
    git_commit,
    is_dense,
    median_epoch_time,
    result_path,
    summarise_updates,
    wandb_summary,
    write_record,
)
from snfs.sparsifier import Sparsifier
from snfs.threads import resolve_threads

# What defines a run (its identity, hash and run id) lives in snfs.identity, which the report shares.
NON_SEMANTIC_KEYS = identity.NON_SEMANTIC_KEYS


# --- config (checked by snfs.config.validate_config) ----------------------------------------


def make_run_id(cfg: DictConfig, data_md5: dict | None = None) -> str:
    """This run's id (``snfs.identity.run_id``): ``<dataset>-<model>-<algorithm>-d<density>-s<seed>-<hash>``."""
    return identity.run_id(plain(cfg), data_md5)


def config_fingerprint(cfg: DictConfig, data_md5: dict | None = None) -> str:
    """The identity hash of a run: what a checkpoint must have been written by to be resumed."""
    return identity.identity_hash(identity.identity(plain(cfg), data_md5))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; valid choices: auto, cpu")
    return device


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batch: int = 0  # batches done in the current epoch (non-zero only in a preemption checkpoint)
    elapsed_s: float = 0.0  # training wall time before this process
    history: list[dict] = field(default_factory=list)
    partial: dict = field(default_factory=dict)  # the current epoch's running sums, for a mid-epoch resume
    wandb_id: str | None = None


def record_divergence(
    results_dir: Path, run_id: str, cfg: DictConfig, progress: Progress, reason: str, **fields: Any
) -> None:
    """The run as it stood when its loss became non-finite (``fields``: where it ran, its identity)."""
    write_record(
        results_dir,
        RunRecord(
            status="diverged",
            run_id=run_id,
            dataset=cfg.dataset.name,
            model=cfg.model.name,
            algorithm=cfg.sparse.name,
            density=float(cfg.density),
            seed=cfg.seed,
            config=plain(cfg),
            history=progress.history,
            reason=reason,
            epochs_completed=progress.epoch,
            epochs=cfg.epochs,
            wall_time_s=progress.elapsed_s,
            execution=cfg.execution,
            **fields,
        ),
    )


@dataclass
class EpochSums:
    """Running sums of one epoch; saved in a mid-epoch checkpoint so a resumed epoch reports the same."""

    loss_sum: float = 0.0
    wrong: int = 0
    seen: int = 0
    updates: list[dict] = field(default_factory=list)  # mask updates made this epoch, by any hook
    pending_samples: int = 0  # samples trained since the masks last changed (for the FLOP count)


class Trainer:
    """One run, built from its config: ``fit()`` trains (or resumes), checkpoints and reports."""

    def __init__(self, cfg: DictConfig, routes: RouteSettings | None = None):
        """``routes``: which layers ``execution=sparse`` computes through CSR kernels (default: the faster here)."""
        validate_config(cfg)
        self.cfg = cfg
        # the commit of the code this process runs: read now, since the tree may change while it trains
        self.source_commit = git_commit()
        # first: torch's CPU threads copy the setting when they start (snfs.machine.flush_denormals)
        flush = bool(cfg.get("flush_denormal", True))
        if flush_denormals(flush) and flush and not denormals_flushed():
            print(
                "flush_denormal=true reached only some of torch's CPU threads (they started before this run); "
                "call snfs.machine.flush_denormals() before torch's first multi-threaded operation",
                file=sys.stderr,
            )
        self.dist, dist_device = init_distributed(cfg.device)
        self.device = device = dist_device or resolve_device(cfg.device)
        torch.set_num_threads(resolve_threads(cfg.threads))
        if device.type == "cpu" and cfg.get("keep_freed_memory", True):
            keep_freed_memory()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.dist.enabled and cfg.get("sync_bn") and device.type != "cuda":
            raise ConfigError(
                f"sync_bn=true is not valid on device {device.type}; PyTorch's SyncBatchNorm runs on GPUs only"
            )
        if is_dense(cfg.sparse.name, cfg.density) and cfg.density != 1.0:  # the dense baseline trains every weight
            cfg.density = 1.0
        torch.manual_seed(cfg.seed)
        self.data = data = build_data(cfg.dataset, cfg.data.root, cfg.batch_size, device, cfg.seed)
        # unverified data files are part of the run's identity: such a run never fills the declared dataset's rows
        self.data_md5 = getattr(data, "data_md5", None)
        self.run_id = make_run_id(cfg, self.data_md5)
        self.fingerprint = config_fingerprint(cfg, self.data_md5)
        self.results_dir = Path(cfg.results_dir)
        self.ckpt = checkpoint_path(self.results_dir, self.run_id)
        if self.dist.enabled and hasattr(data.train, "shard"):  # loaders with a DistributedSampler shard themselves
            data.train.shard(self.dist.rank, self.dist.world_size)
        model_opts = {k: v for k, v in plain(cfg.model).items() if k != "name"}
        self.model = model = build_model(cfg.model.name, data.num_classes, **model_opts).to(device)
        if hasattr(data.train, "min_share"):  # no rank trains BatchNorm on a single sample (snfs.data.batches)
            from snfs.data.batches import min_training_share

            data.train.min_share = min_training_share(model)
        if self.dist.enabled and cfg.get("sync_bn"):  # BatchNorm statistics over the global batch, as in one process
            self.model = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # On CPUs too: oneDNN's convolutions are faster in this layout (docs/findings/lenet5_caffe_speed.md).
        self.channels_last = bool(cfg.channels_last) and len(data.input_shape) == 3
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg.optim, model)
        n_batches = len(data.train)
        self.steps_per_epoch = n_batches if cfg.limit_batches is None else min(n_batches, int(cfg.limit_batches))
        self.lr_schedule = build_lr_schedule(cfg.optim.schedule, self.optimizer, self.steps_per_epoch, cfg.epochs)

        # the public library object (snfs.sparsify): the CLI and a user's own loop take the same path
        sparse_options = plain(cfg.sparse)
        self.sparse = Sparsifier(
            model,
            self.optimizer,
            sparse_options.pop("name"),
            float(cfg.density),
            epochs=cfg.epochs,
            steps_per_epoch=self.steps_per_epoch,
            seed=cfg.seed,
            execution=cfg.execution,
            routes=routes,
            epoch_end="manual",  # validation first, then the epoch's mask update (end_epoch)
            sample_batch=self.first_training_batch,
            loss_fn=F.cross_entropy,
            # a loader that cannot give every rank the whole first batch: SNIP sums its scores over ranks
            sample_batch_is_shard=self.dist.enabled and not hasattr(data.train, "shard"),
            verbose=self.dist.is_main,
            **sparse_options,
        )
        self.algo, self.execution = self.sparse.algorithm, self.sparse.execution
        self.checkpoint_at: str | None = None  # what the checkpoint of this run holds, once there is one
        self.train_model = model
        if self.dist.enabled:
            ids = [device] if device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

        self.autocast, self.scaler, note = mixed_precision(cfg.precision, device)
        if note:
            self.say(note)
        self.flops = FlopCounter(
            layer_macs(model, data.input_shape), self.algo.flops_accounting, **self.algo.flops_options()
        )
        self.progress = Progress()
        self.epoch_rng = data.train.generator.get_state()  # batch order of the current epoch
        self.config_dict = plain(cfg)
        self.logger: RunLogger | None = None

    # --- pieces -----------------------------------------------------------------------------
    def first_training_batch(self):
        """The first global batch of the run's batch order, without consuming the order (SNIP scores on it).

        Under DDP every rank gets the whole global batch where the loader can give it (in-memory
        tensors), so every rank scores the same samples as a single process would.
        """
        loader = self.data.train
        state = loader.generator.get_state()
        shard = (getattr(loader, "rank", 0), getattr(loader, "world_size", 1))
        if hasattr(loader, "shard"):
            loader.shard(0, 1)
        try:
            batch = next(iter(loader))
        finally:
            loader.generator.set_state(state)
            if hasattr(loader, "shard"):
                loader.shard(*shard)
        return batch

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr)

    def find_checkpoint(self) -> dict | None:
        """This run's checkpoint to resume from, or None (none there, or a finished epoch's without resume=true).

        A checkpoint that cannot be read is never ignored, since the run would overwrite it: it is
        moved aside and the run stops with a CheckpointError that says where it went.
        """
        error = state = None
        if self.ckpt.exists():
            try:
                state = read_checkpoint(self.ckpt)
            except CheckpointError as exc:
                error = exc
        if all_reduce_sum([float(error is not None)], self.device)[0] > 0:  # every rank stops if one cannot read
            where = ""
            if self.dist.is_main and self.ckpt.exists():
                where = f"; it was moved to {move_aside(self.ckpt)} so that this run does not overwrite it"
            raise CheckpointError(
                f"{error or 'cannot read checkpoint ' + str(self.ckpt) + ' on another rank'}{where}. "
                f"Run the same command again to start the run afresh, or move the file back "
                f"once it is repaired"
            ) from None
        if state is None and self.cfg.resume:
            self.say(f"resume=true, but {self.run_id} has no checkpoint at {self.ckpt}: starting from scratch")
        if state is not None and not (self.cfg.resume or state.get("preempted")):
            # starting afresh must not destroy the only copy of earlier training
            epoch = (state.get("progress") or {}).get("epoch", "?")
            if self.dist.is_main:
                self.say(
                    f"{self.run_id} has a checkpoint after epoch {epoch}; resume=false, so this run starts from "
                    f"scratch and that checkpoint was moved to {move_aside(self.ckpt, 'previous')} "
                    "(resume=true continues one)"
                )
            return None
        if state is None:
            return None
        check_fingerprint(self.ckpt, state, self.fingerprint)
        return state

    def resume(self, state: dict) -> None:
        try:
            self._load_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # e.g. written before a state key existed
            raise CheckpointError(
                f"checkpoint {self.ckpt} does not fit this code ({type(exc).__name__}: {exc}); "
                f"delete it or set run_id to start a new run"
            ) from exc
        self.checkpoint_at = self.describe_checkpoint(bool(state.get("preempted")))
        self.say(f"resuming {self.run_id} at epoch {self.progress.epoch + 1}, batch {self.progress.batch}")

    def _load_state(self, state: dict) -> None:
        state = self.sparse.adapt_checkpoint(state)  # written under another execution: converted to this one's
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.sparse.load_state_dict({"algorithm": state["algorithm"], "steps": state["progress"]["step"]})
        self.scaler.load_state_dict(state["scaler"])
        self.flops.load_state_dict(state["flops"])
        self.data.train.generator.set_state(state["rng"]["train_batches"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.progress = Progress(**state["progress"])

    def describe_checkpoint(self, preempted: bool) -> str:
        if preempted and self.progress.batch:
            return f"epoch {self.progress.epoch + 1}, batch {self.progress.batch}"
        return f"end of epoch {self.progress.epoch}"

    def save_checkpoint(self, preempted: bool = False) -> None:
        """Rank 0 writes everything a resume needs; mid-epoch (preempted) it keeps the epoch's batch order."""
        self.checkpoint_at = self.describe_checkpoint(preempted)
        if not self.dist.is_main:
            return
        save_checkpoint(
            self.ckpt,
            {
                "fingerprint": self.fingerprint,
                "run_id": self.run_id,
                "preempted": preempted,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict(),
                "algorithm": self.sparse.state_dict()["algorithm"],
                "scaler": self.scaler.state_dict(),
                "flops": self.flops.state_dict(),
                "rng": {
                    "train_batches": self.epoch_rng if preempted else self.data.train.generator.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                },
                "progress": dict(self.progress.__dict__),
            },
        )

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        global_n: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict | None]:
        """Forward, backward and optimizer step with the algorithm's hooks around the step.

        Returns this rank's mean loss (0 for an empty share), the outputs and the algorithm's update.
        Under DDP, ``global_n`` is the number of samples of the global batch over all ranks.
        """
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.train_model(x)
            if self.dist.enabled:
                # This rank's share of the global mean (DDP averages over ranks): ranks with fewer samples
                # weigh less, an empty share contributes nothing, and the gradient is the global batch's.
                world = self.dist.world_size
                local_sum = F.cross_entropy(out, y, reduction="sum")
                loss = local_sum * (world / float(global_n or len(y) * world))
                reported = local_sum.detach() / max(1, len(y))
            else:
                loss = F.cross_entropy(out, y)
                reported = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler.is_enabled() else loss).backward()
        update = self.sparse.step(self.scaler)
        self.lr_schedule.step()
        self.progress.step += 1
        return reported, out.detach(), update

    def run_epoch(self, epoch: int, preemption: Preemption) -> bool:
        """Train one epoch (or its remainder after a mid-epoch resume); False if a signal stopped it."""
        progress = self.progress
        sums = EpochSums(**progress.partial) if progress.partial else EpochSums()
        skip, progress.batch, progress.partial = progress.batch, 0, {}
        self.epoch_rng = self.data.train.generator.get_state()
        loss_sum = torch.tensor(sums.loss_sum, device=self.device)
        wrong = torch.tensor(sums.wrong, device=self.device, dtype=torch.long)
        densities = self.sparse.layer_densities()
        global_size = getattr(self.data.train, "global_batch_size", None)  # else every rank holds an equal share
        for batch_index, (x, y) in enumerate(self.data.train):
            if batch_index >= self.steps_per_epoch:
                break
            if batch_index < skip:  # resuming mid-epoch: replay the batch order, not the work
                continue
            global_n = global_size(batch_index) if global_size else len(y) * self.dist.world_size
            loss, out, update = self.train_step(x, y, global_n)
            loss_sum += loss.float() * len(y)
            wrong += (out.argmax(1) != y).sum()
            sums.seen += len(y)
            sums.pending_samples += global_n
            if update:
                sums.updates.append(update)
                self.flops.update(densities, sums.pending_samples)
                sums.pending_samples, densities = 0, self.sparse.layer_densities()
            # all-reduced like end_epoch's check, so that every rank stops here together and rank 0 records it
            if progress.step % 100 == 0 and all_reduce_sum([float(not torch.isfinite(loss_sum))], self.device)[0] > 0:
                raise DivergenceError(f"non-finite training loss at step {progress.step} (epoch {epoch + 1})")
            if preemption.signum is not None:
                sums.loss_sum, sums.wrong = float(loss_sum), int(wrong)
                progress.batch, progress.partial = batch_index + 1, dict(sums.__dict__)
                return False
        sums.loss_sum, sums.wrong = float(loss_sum), int(wrong)
        self.flops.update(densities, sums.pending_samples)
        self.end_epoch(epoch, sums)
        return True

    def end_epoch(self, epoch: int, sums: EpochSums) -> dict:
        """Validate, let the algorithm update its masks, log, and record the epoch."""
        loss_sum, wrong, seen = all_reduce_sum([sums.loss_sum, float(sums.wrong), float(sums.seen)], self.device)
        train_loss = loss_sum / max(1.0, seen)
        if not math.isfinite(train_loss):
            raise DivergenceError(f"non-finite training loss ({train_loss}) in epoch {epoch + 1}")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.progress.step,
            "train_loss": train_loss,
            "train_error": 100.0 * wrong / max(1.0, seen),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        if self.data.val is not None:  # before the mask update: the error of the network as trained
            record["val_loss"], record["val_error"] = evaluate(
                self.model, self.data.val, self.autocast, self.channels_last
            )
        record.update(self.algo.log_stats())
        update = self.sparse.epoch_end(epoch)
        if update:
            sums.updates.append(update)
        record.update(summarise_updates(sums.updates))
        record["density"] = self.sparse.density
        record["layer_density"] = self.sparse.layer_densities()
        record["train_flops"], record["flops_ratio"] = self.flops.total, self.flops.ratio
        self.progress.epoch = epoch + 1
        self.progress.history.append(record)
        return record

    # --- the run ------------------------------------------------------------------------------
    def fit(self) -> dict | None:
        """Train to the end (result record) or until stopped by a signal or stop_after_epoch (None)."""
        cfg, progress = self.cfg, self.progress
        found = find_finished(self.results_dir, self.run_id, self.fingerprint)
        if found is not None:  # never train a finished run again (the committed store holds the evidence)
            record, where = found
            self.say(already_finished_message(self.run_id, record, where))
            return record
        state = self.find_checkpoint()
        if state is not None:
            self.resume(state)
            progress = self.progress
        self.logger = RunLogger(
            cfg.logger, self.run_id, self.config_dict, wandb_id=progress.wandb_id, enabled=self.dist.is_main
        )
        progress.wandb_id = self.logger.wandb_id or progress.wandb_id
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=progress.epoch, desc=self.run_id, unit="epoch", dynamic_ncols=True)
        started = time.perf_counter()
        self.train_model.train()
        try:
            with Preemption() as preemption:
                for epoch in range(progress.epoch, cfg.epochs):
                    epoch_started = time.perf_counter()
                    finished = self.run_epoch(epoch, preemption)
                    progress.elapsed_s += time.perf_counter() - started
                    started = time.perf_counter()
                    if not finished:
                        self.save_checkpoint(preempted=True)
                        self.logger.finish()
                        if preemption.signum == getattr(signal, "SIGINT", None):
                            raise Interrupted(
                                f"Ctrl-C: checkpoint saved to {self.ckpt}; run the same command again to resume"
                            )
                        self.say(
                            f"signal {preemption.signum}: checkpoint saved to {self.ckpt}; "
                            f"run the same command again to resume"
                        )
                        preemption.hand_over()
                        return None
                    record = progress.history[-1]
                    record["epoch_time_s"] = time.perf_counter() - epoch_started
                    self.logger.log(
                        {k: v for k, v in record.items() if not isinstance(v, dict)}
                        | {f"layer_density/{k}": v for k, v in record["layer_density"].items()},
                        step=progress.step,
                    )
                    self.save_checkpoint()
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{record['train_loss']:.4f}", val_err=f"{record.get('val_error', float('nan')):.2f}"
                        )
                        bar.update(1)
                    if cfg.stop_after_epoch is not None and cfg.stop_after_epoch <= progress.epoch < cfg.epochs:
                        self.logger.finish()
                        return None
        except DivergenceError as exc:
            if self.dist.is_main:
                record_divergence(
                    self.results_dir,
                    self.run_id,
                    cfg,
                    progress,
                    str(exc),
                    device=str(self.device),
                    world_size=self.dist.world_size,
                    machine=describe_line(self.device),
                    fingerprint=self.fingerprint,
                    data_md5=self.data_md5,
                    peak_rss_mb=peak_rss_mb(),
                    git_commit=self.source_commit,
                )
            self.logger.finish(exit_code=1)
            kept = (
                f"the last good checkpoint ({self.checkpoint_at}) is kept at {self.ckpt}"
                if self.checkpoint_at
                else "no checkpoint of this run was written before it diverged"
            )
            raise DivergenceError(
                f"{exc}; the run is recorded as diverged in {result_path(self.results_dir, self.run_id)}, {kept}"
            ) from None
        finally:
            if bar is not None:
                bar.close()
        return self.finish()

    def finish(self) -> dict:
        """Test the final model and write the run to the results store."""
        cfg, progress, flops = self.cfg, self.progress, self.flops
        test_loss, test_error = evaluate(self.model, self.data.test, self.autocast, self.channels_last)
        record = RunRecord(
            status="finished",
            run_id=self.run_id,
            dataset=cfg.dataset.name,
            model=cfg.model.name,
            algorithm=cfg.sparse.name,
            density=float(cfg.density),
            seed=cfg.seed,
            config=self.config_dict,
            epochs=cfg.epochs,
            history=progress.history,
            git_commit=self.source_commit,
            test_error=test_error,
            test_loss=test_loss,
            val_error=progress.history[-1].get("val_error"),
            final_density=self.sparse.density,
            train_flops=flops.total,
            dense_train_flops=flops.dense_total,
            flops_ratio=flops.ratio,
            wall_time_s=progress.elapsed_s,
            # the measured cost: tables divide the dense row's by this (snfs.report.tables, measured speedup)
            median_epoch_time_s=median_epoch_time(progress.history),
            execution=cfg.execution,
            peak_rss_mb=peak_rss_mb(),
            device=str(self.device),
            world_size=self.dist.world_size,
            machine=describe_line(self.device),
            machine_info=describe(self.device),
            fingerprint=self.fingerprint,
            data_md5=self.data_md5,
        )
        if cfg.speedup_estimate and self.dist.is_main:
            record.speedup_estimate = speedup_estimate(
                self.model, self.data.input_shape, self.sparse.masks, device=self.device
            )
        result = record.to_dict()
        if self.dist.is_main:
            write_record(self.results_dir, record)
        val_error = result["val_error"]
        self.say(
            f"{self.run_id}: test error {test_error:.2f}%, "
            f"val error {'none' if val_error is None else f'{val_error:.2f}%'}, "
            f"density {result['final_density']:.4f}, FLOPs {flops.ratio:.3f} of dense, "
            f"{result['wall_time_s']:.1f} s"
        )
        assert self.logger is not None, "finish() runs after fit() started the logger"
        self.logger.summary(wandb_summary(result))  # what a table read from wandb needs besides the config
        self.logger.finish()
        return result


def already_finished_message(run_id: str, record: dict, where: Path) -> str:
    """Why a finished run is not trained again, and the command that trains it anew in a new store.

    Never "delete the record": the store may be the committed one (results/runs), the evidence of a table.
    """
    error = record.get("test_error")
    error = f"{error:.2f}%" if isinstance(error, (int, float)) else "unknown"
    renamed = "" if where.stem == run_id else f" (under {where.stem}, the id an earlier version gave this config)"
    n = 2
    while Path(f"results/local/runs-{n}").exists():
        n += 1
    command = " ".join(
        [
            "python -m snfs.train",
            *(shlex.quote(a) for a in sys.argv[1:] if not a.startswith("results_dir=")),
            f"results_dir=results/local/runs-{n}",
        ]
    )
    return (
        f"{run_id} has already finished, test error {error}: recorded in {where}{renamed}; not training it again. "
        f"To train it anew into another store: {command}"
    )


def train(cfg: DictConfig) -> dict | None:
    """Run (or resume) one experiment; returns the result record, or None when stopped early."""
    return Trainer(cfg).fit()


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> Any:
    try:
        result = train(cfg)
    except SnfsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        # a divergence is an outcome of its grid point: the sweep's other runs go on (an exit would end them)
        if isinstance(exc, DivergenceError) and in_multirun():
            return None
        sys.exit(2)
    except KeyboardInterrupt as exc:
        # the run is stopping and its checkpoint is saved: a further Ctrl-C while Python shuts down (torch's and
        # wandb's exit hooks) would only print a traceback, or kill the exit status
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(
            str(exc)
            if isinstance(exc, Interrupted)
            else "interrupted: the last finished epoch's checkpoint is kept; add resume=true to the same command to "
            "continue from it",
            file=sys.stderr,
        )
        sys.exit(130)
    finally:
        cleanup()
    return None if result is None else result["test_error"]


if __name__ == "__main__":
    # Call the importable module's ``main``, not this __main__ copy, so that launchers such as
    # submitit pickle it by reference.
    from snfs import train as _module

    _module.main()
