"""Shared fixtures: where the real ImageNet samples are, and the repository root."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NPUZOO_SHARED_DATA", REPO.parent / "shared" / "data"))

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (real ImageNet validation images), or skip when it is absent."""
    if not (SHARED_DATA / "imagenet-val-10" / "val_label.txt").is_file():
        pytest.skip(f"real ImageNet samples not found at {SHARED_DATA}")
    return SHARED_DATA
