"""npuzoo: shared tooling of the inference zoo (models/ never imports it). Under `python3 -m
npuzoo.<module>` a Ctrl-C anywhere, even during the heavy imports before a command's own handler
exists, prints `error: interrupted` and exits 130 (the hook below)."""

import contextlib
import os
import sys
from collections.abc import Callable
from types import TracebackType

__version__ = "0.1.0"


def _exit_on_interrupt(kind: type[BaseException], value: BaseException,
                       traceback: TracebackType | None,
                       _previous: Callable[..., object] = sys.excepthook) -> None:
    if issubclass(kind, KeyboardInterrupt):
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        try:
            print("error: interrupted", file=sys.stderr, flush=True)
        finally:
            os._exit(130)
    _previous(kind, value, traceback)


# `python3 -m npuzoo.x` runs this file while locating the module, with sys.argv[0] == "-m".
if sys.argv[:1] == ["-m"]:
    sys.excepthook = _exit_on_interrupt
