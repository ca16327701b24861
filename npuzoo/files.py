"""The project's one atomic write (every orphan a killed run can leave matches `.*.tmp` in the
target's folder), checksums, locks, links and the order of an input folder."""

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from typing import IO

from npuzoo.errors import UserError, WriteError

WRITE_HINTS = {
    errno.EACCES: "the folder is not writable by this user",
    errno.EPERM: "the folder is not writable by this user",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on {folder}; free some and rerun",
    errno.EDQUOT: "disk quota exceeded; free some space and rerun",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def write_error(path: str, err: OSError) -> WriteError:
    reason = err.strerror or str(err) or type(err).__name__
    hint = WRITE_HINTS.get(err.errno or 0, "").format(
        folder=os.path.dirname(os.path.abspath(path)))
    return WriteError(f"{path}: cannot write ({reason})" + (f"; {hint}" if hint else ""))


def atomic_write(path: str | os.PathLike[str], data: str | bytes, mode: str = "w") -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename; the
    mode a plain open() gives; any OSError becomes a one-line WriteError naming `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise write_error(path, NotADirectoryError(errno.ENOTDIR, f"{folder} is a file"))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        while True:  # a name of its own: .<name>.<pid>.<random>.tmp
            tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                                       f"{secrets.token_hex(4)}.tmp")
            # O_EXCL: a new file of our own; 0o666 & ~umask is applied by the kernel
            with contextlib.suppress(FileExistsError):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def file_digests(path: str, algorithms: tuple[str, ...] = ("md5", "sha256")) -> dict[str, str]:
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_file(path: str) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def locked(path: str, waiting: Callable[[str], str] | None = None) -> Iterator[IO[str]]:
    """An exclusive flock on `path` (made with its folder) while the block runs, waited for after
    saying `waiting(the file's text)`; a process started with its descriptor holds it too."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                handle.seek(0)
                print(waiting(handle.read().strip()), file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def replace_link(target: str, path: str) -> None:
    """A symbolic link `path` -> `target`, replaced atomically when it points elsewhere."""
    if os.path.islink(path) and os.readlink(path) == target:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    os.symlink(target, tmp)
    os.replace(tmp, path)


INPUT_EXTENSIONS = (".bin", ".BIN", ".npy", ".NPY")


def input_files(folder: str) -> list[str]:
    """The .bin/.npy files of a folder (no recursion) in the order ais_bench reads them:
    sorted, then natural-sorted (img_2 before img_10). Sharding follows the same order."""
    if not os.path.isdir(folder):
        raise UserError(f"input dir not found: {folder}")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.endswith(INPUT_EXTENSIONS))
    if not files:
        raise UserError(f"{folder} of input args holds no valid file (valid: *.npy *.NPY *.bin "
                        "*.BIN)")

    # the odd parts of a split are the digit runs
    return sorted(files, key=lambda text: [int(c) if i % 2 else c.lower()
                                           for i, c in enumerate(re.split("([0-9]+)", text))])
