"""A tiny dataset in MNIST's idx format declared by one YAML file, for the idx-dataset tests of both tiers."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from support import write_idx

NAME = "tiny_idx"
FOLDER = "TINY"
CLASSES = 5
N_TRAIN, N_TEST = 120, 40
CPU = torch.device("cpu")
# role -> (declared file name, how it is stored): "plain", "gz" (the declared name ends in .gz), or
# "gz-beside" (declared uncompressed, present only as <name>.gz: the md5 is of the unpacked bytes)
LAYOUT = {
    "train_images": ("train-images-idx3-ubyte", "plain"),
    "train_labels": ("train-labels-idx1-ubyte", "gz-beside"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "gz"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "gz"),
}


def idx_bytes(array: np.ndarray, tmp: Path) -> bytes:
    write_idx(tmp, array)
    return tmp.read_bytes()


def make_dataset(root: Path, seed: int = 0) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Random uint8 images and labels as idx files under root/TINY/raw; returns (declared md5s, arrays)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, CLASSES, size=N_TRAIN).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, CLASSES, size=N_TEST).astype(np.uint8),
    }
    raw = root / FOLDER / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for role, (file, stored) in LAYOUT.items():
        content = idx_bytes(arrays[role], root / "scratch")
        if stored == "plain":
            on_disk, path = content, raw / file
        elif stored == "gz":
            on_disk, path = gzip.compress(content), raw / file
        else:
            on_disk, path = gzip.compress(content), raw / f"{file}.gz"
        path.write_bytes(on_disk)
        md5[role] = hashlib.md5(content if stored == "gz-beside" else on_disk).hexdigest()
    (root / "scratch").unlink()
    return md5, arrays


def write_yaml(conf: Path, md5: dict[str, str], name: str = NAME) -> None:
    files = "\n".join(f"  {role}: {{file: {file}, md5: {md5[role]}}}" for role, (file, _) in LAYOUT.items())
    (conf / "dataset").mkdir(parents=True, exist_ok=True)
    (conf / "dataset" / f"{name}.yaml").write_text(
        f"name: {name}\nloader: idx\ntorchvision: null\nfolder: {FOLDER}\nfiles:\n{files}\nshape: [1, 28, 28]\n"
        f"num_classes: {CLASSES}\nval_fraction: 0.25\nmean: [0.5]\nstd: [0.29]\ndownload: false\n"
        f"verify_md5: true\neval_batch_size: 50\n"
    )


@pytest.fixture
def tiny(tmp_path):
    """(data root, Hydra overrides that select the YAML, arrays written)."""
    root = tmp_path / "data"
    md5, arrays = make_dataset(root)
    write_yaml(tmp_path / "conf", md5)
    return root, [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"dataset={NAME}"], arrays
