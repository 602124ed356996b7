"""Generated CIFAR-10 and ImageNet-layout files for the pipeline tests of both tiers, and their fixtures."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image


def write_fake_cifar10(root: Path, per_batch: int = 10, n_test: int = 20, seed: int = 0):
    """torchvision's CIFAR-10 python layout: five data batches, test_batch and batches.meta (pickles).

    Returns the images (N, 3, 32, 32) uint8 and labels of train (batches in order) and test.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, names, n in (
        ("train", [f"data_batch_{i}" for i in range(1, 6)], per_batch),
        ("test", ["test_batch"], n_test),
    ):
        images, labels = [], []
        for name in names:
            data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)  # rows: R plane, G plane, B plane
            lab = rng.integers(0, 10, size=n).tolist()
            entry = {
                "batch_label": name,
                "labels": lab,
                "data": data,
                "filenames": [f"{name}_{k}.png" for k in range(n)],
            }
            with open(folder / name, "wb") as f:
                pickle.dump(entry, f, protocol=2)
            images.append(data.reshape(n, 3, 32, 32))
            labels += lab
        out[split] = (torch.from_numpy(np.concatenate(images)), torch.tensor(labels))
    meta = {
        "num_cases_per_batch": per_batch,
        "num_vis": 3072,
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


def write_image_tree(base: Path, classes=("cat", "dog"), n_train: int = 5, n_val: int = 3, seed: int = 0) -> Path:
    """<base>/train/<class>/ and <base>/val/<class>/ with random JPEGs and PNGs of assorted sizes."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in classes:
            (base / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                h, w = (int(v) for v in rng.integers(36, 64, size=2))
                img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
                img.save(base / split / c / (f"{c}_{k}.JPEG" if k % 2 == 0 else f"{c}_{k}.png"))
    return base


@pytest.fixture
def skip_md5(monkeypatch):
    """Generated CIFAR files cannot match torchvision's md5 sums; check only that they exist."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_cifar")
    return root, write_fake_cifar10(root)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_imagenet")
    write_image_tree(root / "imagenet")
    return root
