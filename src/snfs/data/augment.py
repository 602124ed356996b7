"""CIFAR-style augmentation on whole batches on the device: reflect-pad, random crop, random flip.

Per image this is exactly torchvision's

    RandomCrop(32, padding=4, padding_mode="reflect"), RandomHorizontalFlip(p=0.5), ToTensor(), Normalize(mean, std)

(the paper's CIFAR-10 training pipeline). Instead of materialising the padded image, each output
pixel reads the source pixel that reflect padding would have put there: padded coordinate ``p``
maps to source coordinate ``p - pad`` mirrored at the borders *without* repeating the edge pixel
(numpy's / torch's ``"reflect"``, which is what torchvision uses for both PIL images and tensors).
Cropping and flipping are pure indexing, so they run on the uint8 images before ``/255`` and the
per-channel normalisation, in torchvision's order, and the result is bitwise the same as the
per-image pipeline. (Reflect padding and cropping only move pixels, so they would commute with a
per-channel affine normalisation anyway.)

The crop offsets (uniform in ``0 .. 2*pad``, both ends included, like ``RandomCrop.get_params``)
and the flips (probability 1/2) are drawn per sample from the train split's CPU generator, so an
epoch's order *and* its augmentation are fixed by that generator's state, which the training loop
checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from snfs.data.batches import TensorBatches, shard_bounds


def reflect_index(size: int, pad: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Source index, for every coordinate of a ``size + 2*pad`` reflect-padded axis."""
    if not 0 <= pad < size:
        raise ValueError(f"reflect padding needs 0 <= pad < size, got pad={pad}, size={size}")
    q = torch.arange(-pad, size + pad, device=device).abs()  # mirror at the left / top border
    return torch.where(q > size - 1, 2 * (size - 1) - q, q)  # mirror at the right / bottom border


def draw_crop_flip(n: int, pad: int, generator: torch.Generator, flip_p: float = 0.5):
    """Per-sample (top, left, flip) for n images, from ``generator`` (CPU)."""
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    flip = torch.rand(n, generator=generator) < flip_p
    return offsets[0], offsets[1], flip


def crop_flip(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Reflect-pad every image of ``images`` (N, C, H, W) by ``pad``, crop H x W at (top, left), flip where asked.

    ``top``, ``left`` are offsets into the padded image (0 .. 2*pad); any dtype works (uint8 too).
    """
    n, c, h, w = images.shape
    device = images.device
    top, left, flip = top.to(device), left.to(device), flip.to(device)
    rows = reflect_index(h, pad, device)[top[:, None] + torch.arange(h, device=device)]  # (N, H)
    cols = reflect_index(w, pad, device)[left[:, None] + torch.arange(w, device=device)]  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    chan = torch.arange(c, device=device)[None, :, None, None]
    return images[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def to_normalised(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32, as torchvision's ToTensor (x / 255) followed by Normalize."""
    return (images.float().div(255.0) - mean) / std


class ImageBatches(TensorBatches):
    """Mini-batches of uint8 images (N, C, H, W) kept on the device, normalised per batch.

    With ``augment=True`` every sample is reflect-padded, randomly cropped and randomly flipped.
    Under DDP the crop/flip parameters are drawn for the whole global batch and each rank takes
    its own slice, so every rank's generator advances the same way and a sample gets the same
    augmentation whatever the world size.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        pad: int = 4,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        super().__init__(images, targets, batch_size, shuffle, generator=generator, rank=rank, world_size=world_size)
        shape = (1, images.shape[1], 1, 1)
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=images.device).view(shape)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=images.device).view(shape)
        self.augment, self.pad = augment, pad

    def _shard(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's contiguous part of the global batch [start, stop) (as TensorBatches does)."""
        if self.world_size == 1:
            return start, stop
        return shard_bounds(start, stop, self.rank, self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.inputs)
        device = self.inputs.device
        order = torch.randperm(n, generator=self.generator).to(device) if self.shuffle else None
        for start, stop in self.batch_bounds():
            params = draw_crop_flip(stop - start, self.pad, self.generator) if self.augment else None
            lo, hi = self._shard(start, stop)
            idx = order[lo:hi] if order is not None else torch.arange(lo, hi, device=device)
            x, y = self.inputs[idx], self.targets[idx]
            if params is not None:
                top, left, flip = (p[lo - start : hi - start] for p in params)
                x = crop_flip(x, top, left, flip, self.pad)
            yield to_normalised(x, self.mean, self.std), y
