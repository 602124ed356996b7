"""Generated data of any image shape, for tests, benchmarks and QUICK runs without the real files.

The classes are learnable (each class adds a fixed random pattern), so a short run shows the
loss falling; the numbers mean nothing beyond that.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from snfs.data import DatasetInfo, DataSplits, register
from snfs.data.batches import TensorBatches


def make_fake(n: int, shape: tuple[int, ...], num_classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    patterns = torch.randn((num_classes, *shape), generator=generator)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    images = 0.5 * torch.randn((n, *shape), generator=generator) + patterns[labels]
    return images, labels


def info(cfg: Mapping[str, Any]) -> DatasetInfo:
    return DatasetInfo(input_shape=tuple(int(s) for s in cfg["shape"]), num_classes=int(cfg["num_classes"]),
                       layout="(generated, no files)", present=lambda root: True)


@register("fake", info)
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
