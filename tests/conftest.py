"""Shared fixtures: configs composed with hydra.compose, and small MNIST-format data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_MNIST = REPO.parent / "shared" / "data"


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as MNIST ships them: big-endian magic (0x08 = ubyte), dims, then bytes."""
    magic = 0x0800 + array.ndim
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def make_fake_mnist(root: Path, n_train: int = 1000, n_test: int = 200, seed: int = 0) -> Path:
    """Learnable MNIST-shaped data: each class lights up its own block of pixels, plus noise."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 5)
            images[i, 4 + 10 * r: 12 + 10 * r, 1 + 5 * col: 5 + 5 * col] += 180
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.clip(images, 0, 255))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory) -> Path:
    return make_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


@pytest.fixture(scope="session")
def real_mnist_root() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real MNIST not present at ../shared/data")
    return SHARED_MNIST


def compose_cfg(overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


@pytest.fixture
def quick_overrides(fake_mnist_root, tmp_path) -> list[str]:
    """A fast CPU run on generated data, nothing written outside tmp_path."""
    return [
        f"data.root={fake_mnist_root}", f"results_dir={tmp_path / 'runs'}", "logger.mode=disabled",
        "progress=false", "device=cpu", "dataset.download=false", "dataset.verify_md5=false",
    ]
