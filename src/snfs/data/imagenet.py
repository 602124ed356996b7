"""ImageNet (ILSVRC2012) from an ImageFolder tree, decoded and augmented by DataLoader workers.

Layout (``dataset.subdir`` defaults to ``imagenet``)::

    <data.root>/<subdir>/train/<wnid>/*.JPEG    1,281,167 images in 1000 class folders
    <data.root>/<subdir>/val/<wnid>/*.JPEG      50,000 images in the same 1000 class folders

Transforms are the standard ResNet ones: train RandomResizedCrop(image_size) +
RandomHorizontalFlip + ToTensor + Normalize; evaluation Resize(val_resize) + CenterCrop(image_size)
+ ToTensor + Normalize. The official val/ folder is the *test* split; the validation split is
None by default, or a fixed random ``val_fraction`` of train/ (evaluated without augmentation).

Reproducibility and resume (``LoaderBatches``): the train split's ``generator`` is the only state
that decides an epoch. Each ``iter()`` draws two numbers from it: one fixes the sample order (the
seed of the RandomSampler's generator, or, under DDP, the value given to
``DistributedSampler.set_epoch``, whose order is a function of run seed + that value) and one
fixes the DataLoader's worker base seed (plus the rank), from which every worker seeds torch's RNG
that the random crops and flips use. So the generator advances by the same amount every epoch and
restoring its state (train.py checkpoints it) reproduces the next epoch's order and, with
``num_workers > 0``, its augmentation. With ``num_workers=0`` the transforms run in the main
process on torch's global RNG, which train.py checkpoints as well. Workers are not persistent:
persistent workers would carry their RNG streams across epochs, which a resumed run cannot see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from snfs.data import LOADER, MEAN, NAME, STD, VAL_FRACTION, DatasetError, DatasetInfo, DataSplits, register
from snfs.data.cifar10 import dist_rank_world
from snfs.options import Option

SEED_HIGH = 2**62  # draws stay well inside int64 after adding a rank or a sampler seed

HOW_TO_GET = (
    "Get ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org (free registration). Extract "
    "the train tar, then each of its 1000 per-class tars into train/<wnid>/; extract the val tar into val/ and "
    "move its 50,000 images into val/<wnid>/ class folders using the validation ground truth (the usual "
    "'valprep.sh' script, e.g. from soumith/imagenetloader.torch, does exactly this). Or set data.root / "
    "dataset.subdir to where such a tree already is."
)


def class_folders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir())  # as ImageFolder.find_classes sees them


def check_imagenet_tree(base: Path) -> None:
    """Raise DatasetError, with the exact paths and what to do, unless ``base`` looks like the ImageFolder tree."""
    layout = f"{base}/train/<class>/*.JPEG and {base}/val/<class>/*.JPEG"
    for split in ("train", "val"):
        if not (base / split).is_dir():
            raise DatasetError(f"ImageNet folder {base / split} does not exist; expected {layout}. {HOW_TO_GET}")
    train_classes = class_folders(base / "train")
    if not train_classes:
        raise DatasetError(f"ImageNet folder {base / 'train'} has no class folders; expected {layout}. {HOW_TO_GET}")
    val_classes = class_folders(base / "val")
    if not val_classes:
        raise DatasetError(
            f"ImageNet folder {base / 'val'} has no class folders (a flat folder of val images is the raw "
            f"ILSVRC2012_img_val.tar layout: sort it into class folders with a valprep script). {HOW_TO_GET}"
        )
    if val_classes != train_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise DatasetError(
            f"ImageNet class folders differ between {base / 'train'} ({len(train_classes)}) and {base / 'val'} "
            f"({len(val_classes)}): only in train: {only_train[:5]}{'...' if len(only_train) > 5 else ''}, "
            f"only in val: {only_val[:5]}{'...' if len(only_val) > 5 else ''}. Labels would not match. {HOW_TO_GET}"
        )


def image_folder(path: Path):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path))
    except (FileNotFoundError, OSError) as exc:  # e.g. a class folder with no images
        raise DatasetError(f"ImageNet folder {path} is incomplete: {exc}. {HOW_TO_GET}") from None


def standard_transforms(image_size: int, val_resize: int, mean: Sequence[float], std: Sequence[float]):
    """(train, eval) torchvision transforms of the ResNet ImageNet recipe."""
    from torchvision import transforms as T

    normalize = T.Normalize(mean=list(mean), std=list(std))
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    evaluation = T.Compose([T.Resize(val_resize), T.CenterCrop(image_size), T.ToTensor(), normalize])
    return train, evaluation


class Transformed(Dataset):
    """Samples ``indices`` (all when None) of an ImageFolder, loaded and passed through ``transform``."""

    def __init__(self, folder, indices: Sequence[int] | None, transform: Callable):
        self.folder, self.transform = folder, transform
        self.indices = list(range(len(folder.samples))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, target = self.folder.samples[self.indices[i]]
        return self.transform(self.folder.loader(path)), target


class LoaderBatches:
    """A DataLoader behind the interface of TensorBatches: device tensors, len(), and ``.generator``.

    ``batch_size`` is the global batch, as for TensorBatches: under DDP each rank loads
    ceil(batch_size / world_size) samples per step.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        device: torch.device,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        distributed: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.dataset, self.device, self.rank = dataset, torch.device(device), rank
        self.generator = torch.Generator().manual_seed(int(seed))
        self._order_generator = torch.Generator()
        self._worker_generator = torch.Generator()
        self.sampler: Sampler
        if distributed:
            self.sampler = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=int(seed)
            )
            per_rank = (batch_size + world_size - 1) // world_size
        else:
            sized = cast(Sized, dataset)  # the ImageFolder datasets built here have a length
            self.sampler = (
                RandomSampler(sized, generator=self._order_generator) if shuffle else SequentialSampler(sized)
            )
            per_rank = batch_size
        self.loader = DataLoader(
            dataset,
            batch_size=per_rank,
            sampler=self.sampler,
            num_workers=int(num_workers),
            pin_memory=bool(pin_memory) and self.device.type == "cuda",
            generator=self._worker_generator,
            drop_last=False,
            persistent_workers=False,
        )

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        return len(cast(Sized, self.sampler))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order_seed, worker_seed = torch.randint(0, SEED_HIGH, (2,), generator=self.generator).tolist()
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(order_seed)  # same draw on every rank: one permutation, disjoint shares
        else:
            self._order_generator.manual_seed(order_seed)
        self._worker_generator.manual_seed(worker_seed + self.rank)  # distinct augmentation streams per rank
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def tree_present(base: Path) -> bool:
    try:
        check_imagenet_tree(base)
    except (DatasetError, OSError):
        return False
    return True


def info(cfg: Mapping[str, Any]) -> DatasetInfo:
    subdir = str(cfg.get("subdir", "imagenet"))
    size = int(cfg.get("image_size", 224))
    # quick_real=False: listing 1.3M files takes longer than a QUICK run, and a ResNet-50 on a CPU is a smoke test
    return DatasetInfo(
        input_shape=(3, size, size),
        num_classes=1000,
        layout=f"{subdir}/train/<wnid>/, {subdir}/val/<wnid>/",
        present=lambda root: tree_present(Path(root).expanduser() / subdir),
        quick_real=False,
    )


OPTIONS = (
    NAME,
    LOADER,
    VAL_FRACTION,
    MEAN,
    STD,
    Option("subdir", str, "imagenet", doc="folder under data.root that holds train/ and val/"),
    Option("image_size", int, 224, low=1, doc="RandomResizedCrop size (train), CenterCrop size (evaluation)"),
    Option("val_resize", int, None, low=1, nullable=True, doc="evaluation: Resize(shorter side) before the crop"),
    Option("split_seed", int, 0, doc="seed of the held-out subset when val_fraction > 0"),
    Option("num_workers", int, 8, low=0, doc="DataLoader worker processes per training process"),
    Option("pin_memory", bool, True, doc="page-locked host batches"),
    Option("eval_batch_size", int, 256, low=1, doc="batch size of the validation and test splits"),
)


@register("imagenet", info, OPTIONS)
def imagenet(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    base = Path(data_root).expanduser() / str(cfg.get("subdir", "imagenet"))
    check_imagenet_tree(base)
    image_size = int(cfg.get("image_size", 224))
    val_resize = cfg.get("val_resize")
    val_resize = int(val_resize) if val_resize is not None else round(image_size * 256 / 224)
    train_tf, eval_tf = standard_transforms(image_size, val_resize, cfg["mean"], cfg["std"])
    train_folder, val_folder = image_folder(base / "train"), image_folder(base / "val")

    # held-out validation: a fixed random subset of train/ (ImageFolder lists samples sorted by class)
    n = len(train_folder.samples)
    n_val = int(round(float(cfg.get("val_fraction", 0.0) or 0.0) * n))
    if n_val:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(cfg.get("split_seed", 0)))).tolist()
        train_idx, val_idx = sorted(perm[n_val:]), sorted(perm[:n_val])
    else:
        train_idx, val_idx = None, []

    rank, world = dist_rank_world()
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    workers, pin = int(cfg.get("num_workers", 8)), bool(cfg.get("pin_memory", True))
    eval_bs = int(cfg.get("eval_batch_size", 256))
    train = LoaderBatches(
        Transformed(train_folder, train_idx, train_tf),
        batch_size,
        shuffle=True,
        device=device,
        num_workers=workers,
        pin_memory=pin,
        seed=seed,
        distributed=distributed,
        rank=rank,
        world_size=world,
    )
    val = None
    if val_idx:
        val = LoaderBatches(
            Transformed(train_folder, val_idx, eval_tf),
            eval_bs,
            shuffle=False,
            device=device,
            num_workers=workers,
            pin_memory=pin,
        )
    test = LoaderBatches(
        Transformed(val_folder, None, eval_tf),
        eval_bs,
        shuffle=False,
        device=device,
        num_workers=workers,
        pin_memory=pin,
    )
    return DataSplits(
        train=train, val=val, test=test, num_classes=len(train_folder.classes), input_shape=(3, image_size, image_size)
    )
