"""One clear line for errors a user can cause (UserError, the `cli` wrapper)."""

import contextlib
import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """An error the user can fix: printed as one line, no traceback, exit status 2."""


class WriteError(UserError, OSError):
    """A file could not be written: one line, exit 2 (an OSError too, for callers of a write)."""


class Problems(contextlib.AbstractContextManager["Problems"]):
    """UserErrors of independent checks (`with problems: check()`), raised as one, a line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        if isinstance(err, UserError):
            self.lines.append(str(err))
            return True
        return False

    def raise_any(self) -> None:
        if self.lines:
            raise UserError("\nerror: ".join(dict.fromkeys(self.lines)))


def cli(main: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command-line entry point: UserError becomes `error: ...` and exit 2."""

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
