"""What tests of both tiers import: the repository's paths, configs composed with hydra.compose, and small
MNIST-format data. Helpers shared by the two halves of one topic live beside this file (support/<topic>.py).
Fixtures and hooks stay in tests/conftest.py."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[2]
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
            images[i, 4 + 10 * r : 12 + 10 * r, 1 + 5 * col : 5 + 5 * col] += 180
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.clip(images, 0, 255))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


# where real MNIST may be: the shared reference data beside the checkout, or data/, where `make train` fetches it
MNIST_ROOTS = (SHARED_MNIST, REPO / "data")


def find_real_mnist(roots=MNIST_ROOTS) -> Path | None:
    """The first root holding MNIST's four files (uncompressed or .gz), else None."""
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for root in roots:
        raw = Path(root) / "MNIST" / "raw"
        if all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in files):
            return Path(root)
    return None


def compose_cfg(overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))
