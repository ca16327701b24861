"""Robustness of every model folder's scripts and of the shared helpers (issue 10).

One definition of what an image is; label files with a byte-order mark; Ctrl-C during the heavy
imports; file modes that follow the umask; one-line errors for unwritable folders and full
disks; checkpoints refused by torch's weights_only unpickler reported as such; NaN logits
warned about; every temporary name matching `.*.tmp`. Each check runs over the five model
folders, whose scripts are copies of each other on purpose.
"""

import ast
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, load_model_script
from npuzoo import dataset
from npuzoo.errors import UserError, WriteError, atomic_write

MODELS = ["dpn131", "inceptionv4", "mobilenetv1", "tresnet", "vovnet39"]
TEMP_NAME = re.compile(r"^\..+\.tmp$")  # what a driver may remove after a SIGKILLed run


def script_path(model, name):
    return REPO / "models" / model / f"{name}.py"


def run_script(model, name, *args, env=None, **kwargs):
    return subprocess.run([sys.executable, str(script_path(model, name)), *map(str, args)],
                          capture_output=True, text=True, env=env, **kwargs)


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


# -- 1. one definition of what an image is ----------------------------------------------------

def preprocess_extensions(model):
    """IMAGE_EXTENSIONS as assigned in models/<model>/preprocess.py (parsed, not imported)."""
    tree = ast.parse(script_path(model, "preprocess").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMAGE_EXTENSIONS"
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{model}/preprocess.py assigns no IMAGE_EXTENSIONS")


@pytest.mark.parametrize("model", MODELS)
def test_preprocess_accepts_exactly_the_dataset_image_extensions(model):
    assert preprocess_extensions(model) == dataset.IMAGE_EXTENSIONS


@pytest.mark.parametrize("model", MODELS)
def test_a_labelled_bmp_is_preprocessed_so_the_counts_agree(model, tmp_path):
    data = tmp_path / "data"
    names = ["a.JPEG", "b.png", "c.bmp", "d.BMP"]
    for seed, name in enumerate(names):
        write_image(data / "val" / name, seed=seed)
    (data / "val_label.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    info = dataset.prepare(str(data), str(tmp_path / "run"))
    preprocess = load_model_script(model, "preprocess")
    count, _ = preprocess.preprocess(str(tmp_path / "run" / "val"), str(tmp_path / "prep"),
                                     workers=1)
    bins = sorted(p.name for p in (tmp_path / "prep").iterdir())
    assert count == info["images"] == len(bins) == 4, (count, info["images"], bins)
    assert bins == ["a.bin", "b.bin", "c.bin", "d.bin"]


# -- 7. a byte-order mark in the label file ---------------------------------------------------

BOM = "\ufeff"


def test_dataset_reads_a_label_file_with_a_bom(tmp_path):
    write_image(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    (tmp_path / "val_label.txt").write_text(BOM + "ILSVRC2012_val_00000001.JPEG 65\n",
                                            encoding="utf-8")
    labels, images = dataset.check_dataset(str(tmp_path))
    assert labels == {"ILSVRC2012_val_00000001.JPEG": 65} and list(images) == list(labels)


@pytest.mark.parametrize("model", MODELS)
def test_postprocess_reads_a_label_file_with_a_bom(model, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "ILSVRC2012_val_00000001_0.txt").write_text("0.1 0.9 0.2 \n")
    labels = tmp_path / "val_label.txt"
    labels.write_text(BOM + "ILSVRC2012_val_00000001.JPEG 1\n", encoding="utf-8")
    proc = run_script(model, "postprocess", results, labels, tmp_path / "out", "acc.json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads((tmp_path / "out" / "acc.json").read_text())
    assert table["value"][2] == {"key": "Top1 accuracy", "value": "100.0%"}


# -- 3. NaN logits in the postprocess ---------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_postprocess_warns_once_about_nan_logits_and_keeps_its_json(model, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "img_a_0.txt").write_text("0.1 0.9 0.2 \n")
    (results / "img_b_0.txt").write_text("nan nan nan \n")
    (results / "img_c_0.txt").write_text("0.1 nan 0.2 \n")
    labels = tmp_path / "labels.txt"
    labels.write_text("img_a.JPEG 1\nimg_b.JPEG 0\nimg_c.JPEG 2\n")
    proc = run_script(model, "postprocess", results, labels, tmp_path, "acc.json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), proc.stderr
    assert "2 of 3 result files" in lines[0] and str(results / "img_b_0.txt") in lines[0]
    text = (tmp_path / "acc.json").read_text()
    assert "\n" not in text  # one line, as the ModelZoo's json.dump
    assert [e["key"] for e in json.loads(text)["value"]][:2] == ["Number of images",
                                                                 "Number of classes"]

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "img_a_0.txt").write_text("0.1 0.9 0.2 \n")
    proc = run_script(model, "postprocess", clean, labels, tmp_path, "clean.json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


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


@pytest.mark.parametrize("name", ["preprocess", "pth2onnx", "postprocess"])
@pytest.mark.parametrize("model", MODELS)
def test_ctrl_c_during_the_imports_is_one_line_and_130(model, name, interrupting_packages,
                                                       tmp_path):
    env = dict(os.environ, PYTHONPATH=str(interrupting_packages))
    args = {"preprocess": [tmp_path, tmp_path / "prep"],
            "pth2onnx": ["random", tmp_path / "m.onnx"],
            "postprocess": [tmp_path, tmp_path / "labels.txt", tmp_path, "acc.json"]}[name]
    assert_interrupted(run_script(model, name, *args, env=env, timeout=120))


@pytest.mark.parametrize("module, args", [("npuzoo.report", ["compare"]),
                                          ("npuzoo.readme", ["--check"]),
                                          ("npuzoo.dataset", ["check", "/nonexistent"])])
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


@pytest.mark.parametrize("model", ["mobilenetv1", "dpn131"])  # the two pool flavours
def test_ctrl_c_while_workers_run_is_one_line_and_keeps_complete_outputs(model, tmp_path):
    src = tmp_path / "val"
    first = write_image(src / "img0000.JPEG", size=(500, 400))
    for i in range(1, 400):
        os.link(first, src / f"img{i:04d}.JPEG")
    dst = tmp_path / "prep"
    proc = subprocess.Popen([sys.executable, str(script_path(model, "preprocess")), str(src),
                             str(dst), "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if dst.is_dir() and sum(n.endswith(".bin") for n in os.listdir(dst)) >= 5:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run ended before it could be interrupted")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr == "error: interrupted\n", stderr
    names = os.listdir(dst)
    assert not [n for n in names if not n.endswith(".bin")], names  # no temporary left
    size = (dst / names[0]).stat().st_size
    assert all((dst / n).stat().st_size == size for n in names)  # every output complete


# -- 5. file modes follow the umask -----------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_atomic_write_follows_the_umask(mask, umask, tmp_path):
    umask(mask)
    atomic_write(tmp_path / "a.json", "{}\n")
    atomic_write(tmp_path / "b.bin", b"\x00", "wb")
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.bin"]


def tiny_network(config):
    """A small module with this model's input and output shapes, quick to export."""
    classes = config["classes"]
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(config["input_shape"][0], classes)).eval()


@pytest.mark.parametrize("mask", [0o022, 0o002])
@pytest.mark.parametrize("model", MODELS)
def test_model_scripts_write_files_with_the_umask_mode(model, mask, umask, tmp_path):
    umask(mask)
    want = 0o666 & ~mask
    # preprocess: the .bin files
    write_image(tmp_path / "val" / "a.JPEG")
    preprocess = load_model_script(model, "preprocess")
    preprocess.preprocess(str(tmp_path / "val"), str(tmp_path / "prep"), workers=1)
    assert (tmp_path / "prep" / "a.bin").stat().st_mode & 0o777 == want
    # postprocess: the JSON
    postprocess = load_model_script(model, "postprocess")
    path = postprocess.write_json_atomic({"title": "t", "value": []}, str(tmp_path / "out"),
                                         "acc.json")
    assert os.stat(path).st_mode & 0o777 == want
    # pth2onnx: the .onnx
    pth2onnx = load_model_script(model, "pth2onnx")
    config = pth2onnx.load_config()
    onnx_path = pth2onnx.export(tiny_network(config), tmp_path / "onnx" / "m.onnx", config)
    assert os.stat(onnx_path).st_mode & 0o777 == want
    assert os.listdir(tmp_path / "onnx") == ["m.onnx"]


# -- 6. unwritable folders and full disks: one line, no temporary file ------------------------

@pytest.mark.parametrize("model", MODELS)
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(model, monkeypatch, tmp_path):
    pth2onnx = load_model_script(model, "pth2onnx")
    config = pth2onnx.load_config()

    def disk_full(model, args, f, *rest, **kwargs):
        with open(f, "wb") as handle:  # part of the file is written, then the disk is full
            handle.write(b"\x08" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pth2onnx.torch.onnx, "export", disk_full)
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(pth2onnx.ExportError) as caught:
        pth2onnx.export(tiny_network(config), out, config)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{out}: cannot write (")
    assert "No space left on device" in message and "free some" in message
    assert os.listdir(tmp_path / "out") == []


def test_export_command_on_a_full_disk_prints_one_line(monkeypatch, capsys, tmp_path):
    pth2onnx = load_model_script("mobilenetv1", "pth2onnx")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pth2onnx.torch.onnx, "export", disk_full)
    assert pth2onnx.main(["random", str(tmp_path / "m.onnx")]) == 2
    errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("model", MODELS)
def test_export_into_an_unwritable_place_is_one_line(model, tmp_path):
    pth2onnx = load_model_script(model, "pth2onnx")
    config = pth2onnx.load_config()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(pth2onnx.ExportError, match="cannot write"):
        pth2onnx.export(tiny_network(config), tmp_path / "a_file" / "m.onnx", config)


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


# -- 8. checkpoints the weights_only unpickler refuses ----------------------------------------

class RunsACommand:
    """Unpickled without weights_only, this would run `touch MARKER`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Custom:
    pass


def read_weights(pth2onnx, path, **kwargs):
    reader = getattr(pth2onnx, "read_checkpoint", None) or pth2onnx.read_state_dict
    return reader(str(path), **kwargs)


@pytest.mark.parametrize("model", MODELS)
def test_a_pickled_function_is_reported_as_refused_not_as_not_a_checkpoint(model, tmp_path):
    pth2onnx = load_model_script(model, "pth2onnx")
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "payload": RunsACommand(marker)}, path)
    with pytest.raises(pth2onnx.ExportError) as caught:
        read_weights(pth2onnx, path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: contains a pickled object "
                                                      "that this loader refuses to run")
    assert f"GLOBAL {os.system.__module__}.system" in message  # posix.system here
    assert "save a plain state_dict" in message and "not a torch.save file" not in message
    assert not marker.exists()


@pytest.mark.parametrize("model", MODELS)
def test_a_pickled_custom_class_names_the_global(model, tmp_path):
    pth2onnx = load_model_script(model, "pth2onnx")
    path = tmp_path / "custom.pth"
    torch.save({"w": torch.zeros(2), "extra": Custom()}, path)
    with pytest.raises(pth2onnx.ExportError,
                       match=r"refuses to run \(GLOBAL test_robustness\.Custom; "
                             r"torch\.load\(weights_only=True\)"):
        read_weights(pth2onnx, path)


@pytest.mark.parametrize("model, option", [("mobilenetv1", "published_md5"),
                                           ("vovnet39", "known_md5")])
def test_a_blocked_global_is_refused_even_with_the_published_checksum(model, option, tmp_path):
    import hashlib
    pth2onnx = load_model_script(model, "pth2onnx")
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"payload": RunsACommand(marker)}, path)
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    trusted = digest if option == "published_md5" else {digest}
    with pytest.raises(pth2onnx.ExportError, match="refuses to run"):
        read_weights(pth2onnx, path, **{option: trusted})
    assert not marker.exists()


def test_refused_checkpoint_through_the_command_line(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"payload": RunsACommand(tmp_path / "ran")}, path)
    proc = run_script("mobilenetv1", "pth2onnx", path, tmp_path / "m.onnx", timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "refuses to run" in errors[0] and "GLOBAL" in errors[0]
    assert not (tmp_path / "ran").exists() and sorted(os.listdir(tmp_path)) == ["evil.pth"]


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


@pytest.mark.parametrize("model", MODELS)
def test_every_temporary_name_matches_the_stated_pattern(model, renames, tmp_path):
    for name in ("preprocess", "postprocess", "pth2onnx"):
        doc = load_model_script(model, name).__doc__
        assert "`.*.tmp`" in doc and "Temporary files:" in doc, (model, name)
    write_image(tmp_path / "val" / "a.JPEG")
    load_model_script(model, "preprocess").preprocess(str(tmp_path / "val"),
                                                      str(tmp_path / "prep"), workers=1)
    assert_temporary_names(renames, tmp_path / "prep")
    renames.clear()
    load_model_script(model, "postprocess").write_json_atomic({"value": []},
                                                              str(tmp_path / "out"), "a.json")
    assert_temporary_names(renames, tmp_path / "out")
    renames.clear()
    pth2onnx = load_model_script(model, "pth2onnx")
    config = pth2onnx.load_config()
    pth2onnx.export(tiny_network(config), tmp_path / "onnx" / "m.onnx", config)
    assert_temporary_names(renames, tmp_path / "onnx")


def test_atomic_write_temporary_names_match_the_pattern(renames, tmp_path):
    atomic_write(tmp_path / "r.json", "{}")
    assert_temporary_names(renames, tmp_path)
