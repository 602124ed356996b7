"""Datasets behind one registry. A builder returns a ``DataSplits`` with train/val/test batches.

Small datasets (MNIST, CIFAR-10) live whole as tensors on the training device, which gives the
same numbers as a per-sample PIL pipeline at a fraction of its overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from snfs.errors import DatasetError  # noqa: F401  (re-exported)
from snfs.registry import Registry

DATASETS: Registry = Registry("dataset")


@dataclass
class DataSplits:
    train: Any  # iterable of (inputs, targets) on the device, with len() = batches per epoch
    val: Any | None
    test: Any
    num_classes: int
    input_shape: tuple[int, ...]


def build_data(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    return DATASETS.get(cfg["name"])(cfg, data_root=data_root, batch_size=batch_size, device=device, seed=seed)


from snfs.data import cifar10, fake, imagenet, mnist  # noqa: E402,F401  (registers builders)
