"""One clear line for errors a user can cause; atomic file writes and file checksums."""

import functools
import hashlib
import os
import sys
import tempfile


class UserError(Exception):
    """An error the user can fix: printed as one line, no traceback, exit status 2."""


def cli(main):
    """Wrap a command-line entry point: UserError becomes `error: ...` and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


def atomic_write(path, data, mode="w"):
    """Write `data` to `path` through a temporary file in the same folder, then rename."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def file_digests(path, algorithms=("md5", "sha256")):
    """Hex digests of a file, read once in 1 MiB blocks."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_file(path):
    return file_digests(path, ("sha256",))["sha256"]
