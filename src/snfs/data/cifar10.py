"""CIFAR-10 as uint8 tensors on the training device; the last 10% of the training set is validation.

Training batches get the paper's augmentation (reflect-pad 4, random 32x32 crop, random
horizontal flip) on the device, per sample, from the train split's generator (see
``snfs.data.augment``); every batch is then scaled to [0, 1] and normalised per channel, the
order of torchvision's ``ToTensor()`` + ``Normalize(mean, std)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from snfs.data import DOWNLOAD, LOADER, MEAN, NAME, STD, VAL_FRACTION, DatasetError, DatasetInfo, DataSplits, register
from snfs.data.augment import ImageBatches
from snfs.options import Option

FOLDER = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def how_to_get(root: Path) -> str:
    return (
        f"Set dataset.download=true to fetch it into data.root, or download {TARBALL} from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it in {root} so that "
        f"{root / FOLDER} holds {', '.join(FILES)}; or point data.root at the folder that has {FOLDER}/."
    )


def missing_files(root: Path) -> list[str]:
    return [f for f in FILES if not (root / FOLDER / f).is_file()]


def dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def load_cifar10_tensors(root: str | Path, download: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """uint8 images (N, 3, 32, 32) and int64 labels for 'train' and 'test', via torchvision.

    Raises DatasetError, naming the folder and how to fill it, instead of torchvision's errors.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root).expanduser()
    if download and missing_files(root):
        try:
            CIFAR10(str(root), train=True, download=True)
        except Exception as exc:  # no network, a partial tarball, a full disk, ...
            raise DatasetError(
                f"CIFAR-10 could not be downloaded into {root} ({type(exc).__name__}: {exc}). "
                f"Download {TARBALL} by hand and extract it there, so that {root / FOLDER} holds "
                f"{', '.join(FILES)}."
            ) from None
    missing = missing_files(root)
    if missing:
        raise DatasetError(f"CIFAR-10 files missing under {root / FOLDER}: {', '.join(missing)}. {how_to_get(root)}")
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except (RuntimeError, OSError, EOFError, ValueError) as exc:  # torchvision checks the files' md5 sums
            raise DatasetError(
                f"CIFAR-10 files under {root / FOLDER} are corrupt or incomplete ({exc}). Delete that folder and "
                f"{root / TARBALL} if present, then fetch them again. {how_to_get(root)}"
            ) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, uint8
        out[split] = (images, torch.tensor(ds.targets, dtype=torch.long))
    return out


def info(cfg: Mapping[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        input_shape=(3, 32, 32),
        num_classes=10,
        layout=f"{FOLDER}/",
        present=lambda root: not missing_files(Path(root).expanduser()),
    )


OPTIONS = (
    NAME,
    LOADER,
    VAL_FRACTION,
    MEAN,
    STD,
    DOWNLOAD,
    Option("augment", bool, True, doc="training batches: reflect-pad, random crop, random horizontal flip"),
    Option("crop_padding", int, 4, low=0, doc="reflect padding (pixels per side) before the random crop"),
    Option("eval_batch_size", int, 1000, low=1, doc="batch size of the validation and test splits"),
)


@register("cifar10", info, OPTIONS)
def cifar10(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    tensors = load_cifar10_tensors(data_root, bool(cfg.get("download", True)))
    mean, std = [float(m) for m in cfg["mean"]], [float(s) for s in cfg["std"]]
    x_train, y_train = (t.to(device) for t in tensors["train"])
    x_test, y_test = (t.to(device) for t in tensors["test"])
    split = int(math.floor((1.0 - float(cfg["val_fraction"])) * len(x_train)))
    eval_bs = int(cfg.get("eval_batch_size", 1000))
    rank, world = dist_rank_world()
    train = ImageBatches(
        x_train[:split],
        y_train[:split],
        batch_size,
        shuffle=True,
        mean=mean,
        std=std,
        augment=bool(cfg.get("augment", True)),
        pad=int(cfg.get("crop_padding", 4)),
        generator=torch.Generator().manual_seed(int(seed)),
        rank=rank,
        world_size=world,
    )
    val = None
    if split < len(x_train):
        val = ImageBatches(x_train[split:], y_train[split:], eval_bs, shuffle=False, mean=mean, std=std)
    test = ImageBatches(x_test, y_test, eval_bs, shuffle=False, mean=mean, std=std)
    return DataSplits(train=train, val=val, test=test, num_classes=10, input_shape=(3, 32, 32))
