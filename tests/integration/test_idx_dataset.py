"""A dataset in MNIST's idx format is one YAML file: generated idx files, trained under the YAML's own name.

The YAML lives in a folder added to Hydra's search path, as a user's new conf/dataset/<name>.yaml would.
No network: the one download test replaces torchvision's dataset class.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from support import compose_cfg
from support.idx_dataset import CLASSES, CPU, NAME

from snfs.data import build_data, dataset_info
from snfs.train import train


def own_overrides(quick_overrides: list[str], root: Path) -> list[str]:
    """conftest's fast CPU overrides, with this dataset's root and its YAML's own download/verify values."""
    return [o for o in quick_overrides if not o.startswith(("data.root=", "dataset."))] + [f"data.root={root}"]


def test_yaml_dataset_loads_and_trains_under_its_own_name(tiny, quick_overrides):
    root, select, arrays = tiny
    cfg = compose_cfg(select + own_overrides(quick_overrides, root) + ["epochs=1", "limit_batches=2", "batch_size=16"])
    assert cfg.dataset.name == NAME and cfg.dataset.verify_md5 is True

    data = build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)
    assert data.data_md5 is None  # every file matched its declared md5
    assert (data.num_classes, data.input_shape) == (CLASSES, (1, 28, 28))
    assert len(data.train.inputs) == 90 and len(data.val.inputs) == 30  # val_fraction 0.25 of 120
    expected_test = ((torch.from_numpy(arrays["test_images"]).float() / 255.0) - 0.5) / 0.29
    torch.testing.assert_close(data.test.inputs, expected_test.unsqueeze(1), rtol=0, atol=0)  # the .gz, parsed
    assert torch.equal(data.train.targets, torch.from_numpy(arrays["train_labels"][:90]).long())  # <name>.gz beside
    info = dataset_info(cfg.dataset)
    assert (info.input_shape, info.num_classes) == ((1, 28, 28), CLASSES)
    assert info.present(root) and not info.present(root / "elsewhere")

    result = train(cfg)
    assert result["status"] == "finished" and result["dataset"] == NAME
    assert result["run_id"].startswith(f"{NAME}-") and result["data_md5"] is None
    assert len(result["history"]) == 1


def test_real_mnist_through_the_yaml(real_mnist_root, tmp_path):
    """The shipped mnist.yaml verifies the real files (read-only, never written to) and loads 54k/6k/10k."""
    cfg = compose_cfg(["dataset=mnist", "dataset.download=false"])
    data = build_data(cfg.dataset, str(real_mnist_root), batch_size=100, device=CPU, seed=0)
    assert data.data_md5 is None
    assert (len(data.train.inputs), len(data.val.inputs), len(data.test.inputs)) == (54000, 6000, 10000)
    # a copy with one file gzipped (as <name>.gz beside) still verifies: the md5 is of the unpacked bytes
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(real_mnist_root / "MNIST" / "raw", raw)
    labels = raw / "t10k-labels-idx1-ubyte"
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels.read_bytes()))
    labels.unlink()
    again = build_data(cfg.dataset, str(tmp_path), batch_size=100, device=CPU, seed=0)
    assert again.data_md5 is None and torch.equal(again.test.targets, data.test.targets)
