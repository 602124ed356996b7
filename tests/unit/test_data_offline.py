"""Datasets when their download fails, and where downloads go (issue 26, findings 6 and 7).

Offline, fashion_mnist and kmnist once stopped in a 584-character line whose inner error was cut
mid-word, and left empty data/*/raw folders behind; a mistyped data.root silently became a new folder
with a fresh download in it.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from support import CONF

from snfs.errors import DatasetError

OFFLINE = (
    "Error downloading train-images-idx3-ubyte.gz:\nTried http://fashion-mnist.s3-website.eu-central-1."
    "amazonaws.com/, got:\n<urlopen error [Errno -2] Name or service not known>\n"
)


@pytest.fixture
def offline(monkeypatch):
    import torchvision.datasets

    class Unreachable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(OFFLINE)

    for name in ("FashionMNIST", "KMNIST", "MNIST"):
        monkeypatch.setattr(torchvision.datasets, name, Unreachable)


@pytest.mark.parametrize("dataset", ["fashion_mnist", "kmnist"])
def test_an_offline_download_is_a_short_clear_line_and_leaves_no_folder(dataset, offline, tmp_path, capsys):
    from snfs.data.idx import IdxSpec, load_idx

    spec = IdxSpec.from_cfg(OmegaConf.to_container(OmegaConf.load(CONF / "dataset" / f"{dataset}.yaml")))
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as info:
        load_idx(spec, root, download=True, verify=True)
    text = str(info.value)
    host = "fashion-mnist.s3-website.eu-central-1.amazonaws.com"
    assert "\n" not in text and len(text) - len(str(root)) < 350, text
    assert f"(torchvision: {spec.torchvision}: cannot reach {host} ([Errno -2] Name or service not known))" in text
    assert f"into {root / spec.folder / 'raw'}/" in text and "..." not in text
    assert not root.exists(), f"left behind: {sorted(str(p) for p in root.rglob('*'))}"


def test_a_download_says_where_the_files_go_and_that_data_root_is_new(offline, tmp_path, capsys):
    from snfs.data.idx import IdxSpec, load_idx

    spec = IdxSpec.from_cfg(OmegaConf.to_container(OmegaConf.load(CONF / "dataset" / "fashion_mnist.yaml")))
    root = tmp_path / "dat"  # a typo of data/
    with pytest.raises(DatasetError):
        load_idx(spec, root, download=True, verify=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if "downloading 4 file(s)" in line]
    assert lines == [
        f"[data] fashion_mnist: downloading 4 file(s) into {root / 'FashionMNIST' / 'raw'}/ "
        f"(data.root={root} does not exist yet)"
    ]
    root.mkdir()
    with pytest.raises(DatasetError):
        load_idx(spec, root, download=True, verify=True)
    assert "does not exist yet" not in capsys.readouterr().err
    assert root.is_dir() and not any(root.iterdir())  # the folder the user had stays, empty as it was


def test_short_cuts_a_long_error_at_a_word():
    from snfs.data.fetch import short

    text = short(RuntimeError("word " * 100), limit=50)
    assert len(text) <= 50 and text.endswith("word ...")
