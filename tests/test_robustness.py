"""Robustness of the project's shared tooling (issue 10): the dataset step reads a label file
with a byte-order mark; Ctrl-C during the heavy imports of `python3 -m npuzoo.<command>` is one
line and exit 130; atomic_write follows the umask, fails with one line and leaves no temporary
file, and its temporary names match `.*.tmp`.

The same properties of the model folders' scripts (one image definition, BOM-tolerant labels,
NaN warnings, Ctrl-C, umask modes, full disks, refused pickled checkpoints, temporary names)
are tested for every folder by test_model_folders.py.
"""

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npuzoo import dataset
from npuzoo.errors import UserError, WriteError
from npuzoo.files import atomic_write

from helpers import REPO, one_error_line, python

TEMP_NAME = re.compile(r"^\..+\.tmp$")  # what a driver may remove after a SIGKILLed run


def write_image(path, size=(300, 260), seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


# -- 7. a byte-order mark in the label file ---------------------------------------------------

BOM = "\ufeff"


def test_dataset_reads_a_label_file_with_a_bom(tmp_path):
    write_image(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "val_label.txt").write_text(BOM + "ILSVRC2012_val_00000001.JPEG 65\n",
                                            encoding="utf-8")
    labels, images = dataset.check_dataset(str(tmp_path))
    assert labels == {"ILSVRC2012_val_00000001.JPEG": 65} and list(images) == list(labels)


# -- 6. Ctrl-C during the heavy imports -------------------------------------------------------

@pytest.fixture(scope="module")
def interrupting_packages(tmp_path_factory):
    """numpy, onnx and torch stand-ins whose import raises KeyboardInterrupt (a Ctrl-C while the
    real ones load, which takes seconds for torch)."""
    root = tmp_path_factory.mktemp("interrupting")
    for name in ("numpy", "onnx", "torch", "jinja2", "yaml"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text("raise KeyboardInterrupt\n")
    return root


def assert_interrupted(proc):
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr == "error: interrupted\n", proc.stderr


@pytest.mark.parametrize("module, args", [("npuzoo.report", ["compare"]),
                                          ("npuzoo.readme", ["--check"]),
                                          ("npuzoo.dataset", ["prepare", "/nonexistent", "/x"])])
def test_ctrl_c_during_the_imports_of_the_package_commands(module, args, interrupting_packages):
    # `-m` finds npuzoo in the repository (the current directory); the stand-ins shadow the
    # third-party packages its commands import
    env = dict(os.environ, PYTHONPATH=str(interrupting_packages))
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    if module == "npuzoo.dataset":  # imports nothing heavy: it runs, and fails normally
        assert proc.returncode == 2 and proc.stderr.startswith("error: DATA="), proc.stderr
        return
    assert_interrupted(proc)


def test_importing_the_package_installs_no_hook():
    """Imported as a library (tests, a REPL) the package leaves sys.excepthook alone."""
    proc = subprocess.run([sys.executable, "-c", "import sys, npuzoo; "
                           "print(sys.excepthook is sys.__excepthook__)"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "True", proc.stderr


# -- 5. file modes follow the umask -----------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_atomic_write_follows_the_umask(mask, umask, tmp_path):
    umask(mask)
    atomic_write(tmp_path / "a.json", "{}\n")
    atomic_write(tmp_path / "b.bin", b"\x00", "wb")
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]


# -- 6. unwritable folders and full disks: one line, no temporary file ------------------------

def test_atomic_write_failures_are_one_line_and_leave_no_temporary(monkeypatch, tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(WriteError, match=r"a_file is a file") as caught:
        atomic_write(tmp_path / "a_file" / "r.json", "{}")
    assert isinstance(caught.value, UserError) and isinstance(caught.value, OSError)

    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(WriteError, match=r"ro/r.json: cannot write \(Permission denied\); "
                                         r"the folder is not writable"):
        atomic_write(tmp_path / "ro" / "r.json", "{}")
    monkeypatch.undo()

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:1])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    (tmp_path / "full").mkdir()
    with pytest.raises(WriteError, match="No space left on device"):
        atomic_write(tmp_path / "full" / "r.json", "{}")
    assert os.listdir(tmp_path / "full") == []


# -- 9. every temporary name ends in .tmp -----------------------------------------------------

@pytest.fixture
def renames(monkeypatch):
    """Every (source, destination) of os.replace while the test runs."""
    seen = []
    real = os.replace

    def spy(src, dst, *args, **kwargs):
        seen.append((os.fspath(src), os.fspath(dst)))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    return seen


def assert_temporary_names(seen, folder):
    """Each temporary source sits under a `.*.tmp` entry directly in `folder`."""
    assert seen
    for src, dst in seen:
        top = Path(os.path.relpath(src, folder)).parts[0]
        assert TEMP_NAME.match(top), (src, dst)
        assert TEMP_NAME.match(os.path.basename(src)) or src.endswith(".tmp"), src


def test_atomic_write_temporary_names_match_the_pattern(renames, tmp_path):
    atomic_write(tmp_path / "r.json", "{}")
    assert_temporary_names(renames, tmp_path)


# -- issue 19, item 13: what used to end in a traceback ---------------------------------------

@pytest.mark.parametrize("label", ["²", "--5", "٣", "+5"])
def test_a_label_that_is_not_an_ascii_number_is_one_line(tmp_path, label):
    write_image(tmp_path / "val" / "a.JPEG")
    (tmp_path / "val_label.txt").write_text(f"a.JPEG {label}\n", encoding="utf-8")
    one_error_line(python("-m", "npuzoo.dataset", "prepare", tmp_path, tmp_path / "run"),
                   "val_label.txt:1")


def test_a_symlink_loop_in_val_is_one_line(tmp_path):
    write_image(tmp_path / "val" / "a.JPEG")
    os.symlink("loop2.JPEG", tmp_path / "val" / "loop1.JPEG")
    os.symlink("loop1.JPEG", tmp_path / "val" / "loop2.JPEG")
    (tmp_path / "val_label.txt").write_text("a.JPEG 1\n")
    one_error_line(python("-m", "npuzoo.dataset", "prepare", tmp_path, tmp_path / "run"),
                   "loop1.JPEG", "symbolic links")
    one_error_line(python("models/mobilenetv1/preprocess.py", tmp_path / "val",
                           tmp_path / "out"), "loop1.JPEG", "symbolic links")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.bin"))


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1e9", "", "99999999999"])
def test_a_git_timeout_that_is_not_seconds_is_one_line(tmp_path, value):
    proc = python("-m", "npuzoo.source", "fetch", "tresnet", tmp_path / "src",
                  env=dict(os.environ, NPUZOO_GIT_TIMEOUT=value))
    one_error_line(proc, "NPUZOO_GIT_TIMEOUT=")
    assert not (tmp_path / "src").exists() and not (tmp_path / "src.tmp").exists()
