"""Mini-batches over tensors that already sit on the training device."""

from __future__ import annotations

from typing import Callable, Iterator

import torch


class TensorBatches:
    """Shuffled (or ordered) mini-batches of in-memory tensors.

    The permutation comes from an explicit CPU generator whose state is checkpointed, so a
    resumed run sees exactly the batches an uninterrupted run would. Under DDP every rank draws
    the same permutation and takes its own contiguous share of each global batch.
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

    def shard(self, rank: int, world_size: int) -> None:
        """Under DDP: this rank trains on its contiguous share of every global batch."""
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return (len(self.inputs) + self.batch_size - 1) // self.batch_size

    @property
    def num_samples(self) -> int:
        return len(self.inputs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.inputs)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.inputs.device)
        else:
            order = None
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if self.world_size > 1:
                share = (stop - start + self.world_size - 1) // self.world_size
                lo = start + self.rank * share
                stop, start = min(stop, lo + share), lo
            if order is None:
                x, y = self.inputs[start:stop], self.targets[start:stop]
            else:
                idx = order[start:stop]
                x, y = self.inputs[idx], self.targets[idx]
            if self.transform is not None:
                x = self.transform(x, self.generator)
            yield x, y
