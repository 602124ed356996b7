"""Datasets behind one registry of loaders. A loader builds a ``DataSplits`` with train/val/test batches.

A dataset is a YAML file in conf/dataset/: its ``name`` labels runs and tables, its ``loader`` (default:
the name) picks the Python code here that reads it. One loader serves many datasets: ``idx`` reads any
dataset in MNIST's idx format (MNIST, Fashion-MNIST, KMNIST, EMNIST, QMNIST) from what its YAML declares.

Each loader also answers, without reading the data, what it knows about a dataset (``DatasetInfo``):
sample shape, classes, where the files go, whether they are there. Code outside snfs.data asks
``dataset_info`` rather than knowing datasets by name.

Small datasets (MNIST, CIFAR-10) live whole as tensors on the training device, which gives the
same numbers as a per-sample PIL pipeline at a fraction of its overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from snfs.errors import DatasetError, UnknownChoiceError  # noqa: F401  (DatasetError re-exported)
from snfs.registry import Registry


@dataclass
class DataSplits:
    train: Any  # iterable of (inputs, targets) on the device, with len() = batches per epoch
    val: Any | None
    test: Any
    num_classes: int
    input_shape: tuple[int, ...]
    # md5 of each file read, when any was used without being checked against a declared md5
    # (dataset.verify_md5=false, or md5: null in the YAML); None when every file matched its declared md5
    # (or the loader has no files to check). Unverified data is part of a run's identity.
    data_md5: dict[str, str] | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What a loader knows about a dataset config without loading it."""

    input_shape: tuple[int, ...]
    num_classes: int
    layout: str                        # where the files go, relative to data.root (for messages)
    present: Callable[[Path], bool]    # whether the real files are under this data.root (no download, no hashing)
    quick_real: bool = True            # False: even a QUICK run uses generated data (loading alone is too slow)


@dataclass(frozen=True)
class Loader:
    build: Callable[..., DataSplits]   # (cfg, data_root, batch_size, device, seed) -> DataSplits
    info: Callable[[Mapping[str, Any]], DatasetInfo]


DATASETS: Registry[Loader] = Registry("dataset")


def register(name: str, info: Callable[[Mapping[str, Any]], DatasetInfo]) -> Callable:
    """Decorator: register a builder function as the loader ``name``, with its ``info`` function."""

    def deco(build: Callable[..., DataSplits]) -> Callable[..., DataSplits]:
        DATASETS.register(name)(Loader(build=build, info=info))
        return build

    return deco


def loader_name(cfg: Mapping[str, Any]) -> str:
    return str(cfg.get("loader") or cfg["name"])


def loader_of(cfg: Mapping[str, Any]) -> Loader:
    """The loader of a dataset config: ``loader`` if the YAML has one, else its ``name``."""
    if cfg.get("loader"):
        if cfg["loader"] not in DATASETS:  # name the key the user wrote
            raise UnknownChoiceError("dataset.loader", str(cfg["loader"]), DATASETS.names())
    return DATASETS.get(loader_name(cfg))


def dataset_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    return loader_of(cfg).info(cfg)


def build_data(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    return loader_of(cfg).build(cfg, data_root=data_root, batch_size=batch_size, device=device, seed=seed)


from snfs.data import cifar10, fake, idx, imagenet  # noqa: E402,F401  (registers loaders)
