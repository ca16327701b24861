"""Shared fixtures and helpers: the real ImageNet samples, the repository root, model scripts."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NPUZOO_SHARED_DATA", REPO.parent / "shared" / "data"))

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
def repo():
    return REPO


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (real ImageNet validation images), or skip when it is absent."""
    if not (SHARED_DATA / "imagenet-val-10" / "val_label.txt").is_file():
        pytest.skip(f"real ImageNet samples not found at {SHARED_DATA}")
    return SHARED_DATA


def load_model_script(model, name):
    """Import models/<model>/<name>.py by path, as a user runs it (the folders are no package)."""
    path = REPO / "models" / model / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_test_{model}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scratch_repository(root):
    """A copy of the repository in `root` (tracked and new files, not build/ nor reports/
    contents) with .venv linked, so that a test's `make` never touches the real results."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, Path(root) / name
        if name.startswith("reports/") or "__pycache__" in name or not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)  # keep mtimes: the venv stamp stays newer than requirements
    os.symlink(REPO / ".venv", Path(root) / ".venv")
    return Path(root)
