"""Shared, content-keyed sets (npuzoo/store.py): made once, verified before reuse (issue 14)."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from npuzoo import config, store

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def hashes(tmp_path, monkeypatch):
    """The stat cache of these tests: in tmp_path, not in the repository's build/."""
    monkeypatch.setattr(store, "HASHES", str(tmp_path / "hashes.json"))


def test_each_model_has_its_own_prep_key_and_an_edit_changes_its_own_alone(tmp_path):
    """No two folders' preprocess.py are the same program (tests/test_model_folders.py), so no
    two models share a set, even where their numbers agree (MobileNetV1 and VoVNet39; with
    AIPP, the four 224-pixel models); editing one folder's script changes its key alone."""
    models = config.model_names()
    for model in models:
        (tmp_path / model).mkdir()
        shutil.copy(os.path.join(config.model_dir(model), "preprocess.py"), tmp_path / model)

    def keys():
        return {(m, uint8): store.prep_key(config.load(m), str(tmp_path / m), "d", uint8)[0]
                for m in models for uint8 in (False, True)}

    before = keys()
    assert len(set(before.values())) == len(before), before
    edited = tmp_path / "vovnet39" / "preprocess.py"
    edited.write_text(edited.read_text() + "\nEDITED = True\n")
    after = keys()
    assert [k for k in before if before[k] != after[k]] == [("vovnet39", False), ("vovnet39", True)]


def test_the_export_key_follows_what_the_export_reads(tmp_path):
    cfg = config.load("vovnet39")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "pth2onnx.py").write_text('"""Doc."""\nx = 1\n')
    (folder / "preprocess.py").write_text("y = 1\n")
    base = store.export_key(cfg, str(folder))
    (folder / "preprocess.py").write_text("y = 2\n")  # another step's script
    (folder / "pth2onnx.py").write_text('"""Other words."""\nx = 1  # a comment\n')
    assert store.export_key(replace(cfg, description="other"), str(folder)) == base
    (folder / "network.py").write_text("z = 1\n")  # a module of the export
    assert store.export_key(cfg, str(folder)) != base
    (folder / "network.py").unlink()
    assert store.export_key(replace(cfg, onnx=replace(cfg.onnx, opset=13)), str(folder)) != base
    assert store.export_key(replace(cfg, weights=replace(cfg.weights, layout="plain")),
                            str(folder)) != base


def test_a_key_follows_parameters_and_code_not_comments(tmp_path):
    cfg = config.load("mobilenetv1")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "preprocess.py").write_text('"""Doc."""\nx = 1  # a comment\n')
    base = store.prep_key(cfg, str(folder), "d", False)[0]
    (folder / "preprocess.py").write_text('"""Other words."""\nx = 1  # another comment\n')
    assert store.prep_key(cfg, str(folder), "d", False)[0] == base
    (folder / "preprocess.py").write_text('"""Doc."""\nx = 2\n')
    assert store.prep_key(cfg, str(folder), "d", False)[0] != base
    cfg = replace(cfg, preprocess=replace(cfg.preprocess, mean=(0.5, 0.5, 0.5)))
    assert store.prep_key(cfg, str(folder), "d", False)[0] != base
    assert store.prep_key(cfg, str(folder), "other", False)[0] != base


def fake_set(prep, count, size):
    prep.mkdir(parents=True)
    for i in range(count):
        (prep / f"img{i}.bin").write_bytes(b"\0" * size)
    store.write_stamp(str(prep), str(prep / ".done"), store.hash_cache())


def test_once_reuses_a_verified_set_and_rebuilds_a_damaged_one(tmp_path, capsys):
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"images": 3}))
    prep = tmp_path / "prep" / "key"
    marker = tmp_path / "ran"
    command = [PYTHON, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    fake_set(prep, 3, 12)
    assert store.once(str(prep) + ".lock", str(prep / ".done"), command, str(prep),
                      (str(dataset), 12)) == 0
    assert not marker.exists() and "reusing" in capsys.readouterr().out
    os.unlink(prep / "img1.bin")  # damaged: two files for three images
    assert store.once(str(prep) + ".lock", str(prep / ".done"), command, str(prep),
                      (str(dataset), 12)) == 0
    assert marker.read_text() == "x" and "2 .bin files for 3 images" in capsys.readouterr().err
    assert (prep / ".done").exists() and not (prep / "img0.bin").exists()  # rebuilt from scratch


def test_a_failed_command_leaves_no_stamp(tmp_path):
    prep = tmp_path / "key"
    code = store.once(str(prep) + ".lock", str(prep / ".done"),
                      [PYTHON, "-c", "raise SystemExit(3)"],
                      str(prep))
    assert code == 3 and not (prep / ".done").exists()


def test_clean_removes_only_unreferenced_sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("used", "stale"):
        (tmp_path / "build/prep" / name).mkdir(parents=True)
    (tmp_path / "build/data/d1").mkdir(parents=True)
    store.reference("mobilenetv1", "prep", "d1", "build/prep/used")
    store.reference("mobilenetv1", "data", "d1", "build/data/d1")
    removed = store.clean()
    assert removed == [os.path.normpath("build/prep/stale")]
    assert (tmp_path / "build/prep/used").is_dir() and (tmp_path / "build/data/d1").is_dir()


# -- issue 19 item 7: artefacts are trusted by content, not by size -------------------------

WRITE_SET = ("import os, sys\nos.makedirs(sys.argv[1])\nfor i in range(3):\n"
             "    open(f'{sys.argv[1]}/img{i}.bin', 'wb').write(bytes([i]) * 12)\n")


def test_an_edited_bin_of_the_same_size_makes_the_set_again(tmp_path, capsys):
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"images": 3}))
    prep = tmp_path / "prep" / "key"
    command = [PYTHON, "-c", WRITE_SET, str(prep)]
    assert store.once(str(prep) + ".lock", str(prep / ".done"), command, str(prep),
                      (str(dataset), 12)) == 0
    assert store.check_reuse(str(prep), str(dataset), 12, store.hash_cache())
    assert "each with the sha256 it was written with" in capsys.readouterr().out
    with open(prep / "img1.bin", "r+b") as handle:  # same size, other logits
        handle.write(b"\xff")
    assert not store.check_reuse(str(prep), str(dataset), 12, store.hash_cache())
    assert "img1.bin is not the file the preprocessing wrote" in capsys.readouterr().err
    assert not (prep / ".done").exists()  # the run makes it again
    assert store.once(str(prep) + ".lock", str(prep / ".done"), command, str(prep),
                      (str(dataset), 12)) == 0
    assert (prep / "img1.bin").read_bytes() == bytes([1]) * 12
    # a stamp from before digests were recorded is not trusted either
    (prep / ".done").write_text("done\n")
    assert not store.check_reuse(str(prep), str(dataset), 12, store.hash_cache())
    assert "its stamp records no digests" in capsys.readouterr().err


def run_store(cwd, *args):
    return subprocess.run([PYTHON, "-m", "npuzoo.store", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_another_models_export_copied_over_an_export_is_refused_and_remade(tmp_path, capsys):
    """mobilenetv1.onnx copied over build/vovnet39/onnx/random/vovnet39.onnx was compiled and
    reported as vovnet39; so is a same-size edit, and an artefact never sealed."""
    build = tmp_path / "build" / "vovnet39"
    export = build / "onnx" / "random" / "vovnet39.onnx"
    compiled = build / "cpu" / "random" / "vovnet39_bs1.onnx"
    for path, data in ((export, b"vovnet39 export"), (compiled, b"compiled graph")):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        assert run_store(tmp_path, "seal", path.relative_to(tmp_path)).returncode == 0
    assert run_store(tmp_path, "check", export, compiled).returncode == 0
    other = tmp_path / "mobilenetv1.onnx"
    other.write_bytes(b"mobilenetv1 export, larger")
    shutil.copy(other, export)
    proc = run_store(tmp_path, "check", export)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {export}: its sha256 ") and "delete it" in proc.stderr
    with open(compiled, "r+b") as handle:
        handle.write(b"C")  # same size
    unsealed = build / "cpu" / "random" / "vovnet39_bs4.onnx"
    unsealed.write_bytes(b"written, then the run was killed before sealing it")
    kept = build / "onnx" / "random" / "kept.onnx"
    kept.write_bytes(b"intact")
    store.seal(str(kept), store.hash_cache())
    store.remove_unsealed(str(build), store.hash_cache())
    err = capsys.readouterr().err
    assert not export.exists() and not compiled.exists() and not unsealed.exists()
    assert not Path(str(export) + ".sha256").exists() and kept.read_bytes() == b"intact"
    assert f"warning: {export}: its sha256" in err and "making it again" in err
    assert f"{unsealed}: no sha256 was recorded" in err
