"""Mini-batches over tensors that already sit on the training device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def shard_bounds(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous part of the global batch [start, stop): shares differ by at most one sample.

    A share is empty only when the batch has fewer samples than there are ranks; the training step
    weighs each rank's loss by its share, so an empty one contributes nothing.
    """
    base, extra = divmod(stop - start, world_size)
    lo = start + rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class TensorBatches:
    """Shuffled (or ordered) mini-batches of in-memory tensors.

    The permutation comes from an explicit CPU generator whose state is checkpointed, so a
    resumed run sees exactly the batches an uninterrupted run would. Under DDP every rank draws
    the same permutation and takes its own contiguous share of each global batch.

    ``min_share``: a last training batch (``shuffle``) that would give some rank fewer samples is folded
    into the batch before it. The trainer sets 2 for a model with BatchNorm (``min_training_share``),
    which cannot normalise a single sample in training mode (n_train=643, batch 32, 2 ranks: the last 3
    samples would leave one rank one sample); 0, the default, folds nothing. With BatchNorm that is the
    one case where a DDP run batches differently from a single process, which folds only a last batch
    of one sample.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(inputs) != len(targets):
            raise ValueError("inputs and targets differ in length")
        self.inputs, self.targets = inputs, targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator()
        self.transform = transform
        self.rank, self.world_size = rank, world_size
        self.min_share = 0

    def shard(self, rank: int, world_size: int) -> None:
        """Under DDP: this rank trains on its contiguous share of every global batch."""
        self.rank, self.world_size = rank, world_size

    def batch_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) of every global batch, in the order of the permutation."""
        n = len(self.inputs)
        key = (n, self.batch_size, self.world_size, self.shuffle, self.min_share)
        if getattr(self, "_bounds_key", None) != key:  # asked for at every step (global_batch_size)
            bounds = [(start, min(start + self.batch_size, n)) for start in range(0, n, self.batch_size)]
            if self.shuffle and len(bounds) > 1 and (bounds[-1][1] - bounds[-1][0]) // self.world_size < self.min_share:
                bounds[-2:] = [(bounds[-2][0], n)]
            self._bounds_key, self._bounds = key, bounds
        return self._bounds

    def __len__(self) -> int:
        return len(self.batch_bounds())

    def global_batch_size(self, index: int) -> int:
        """Samples in global batch ``index``, over all ranks together."""
        start, stop = self.batch_bounds()[index]
        return stop - start

    @property
    def num_samples(self) -> int:
        return len(self.inputs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.inputs)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.inputs.device)
        else:
            order = None
        for start, stop in self.batch_bounds():
            if self.world_size > 1:
                start, stop = shard_bounds(start, stop, self.rank, self.world_size)
            if order is None:
                x, y = self.inputs[start:stop], self.targets[start:stop]
            else:
                idx = order[start:stop]
                # index_select: the same rows as inputs[idx], several times faster on a CPU
                x, y = self.inputs.index_select(0, idx), self.targets.index_select(0, idx)
            if self.transform is not None:
                x = self.transform(x, self.generator)
            yield x, y


def min_training_share(model: torch.nn.Module) -> int:
    """The fewest samples a rank may train on in one batch: 2 with BatchNorm (one sample has no variance), else 0."""
    has_batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return 2 if has_batch_norm else 0
