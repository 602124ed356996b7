"""MNIST as normalised tensors; the last 10% of the training set is the validation split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch

from snfs.data import DATASETS, DataSplits, DatasetError
from snfs.data.batches import TensorBatches
from snfs.data.mnist_fetch import RAW_FILES, ensure_mnist, verify_mnist



def load_mnist_tensors(root: str | Path, download: bool, verify: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images (N, 28, 28) and int64 labels for 'train' and 'test', via torchvision.

    With ``verify`` every file must match the official md5 (``snfs.data.mnist_fetch``).
    """
    from torchvision.datasets import MNIST

    root = Path(root)
    raw = root / "MNIST" / "raw"
    if verify and raw.is_dir():
        verify_mnist(raw)  # deletes (and warns about) any file whose md5 is not the official one
    if download and not all((raw / f).exists() for f in RAW_FILES):
        ensure_mnist(root)
    missing = [f for f in RAW_FILES if not (raw / f).exists()]
    if missing:
        raise DatasetError(
            f"MNIST files missing under {raw}: {', '.join(missing)}. Set data.root to a folder that has "
            f"MNIST/raw/<the four idx files> (uncompressed, as torchvision stores them), or set "
            f"dataset.download=true to fetch them."
        )
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = MNIST(str(root), train=train, download=False)
        out[split] = (ds.data, ds.targets)
    return out


def normalise(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return ((images.float() / 255.0) - mean) / std


@DATASETS.register("mnist")
def mnist(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    tensors = load_mnist_tensors(data_root, bool(cfg.get("download", True)), bool(cfg.get("verify_md5", True)))
    mean, std = float(cfg["mean"][0]), float(cfg["std"][0])
    x_train, y_train = tensors["train"]
    x_test, y_test = tensors["test"]
    x_train = normalise(x_train, mean, std).unsqueeze(1).to(device)
    x_test = normalise(x_test, mean, std).unsqueeze(1).to(device)
    y_train, y_test = y_train.long().to(device), y_test.long().to(device)
    split = int(math.floor((1.0 - float(cfg["val_fraction"])) * len(x_train)))
    gen = torch.Generator().manual_seed(int(seed))
    eval_bs = int(cfg.get("eval_batch_size", 10000))
    train = TensorBatches(x_train[:split], y_train[:split], batch_size, shuffle=True, generator=gen)
    val = TensorBatches(x_train[split:], y_train[split:], eval_bs, shuffle=False) if split < len(x_train) else None
    test = TensorBatches(x_test, y_test, eval_bs, shuffle=False)
    return DataSplits(train=train, val=val, test=test, num_classes=10, input_shape=(1, 28, 28))
