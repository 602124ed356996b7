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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snfs.errors import ConfigError, DatasetError, UnknownChoiceError  # noqa: F401  (DatasetError re-exported)
from snfs.options import REQUIRED, Option, check_options
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
    layout: str  # where the files go, relative to data.root (for messages)
    present: Callable[[Path], bool]  # whether the real files are under this data.root (no download, no hashing)
    quick_real: bool = True  # False: even a QUICK run uses generated data (loading alone is too slow)


@dataclass(frozen=True)
class Loader:
    build: Callable[..., DataSplits]  # (cfg, data_root, batch_size, device, seed) -> DataSplits
    info: Callable[[Mapping[str, Any]], DatasetInfo]
    options: tuple[Option, ...] = ()  # the keys of its dataset YAMLs, checked by check_dataset


DATASETS: Registry[Loader] = Registry("dataset")


def register(name: str, info: Callable[[Mapping[str, Any]], DatasetInfo], options: tuple[Option, ...] = ()) -> Callable:
    """Decorator: register a builder function as the loader ``name``, with its ``info`` function and the
    ``options`` its dataset YAMLs may set."""

    def deco(build: Callable[..., DataSplits]) -> Callable[..., DataSplits]:
        DATASETS.register(name)(Loader(build=build, info=info, options=tuple(options)))
        return build

    return deco


def _numbers(positive: bool) -> Callable[[list], str | None]:
    def check(value: list) -> str | None:
        if not value:
            return "must be a non-empty list of numbers"
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"must be a list of numbers; {v!r} is not one"
            if positive and v <= 0:
                return f"must be a list of numbers > 0; {v!r} is not (images are divided by it)"
        return None

    return check


def _positive_ints(value: list) -> str | None:
    if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        return "must be a non-empty list of integers >= 1, e.g. [1, 28, 28]"
    return None


# Keys that several loaders share; a loader lists the ones its YAMLs use (REQUIRED: a YAML must set it).
NAME = Option("name", str, REQUIRED, doc="the label in run ids and tables")
LOADER = Option("loader", str, None, nullable=True, doc="the loader that reads it (default: the name)")
NUM_CLASSES = Option("num_classes", int, REQUIRED, low=2, doc="number of classes")
SHAPE = Option("shape", list, REQUIRED, items=_positive_ints, doc="one sample's shape, e.g. [1, 28, 28]")
VAL_FRACTION = Option(
    "val_fraction",
    float,
    REQUIRED,
    low=0.0,
    high=1.0,
    high_open=True,
    doc="the last fraction of the training set held out for validation (0: none)",
)
MEAN = Option("mean", list, REQUIRED, items=_numbers(positive=False), doc="per-channel mean, after scaling to [0, 1]")
STD = Option("std", list, REQUIRED, items=_numbers(positive=True), doc="per-channel standard deviation (> 0)")
DOWNLOAD = Option("download", bool, True, doc="fetch missing files into data.root")
EVAL_BATCH_SIZE = Option("eval_batch_size", int, 500, low=1, doc="batch size of the validation and test splits")


def check_dataset(cfg: Mapping[str, Any]) -> Loader:
    """The loader of a dataset config, after checking the config's keys against the loader's options.

    Raises ConfigError (one line, naming the key) for a key the loader does not declare, a value of the
    wrong type or out of range, or a required key the YAML leaves out."""
    if not cfg.get("name"):
        raise ConfigError("dataset.name is missing: a dataset YAML must set name (the label in run ids and tables)")
    loader = loader_of(cfg)
    if loader.options:
        owner = f"dataset={cfg['name']}"
        missing = [o for o in loader.options if o.default is REQUIRED and o.name not in cfg]
        if missing:
            raise ConfigError(
                f"dataset.{missing[0].name} is missing from {owner}: its YAML must set it ({missing[0].doc})"
            )
        check_options("dataset", owner, loader.options, cfg)
    return loader


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
