"""Shared, content-keyed sets (npuzoo/store.py): made once, verified before reuse (issue 14)."""

import json
import os
import sys

import pytest

from npuzoo import config, store

PYTHON = sys.executable


def test_models_with_the_same_preprocessing_share_a_key():
    keys = {m: store.prep_key(config.load(m), config.model_dir(m), "d", False)[0]
            for m in config.model_names()}
    assert keys["mobilenetv1"] == keys["vovnet39"]
    assert len(set(keys.values())) == 4  # dpn131 and tresnet differ in mean/std, inceptionv4 in size
    u8 = {m: store.prep_key(config.load(m), config.model_dir(m), "d", True)[0]
          for m in config.model_names()}
    assert len(set(u8.values())) == 2  # uint8: geometry alone; InceptionV4 is 299 px


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
    cfg = dict(cfg, preprocess=dict(cfg["preprocess"], mean=[0.5, 0.5, 0.5]))
    assert store.prep_key(cfg, str(folder), "d", False)[0] != base
    assert store.prep_key(cfg, str(folder), "other", False)[0] != base


def fake_set(prep, count, size):
    prep.mkdir(parents=True)
    for i in range(count):
        (prep / f"img{i}.bin").write_bytes(b"\0" * size)
    (prep / ".done").write_text("done\n")


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
    code = store.once(str(prep) + ".lock", str(prep / ".done"), [PYTHON, "-c", "raise SystemExit(3)"],
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
