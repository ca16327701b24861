"""One clear line for errors a user can cause (UserError, the `cli` wrapper). Writing files
atomically and checksumming them is npuzoo/files.py's."""

import functools
import sys


class UserError(Exception):
    """An error the user can fix: printed as one line, no traceback, exit status 2."""


class WriteError(UserError, OSError):
    """A file could not be written (folder not writable, disk full, ...): one line, exit 2.

    Also an OSError, so callers that handle OSError from a write keep working."""


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
