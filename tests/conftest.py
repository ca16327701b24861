"""Shared fixtures: the real ImageNet samples, the repository root, a scratch copy of it.
Plain helpers are in tests/helpers.py."""

import os
import sys
from pathlib import Path

import pytest

from helpers import REPO, SHARED_DATA, scratch_repository

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Run under `make test`, the tests would hand their own `make` calls the parent's MAKEFLAGS
# (its command-line variables, such as PYTEST_ARGS, which `make <model>` refuses) and
# MAKELEVEL (which turns on "make[1]: Entering directory" lines): each test's make starts
# as a user's would, from a shell.
for _name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES",
              "NPUZOO_COMMAND_LINE", "NPUZOO_MAKE_VARIABLES"):
    os.environ.pop(_name, None)

# The tests' `make <model>` runs: perf loops of LOOP calls, not the default 3 seconds.
os.environ.setdefault("PERF_SECONDS", "0")
# ... and model.yaml's engine without the tuning pass (tests/test_tune.py tests the tuning).
os.environ.setdefault("TUNE", "0")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real ImageNet validation images), or skip when it is absent."""
    if not (SHARED_DATA / "imagenet-val-10" / "val_label.txt").is_file():
        pytest.skip(f"real ImageNet samples not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository for one test module's `make` runs (helpers.scratch_repository)."""
    return scratch_repository(tmp_path_factory.mktemp("repo") / "repo")
