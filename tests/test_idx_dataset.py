"""A dataset in MNIST's idx format is one YAML file: generated idx files, trained under the YAML's own name.

The YAML lives in a folder added to Hydra's search path, as a user's new conf/dataset/<name>.yaml would.
No network: the one download test replaces torchvision's dataset class.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg, write_idx

from snfs.data import DatasetError, build_data, dataset_info
from snfs.errors import UnknownChoiceError
from snfs.train import train

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


def own_overrides(quick_overrides: list[str], root: Path) -> list[str]:
    """conftest's fast CPU overrides, with this dataset's root and its YAML's own download/verify values."""
    return [o for o in quick_overrides if not o.startswith(("data.root=", "dataset."))] + [f"data.root={root}"]


def files_snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


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


def test_bad_checksum_leaves_the_file_and_names_both_sums(tiny, monkeypatch):
    root, select, _ = tiny
    raw = root / FOLDER / "raw"
    victim = raw / "train-images-idx3-ubyte"
    data = bytearray(victim.read_bytes())
    data[500] ^= 0xFF
    victim.write_bytes(bytes(data))
    before = files_snapshot(raw)
    cfg = compose_cfg(select + ["dataset.download=true", "dataset.torchvision=KMNIST"])

    import snfs.data.idx as idx_mod

    monkeypatch.setattr(
        idx_mod, "download_torchvision", lambda *a, **k: pytest.fail("a bad file must not start a download")
    )
    with pytest.raises(DatasetError) as info:
        build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)
    msg = str(info.value)
    expected, found = cfg.dataset.files.train_images.md5, hashlib.md5(bytes(data)).hexdigest()
    assert f"{victim}: expected md5 {expected}, found {found}" in msg
    assert "left in place" in msg and "dataset.verify_md5=false" in msg and "\n" not in msg
    assert files_snapshot(raw) == before  # nothing deleted, moved or rewritten

    # the user's way on: use the files as they are; the run is then labelled by their actual checksums
    cfg = compose_cfg(select + ["dataset.verify_md5=false"])
    loaded = build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)
    assert loaded.data_md5 is not None and loaded.data_md5["train-images-idx3-ubyte"] == found
    assert loaded.data_md5["t10k-images-idx3-ubyte.gz"] == cfg.dataset.files.test_images.md5
    assert set(loaded.data_md5) == {file for file, _ in LAYOUT.values()}
    assert files_snapshot(raw) == before


def test_null_md5_is_unverified_and_recorded(tiny):
    root, select, _ = tiny
    cfg = compose_cfg(select + ["dataset.files.test_labels.md5=null"])
    data = build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)
    on_disk = hashlib.md5((root / FOLDER / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    assert data.data_md5 is not None and data.data_md5["t10k-labels-idx1-ubyte.gz"] == on_disk


@pytest.mark.parametrize("inside", [f"{FOLDER}/raw", FOLDER])
def test_data_root_pointing_into_the_dataset_is_named(tiny, inside):
    root, select, _ = tiny
    cfg = compose_cfg(select)
    with pytest.raises(DatasetError) as info:
        build_data(cfg.dataset, str(root / inside), batch_size=16, device=CPU, seed=0)
    msg = str(info.value)
    assert f"use data.root={root}" in msg and f"CONTAINS {FOLDER}/raw/" in msg and "\n" not in msg
    assert not (root / inside / FOLDER).exists()  # no second copy started inside the first


def test_missing_file_is_downloaded_beside_the_users_files(tiny, monkeypatch):
    """The download goes to a temporary folder; only the missing file is moved in, after its md5 check."""
    root, select, arrays = tiny
    raw = root / FOLDER / "raw"
    src = raw / "t10k-labels-idx1-ubyte.gz"
    official = src.read_bytes()
    src.unlink()
    before = files_snapshot(raw)
    seen = []

    class FakeTorchvisionDataset:  # writes what torchvision would: every file of the dataset under <root>/<class>/raw
        def __init__(self, root, train, download, **kw):
            seen.append((Path(root).parent, train, kw))
            out = Path(root) / "FakeTorchvisionDataset" / "raw"
            out.mkdir(parents=True, exist_ok=True)
            (out / "t10k-labels-idx1-ubyte.gz").write_bytes(payload)
            (out / "train-images-idx3-ubyte").write_bytes(b"not to be used")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FakeTorchvisionDataset", FakeTorchvisionDataset, raising=False)
    cfg = compose_cfg(
        select
        + [
            "dataset.download=true",
            "+dataset.torchvision_args={split: x}",
            "dataset.torchvision=FakeTorchvisionDataset",
        ]
    )

    payload = b"a corrupt download"
    with pytest.raises(
        DatasetError, match=r"could not download tiny_idx .*t10k-labels-idx1-ubyte.gz has md5 \w+, expected"
    ):
        build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)
    assert files_snapshot(raw) == before  # the bad download never got the final name; nothing left behind

    payload = official
    data = build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)
    assert torch.equal(data.test.targets, torch.from_numpy(arrays["test_labels"]).long())
    assert files_snapshot(raw) == {**before, "t10k-labels-idx1-ubyte.gz": official}
    assert seen[0] == (raw, True, {"split": "x"})  # downloaded under raw/, in a temporary folder


def test_unknown_loader_names_the_key(tiny):
    _, select, _ = tiny
    cfg = compose_cfg(select + ["dataset.loader=idxx"])
    with pytest.raises(UnknownChoiceError, match=r"dataset.loader='idxx' is not a valid choice; valid choices: .*idx"):
        build_data(cfg.dataset, "data", batch_size=16, device=CPU, seed=0)


def test_label_outside_num_classes_is_refused(tiny):
    root, select, _ = tiny
    cfg = compose_cfg(select + ["dataset.num_classes=3"])
    with pytest.raises(
        DatasetError, match=r"train-labels-idx1-ubyte has labels 0\.\.4, outside 0\.\.2 \(dataset.num_classes=3\)"
    ):
        build_data(cfg.dataset, str(root), batch_size=16, device=CPU, seed=0)


def test_shipped_idx_yamls_declare_their_files(tmp_path):
    """mnist, fashion_mnist and kmnist compose, and say where their files go, without any data present."""
    for name, folder in (("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")):
        cfg = compose_cfg([f"dataset={name}", "dataset.download=false"])
        assert cfg.dataset.name == name and cfg.dataset.loader == "idx"
        info = dataset_info(cfg.dataset)
        assert info.layout.startswith(f"{folder}/raw/") and not info.present(tmp_path)
        with pytest.raises(DatasetError, match=rf"{folder} files missing under {tmp_path / folder / 'raw'}"):
            build_data(cfg.dataset, str(tmp_path), batch_size=16, device=CPU, seed=0)


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
