"""Checksums and downloads for file-based datasets, with one rule: the user's files are never touched.

* A file that is already there is never overwritten, deleted or moved, whatever its md5: a checksum
  failure is reported (``bad_files_message``: which file, expected and found md5, how to proceed).
* Files we download land in a temporary folder first, are checked there, and only then take their
  final name (``place_file``, which refuses to replace an existing file). A bad download is discarded:
  it was never the user's.

Only the standard library is imported at module level; torchvision is imported when a download runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# torchvision's urlopen has no timeout of its own: without this an unreachable mirror hangs for minutes
TORCHVISION_SOCKET_TIMEOUT_S = 20.0


class FetchError(RuntimeError):
    """One download route failed; the message is a short reason that ends up in the final DatasetError."""


def dataset_error(message: str) -> Exception:
    # snfs.data imports torch; import it only when we actually have to raise.
    from snfs.data import DatasetError

    return DatasetError(message)


def log(msg: str, progress: bool, tag: str = "data") -> None:
    if progress:
        print(f"[{tag}] {msg}", file=sys.stderr, flush=True)


def short(e: BaseException, limit: int = 200) -> str:
    """The gist of an error in one line: a network failure as "cannot reach <host> (<reason>)", else its
    text, cut at a word boundary."""
    text = " ".join(str(e).split()) or type(e).__name__
    unreachable = re.search(r"<urlopen error (.*?)>", text)
    if unreachable:
        host = re.search(r"https?://([^/\s]+)", text)
        return f"cannot reach {host.group(1) if host else 'the server'} ({unreachable.group(1)})"
    if len(text) <= limit:
        return text
    cut = text[: limit - 4].rsplit(" ", 1)[0]
    return cut + " ..."


def created_folders(folder: Path) -> list[Path]:
    """The folders that making ``folder`` would create, deepest first (to remove them again if nothing lands)."""
    out, p = [], Path(folder).absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def remove_if_empty(folders: Iterable[Path]) -> None:
    for p in folders:  # deepest first; a folder that holds anything stays
        try:
            p.rmdir()
        except OSError:
            return


def md5_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def place_file(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a temp file beside ``path``, then give it that name unless a file already has it.

    The final step is a hard link (atomic and never replaces anything), falling back to a rename after an
    existence check on file systems without hard links. A crash never leaves half a file under ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files should be readable like any other
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FetchError(f"{path} appeared while it was being downloaded; it was left as it is") from None
        except OSError:  # no hard links here (some network and FAT file systems)
            if path.exists():
                raise FetchError(f"{path} appeared while it was being downloaded; it was left as it is") from None
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def check_files(folder: Path, expected: Mapping[str, str | None]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """(missing names, {name: (found md5, expected md5)} for present files whose md5 differs); None: unchecked."""
    missing: list[str] = []
    bad: dict[str, tuple[str, str]] = {}
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            missing.append(name)
        elif want is not None:
            got = md5_file(path)
            if got != want:
                bad[name] = (got, want)
    return missing, bad


def bad_files_message(folder: Path, bad: Mapping[str, tuple[str, str]], where: str = "") -> str:
    """One line: each bad file with expected and found md5, that it was left in place, and the two ways on."""
    listed = "; ".join(f"{folder / name}: expected md5 {want}, found {got}" for name, (got, want) in bad.items())
    declared = f" (declared in {where})" if where else ""
    return (
        f"checksum mismatch{declared}: {listed}. The file(s) were left in place. To use them anyway set "
        f"dataset.verify_md5=false (the run is then labelled by the files' actual md5 sums); to download the "
        f"official files instead, remove or rename the file(s) and run again with dataset.download=true."
    )


def download_torchvision(
    folder: Path,
    wanted: Mapping[str, str | None],
    class_name: str,
    class_args: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> list[str]:
    """Fill the files of ``wanted`` that are missing from ``folder`` with a torchvision dataset's download.

    ``torchvision.datasets.<class_name>(tmp, train=..., download=True, **class_args)`` downloads into a
    temporary root beside ``folder`` (torchvision checks its own archives' md5 there); each wanted file
    is then taken from ``<tmp>/<class_name>/raw/``, checked against its declared md5 (None: not
    checked) and moved into ``folder`` without replacing anything. Returns the names placed.
    """
    try:
        import torchvision.datasets as tvd
    except ImportError as e:
        raise FetchError(f"torchvision is not importable ({e})") from e
    cls = getattr(tvd, class_name, None)
    if not isinstance(cls, type):
        raise FetchError(f"torchvision.datasets has no dataset class {class_name!r}")
    todo = [name for name in wanted if not (folder / name).is_file()]
    if not todo:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    placed: list[str] = []
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TORCHVISION_SOCKET_TIMEOUT_S)
    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".torchvision-download-") as tmp:
            src = Path(tmp) / class_name / "raw"  # torchvision's raw_folder
            for train in (True, False):  # some classes (QMNIST) fetch only the split they are built for
                if all((src / name).is_file() for name in todo):
                    break
                log(f"downloading {class_name} ({'train' if train else 'test'}) with torchvision ...", progress)
                try:
                    cls(tmp, train=train, download=True, **dict(class_args or {}))
                except Exception as e:  # URLError, timeouts, torchvision's "not found or corrupted", ...
                    raise FetchError(f"{class_name}: {short(e)}") from e
            for name in todo:
                if not (src / name).is_file():
                    got = sorted(p.name for p in src.iterdir()) if src.is_dir() else []
                    raise FetchError(f"torchvision's {class_name} download has no {name} (it has: {', '.join(got)})")
                want = wanted[name]
                if want is not None and (found := md5_file(src / name)) != want:
                    raise FetchError(f"downloaded {name} has md5 {found}, expected {want}; it was discarded")
                with open(src / name, "rb") as fh:
                    place_file(folder / name, iter(lambda: fh.read(1 << 20), b""))
                placed.append(name)
    finally:
        socket.setdefaulttimeout(old_timeout)
    return placed


def fill_missing(
    folder: Path,
    wanted: Mapping[str, str | None],
    routes: Sequence[tuple[str, Any]],
    what: str,
    manual: str,
    progress: bool = True,
) -> str:
    """Try ``routes`` ((name, fn(folder, missing names, progress))) until no wanted file is missing.

    Returns the route that completed the folder ("cached" if nothing was missing). Raises DatasetError
    naming each failed route and ``manual`` (how to put the files there by hand) when all fail.
    """
    missing = [n for n in wanted if not (folder / n).is_file()]
    if not missing:
        return "cached"
    new_folders = created_folders(folder)  # removed again when every route fails: no empty data/*/raw left behind
    failures: list[str] = []
    for route, fn in routes:
        log(f"{what}: {len(missing)} file(s) missing under {folder}; trying route '{route}' ...", progress)
        try:
            fn(folder, list(missing), progress)
        except Exception as e:
            failures.append(f"{route}: {short(e)}")
            log(f"route '{route}' failed: {short(e)}", progress)
        missing = [n for n in wanted if not (folder / n).is_file()]  # a failed route may have placed some
        if not missing:
            log(f"{what} ready via route '{route}'", progress)
            return route
    remove_if_empty(new_folders)
    tried = "; ".join(failures) if failures else "no download route is configured"
    raise dataset_error(f"could not download {what} ({tried}). {manual}")
