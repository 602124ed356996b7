"""A dataset in MNIST's idx format is one YAML file: generated idx files, trained under the YAML's own name.

The YAML lives in a folder added to Hydra's search path, as a user's new conf/dataset/<name>.yaml would.
No network: the one download test replaces torchvision's dataset class.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from support import compose_cfg
from support.idx_dataset import CPU, FOLDER, LAYOUT

from snfs.data import DatasetError, build_data, dataset_info
from snfs.errors import UnknownChoiceError


def files_snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


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
