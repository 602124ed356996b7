"""Generated data of any image shape, for tests, benchmarks and QUICK runs without the real files.

The classes are learnable (each class adds a fixed random pattern), so a short run shows the
loss falling; the numbers mean nothing beyond that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from snfs.data import LOADER, NAME, NUM_CLASSES, SHAPE, DatasetInfo, DataSplits, register
from snfs.data.batches import TensorBatches
from snfs.options import Option


def make_fake(
    n: int, shape: tuple[int, ...], num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    patterns = torch.randn((num_classes, *shape), generator=generator)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    images = 0.5 * torch.randn((n, *shape), generator=generator) + patterns[labels]
    return images, labels


def info(cfg: Mapping[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        input_shape=tuple(int(s) for s in cfg["shape"]),
        num_classes=int(cfg["num_classes"]),
        layout="(generated, no files)",
        present=lambda root: True,
    )


OPTIONS = (
    NAME,
    LOADER,
    SHAPE,
    NUM_CLASSES,
    Option("n_train", int, 2000, low=1, doc="training samples"),
    Option("n_val", int, 200, low=0, doc="validation samples (0: none)"),
    Option("n_test", int, 500, low=1, doc="test samples"),
    Option("data_seed", int, 0, doc="seed of the generated samples"),
    Option("eval_batch_size", int, 1000, low=1, doc="batch size of the validation and test splits"),
)


@register("fake", info, OPTIONS)
def fake(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    shape = tuple(int(s) for s in cfg["shape"])
    classes = int(cfg["num_classes"])
    gen = torch.Generator().manual_seed(int(cfg.get("data_seed", 0)))
    # one draw for all splits so that they share the class patterns
    n_train, n_val, n_test = (int(cfg[k]) for k in ("n_train", "n_val", "n_test"))
    x, y = make_fake(n_train + n_val + n_test, shape, classes, gen)
    x, y = x.to(device), y.to(device)
    a, b = n_train, n_train + n_val
    eval_bs = int(cfg.get("eval_batch_size", 1000))
    train = TensorBatches(x[:a], y[:a], batch_size, shuffle=True, generator=torch.Generator().manual_seed(int(seed)))
    val = TensorBatches(x[a:b], y[a:b], eval_bs, shuffle=False) if n_val else None
    test = TensorBatches(x[b:], y[b:], eval_bs, shuffle=False)
    return DataSplits(train=train, val=val, test=test, num_classes=classes, input_shape=shape)
