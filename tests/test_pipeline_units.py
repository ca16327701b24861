"""Unit tests of the shared pipeline modules: config, dataset, weights, soc, compile, report."""

import copy
import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from npuzoo import config, dataset, soc, weights
from npuzoo.checksums import HashCache
from npuzoo.errors import UserError
from npuzoo.report import build, cli, compare, pieces, publish

from helpers import REPO, one_error_line, python

# -- config -------------------------------------------------------------------------------

def test_every_model_yaml_validates():
    assert "mobilenetv1" in config.model_names()
    for name in config.model_names():
        assert config.load(name).name == name


@pytest.mark.parametrize("field, value, fragment", [
    (("preprocess", "crop"), "big", "preprocess.crop: expected a positive integer"),
    (("output", "classes"), 10, "output.classes: expected one of 1000, 1001"),
    (("weights", "md5"), "xyz", "weights.md5: expected 32 hexadecimal digits"),
    (("input", "shape"), [3, 224], "input.shape: expected a list of 3"),
    (("preprocess", "mean"), None, "preprocess.mean: missing"),
])
def test_config_names_the_bad_field(field, value, fragment):
    data = copy.deepcopy(yaml.safe_load((REPO / "models/mobilenetv1/model.yaml").read_text()))
    section, key = field
    data[section][key] = value
    with pytest.raises(UserError, match=fragment.replace(".", r"\.")):
        config.parse(data, "model.yaml", os.path.join(REPO, "models/mobilenetv1"))


def test_config_cli_unknown_model():
    proc = python("-m", "npuzoo.config", "check", "nosuchmodel")
    one_error_line(proc, "nosuchmodel", "known models")


def test_makevars_come_from_model_yaml():
    text = config.make_variables(config.load("mobilenetv1"))
    assert "WEIGHTS_FILE := mobilenet_sgd_rmsprop_69.526.tar\n" in text
    assert "HAS_UPSTREAM := \n" in text  # (mobilenetv1's code is its folder's own)


# -- dataset ------------------------------------------------------------------------------

def make_dataset(root, names_labels, class_folders=False, extra_lines=""):
    val = root / "val"
    val.mkdir(parents=True)
    for name, label in names_labels:
        folder = val / f"n{label:08d}" if class_folders else val
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"not decoded here")
    lines = "".join(f"{name} {label}\n" for name, label in names_labels)
    (root / "val_label.txt").write_text(lines + extra_lines)
    return root


def test_prepare_takes_first_n_sorted(tmp_path):
    data = make_dataset(tmp_path / "d", [("c.JPEG", 3), ("a.JPEG", 1), ("b.JPEG", 2)],
                        class_folders=True)
    info = dataset.prepare(str(data), str(tmp_path / "run"), limit=2)
    assert sorted(os.listdir(tmp_path / "run" / "val")) == ["a.JPEG", "b.JPEG"]
    assert (tmp_path / "run" / "val_label.txt").read_text() == "a.JPEG 1\nb.JPEG 2\n"
    assert info["images"] == 2 and info["labelled_images"] == 3 and info["subset"]
    assert not info["full_validation_set"]
    assert os.path.realpath(tmp_path / "run" / "val" / "a.JPEG") == \
        str((data / "val" / "n00000001" / "a.JPEG").resolve())
    saved = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert saved["labels_sha256"] == hashlib.sha256(b"a.JPEG 1\nb.JPEG 2\n").hexdigest()


@pytest.mark.parametrize("case, fragment", [
    ("missing", "no such folder"),
    ("no_labels", "val_label.txt: missing"),
    ("malformed", "val_label.txt:2: expected '<image file> <class index>'"),
    ("absent", "1 labelled image(s) are not in"),
    ("out_of_range", "label 1000 is outside 0..999"),
    ("duplicate", "labelled twice"),
])
def test_dataset_errors(tmp_path, case, fragment):
    root = tmp_path / "d"
    if case != "missing":
        make_dataset(root, [("a.JPEG", 1)], extra_lines={
            "no_labels": "", "malformed": "b.JPEG one two\n", "absent": "zz.JPEG 4\n",
            "out_of_range": "a2.JPEG 1000\n", "duplicate": "a.JPEG 2\n"}[case])
        if case == "no_labels":
            (root / "val_label.txt").unlink()
    proc = python("-m", "npuzoo.dataset", "prepare", root, tmp_path / "run")
    one_error_line(proc, fragment)
    assert not (tmp_path / "run").exists()


def test_dataset_limit_larger_than_set(tmp_path):
    data = make_dataset(tmp_path / "d", [("a.JPEG", 1)])
    proc = python("-m", "npuzoo.dataset", "prepare", data, tmp_path / "run", "--limit", 5)
    one_error_line(proc, "N=5", "only 1 labelled")


def test_real_label_file_parses(shared_data):
    labels = dataset.parse_labels(str(shared_data / "ilsvrc2012_val_label.txt"))
    assert len(labels) == 50000 and labels["ILSVRC2012_val_00000001.JPEG"] == 65


# -- weights ------------------------------------------------------------------------------

def test_verify_and_identify(tmp_path):
    blob = tmp_path / "w.pth"
    blob.write_bytes(b"weights")
    md5 = hashlib.md5(b"weights").hexdigest()
    published = config.WeightsSpec(file="w.pth", url="https://example.invalid/w.pth",
                                   layout="plain", md5=md5)
    other = dataclasses.replace(published, md5="0" * 32)

    def identified(spec, value=str(blob)):
        cache = HashCache(str(tmp_path / "hashes.json"))
        return weights.identify(spec, value, str(tmp_path / "weights"), cache)

    wid, path, description = identified(published)
    assert wid == f"published-{description['sha256'][:12]}" and description["md5"] == md5
    assert Path(path).read_bytes() == b"weights" and description["file"] == str(blob)
    assert identified(other)[2]["source"] == "custom"
    assert identified(dataclasses.replace(published, md5=None))[2]["source"] == "unverified"
    assert identified(published, "random")[:2] == ("random", "random")
    with pytest.raises(UserError, match="does not match the published"):
        weights.verify(other, str(blob))


def test_cached_weights_with_wrong_checksum_fail(tmp_path):
    spec = config.load("mobilenetv1").weights
    blob = tmp_path / spec.file  # the downloaded published file, changed since
    blob.write_bytes(b"corrupt")
    with pytest.raises(UserError, match="does not match the published") as err:
        weights.identify(spec, "", str(tmp_path), HashCache(str(tmp_path / "hashes.json")))
    assert str(blob) in str(err.value) and "205c493b6582a3e6c3daa66e539eae54" in str(err.value)
    assert blob.exists()  # never delete what the user put there


def test_download_failure_says_how_to_pass_weights(tmp_path, monkeypatch):
    spec = dataclasses.replace(config.load("mobilenetv1").weights,
                               url="http://127.0.0.1:9/none.tar")
    with pytest.raises(UserError, match="pass WEIGHTS=/path/to/it"):
        weights.download(spec, str(tmp_path / "w.tar"))
    assert os.listdir(tmp_path) == []


# -- soc ----------------------------------------------------------------------------------

NPU_SMI = """\
+------------------------------------------------------------------------------------------------+
| npu-smi 23.0.0                   Version: 23.0.0                                               |
+---------------------------+---------------+----------------------------------------------------+
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip  Device              | Bus-Id        | AICore(%)   Memory-Usage(MB)                        |
+===========================+===============+====================================================+
| 0       310P3             | OK            | 15.8        42                0    / 0             |
| 0       0                 | 0000:82:00.0  | 0           1074 / 21534                            |
+===========================+===============+====================================================+
| 1       310P3             | Warning       | 15.2        40                0    / 0             |
| 0       1                 | 0000:83:00.0  | 0           1074 / 21534                            |
+===========================+===============+====================================================+
"""


def test_parse_npu_smi():
    assert [(c["npu"], c["name"]) for c in soc.parse_table(NPU_SMI)] == [(0, "310P3"), (1, "310P3")]


def test_auto_without_npu_smi_is_cpu(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert soc.resolve("auto") == "cpu"


def test_unknown_soc():
    proc = python("-m", "npuzoo.soc", "resolve", "Ascend999")
    one_error_line(proc, "SOC=Ascend999", "unknown chip")


# -- compile ------------------------------------------------------------------------------

@pytest.fixture
def zoo_compile():
    """npuzoo.compile (skipped where onnx or ONNX Runtime is not installed)."""
    pytest.importorskip("onnxruntime")
    return pytest.importorskip("npuzoo.compile")


def tiny_dynamic_model(path):
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [12, 5],
                                np.arange(60, dtype=np.float32).tolist())
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [-1, 12])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["image", "s"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["class"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["-1", 3, 2, 2])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, ["-1", 5])],
        [weight, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)


def test_compile_fixes_batch_and_keeps_outputs(tmp_path, zoo_compile):
    import onnx
    import onnxruntime as ort

    source, compiled = tmp_path / "m.onnx", tmp_path / "m_bs4.onnx"
    tiny_dynamic_model(str(source))
    zoo_compile.compile_model(str(source), str(compiled), 4)
    model = onnx.load(str(compiled))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 3, 2, 2]
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32)
    expected = x.reshape(4, 12) @ np.arange(60, dtype=np.float32).reshape(12, 5)
    got = ort.InferenceSession(str(compiled)).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m_bs4.onnx"]


def test_compile_unreadable_model(tmp_path, zoo_compile):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    proc = python("-m", "npuzoo.compile", bad, tmp_path / "out.onnx", "--batch", 1)
    one_error_line(proc, "not a readable ONNX model")


def test_a_full_disk_while_compiling_says_so_in_one_line(tmp_path, monkeypatch, zoo_compile):
    """onnx.save of the static graph meets ENOSPC (written to /dev/full): one line naming the
    folder, nothing left behind, and the export is not blamed."""
    source, compiled = tmp_path / "m.onnx", tmp_path / "out" / "m_bs4.onnx"
    tiny_dynamic_model(str(source))
    real_save = zoo_compile.onnx.save
    monkeypatch.setattr(zoo_compile.onnx, "save", lambda model, path: real_save(model, "/dev/full"))
    with pytest.raises(UserError) as err:
        zoo_compile.compile_model(str(source), str(compiled), 4)
    message = str(err.value)
    assert f"no space left on {compiled.parent}" in message and "\n" not in message
    assert "delete" not in message and os.listdir(compiled.parent) == []


@pytest.mark.parametrize("free, fragment", [
    (0, "no space left on"), (10**12, "ONNX Runtime could not write the optimised graph")])
def test_onnx_runtime_failing_to_write_does_not_blame_a_good_export(tmp_path, monkeypatch, free,
                                                                    fragment, zoo_compile):
    import onnxruntime as ort

    class FullDiskOptions(ort.SessionOptions):
        """ONNX Runtime writes its optimised graph to /dev/full: every write fails with ENOSPC."""

        def __setattr__(self, name, value):
            super().__setattr__(name, "/dev/full" if name == "optimized_model_filepath" else value)

    source, compiled = tmp_path / "m.onnx", tmp_path / "m_bs4.onnx"
    tiny_dynamic_model(str(source))
    monkeypatch.setattr(ort, "SessionOptions", FullDiskOptions)
    monkeypatch.setattr(zoo_compile.shutil, "disk_usage", lambda path: type(
        "Usage", (), {"free": free})())
    with pytest.raises(UserError) as err:
        zoo_compile.compile_model(str(source), str(compiled), 4)
    message = str(err.value)
    assert fragment in message and "cannot load" not in message and "delete" not in message
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


# -- report -------------------------------------------------------------------------------

ACCURACY_JSON = ('{"title": "Overall statistical evaluation", "value": [{"key": "Number of '
                 'images", '
                 '"value": "50000"}, {"key": "Number of classes", "value": "1000"}, {"key": '
                 '"Top1 accuracy", "value": "69.1%"}, {"key": "Top2 accuracy", "value": "80.0%"}, '
                 '{"key": "Top3 accuracy", "value": "84.0%"}, {"key": "Top4 accuracy", "value": '
                 '"87.0%"}, {"key": "Top5 accuracy", "value": "88.5%"}]}')


def test_read_accuracy(tmp_path):
    path = tmp_path / "acc.json"
    path.write_text(ACCURACY_JSON)
    acc = pieces.read_accuracy(str(path))
    assert acc == {"top1": 69.1, "top2": 80.0, "top3": 84.0, "top4": 87.0, "top5": 88.5,
                   "images": 50000, "classes": 1000}


@pytest.mark.parametrize("acc, data, source, verdict", [
    ({"top1": 69.0, "top5": 88.5}, {"full_validation_set": True}, "published", "pass"),
    ({"top1": 68.0, "top5": 88.5}, {"full_validation_set": True}, "published", "fail"),
    ({"top1": 69.0, "top5": 87.9}, {"full_validation_set": True}, "published", "fail"),
    ({"top1": 10.0, "top5": 20.0}, {"full_validation_set": False, "images": 300}, "published",
     "not applicable"),
    ({"top1": 10.0, "top5": 20.0}, {"full_validation_set": True}, "random", "not applicable"),
])
def test_gate(acc, data, source, verdict):
    reference = config.ReferenceSpec(accuracy=config.TopK(69.52, 89.05), accuracy_source="guide",
                                     tolerance=config.TopK(1.0, 1.0))
    assert build.gate(reference, acc, data, {"source": source})["verdict"] == verdict


def test_gate_with_top5_only_reference():
    reference = config.ReferenceSpec(accuracy=config.TopK(None, 94.43), accuracy_source="guide",
                                     tolerance=config.TopK(1.0, 1.0))
    result = build.gate(reference, {"top1": 1.0, "top5": 94.0}, {"full_validation_set": True},
                         {"source": "published"})
    assert result["verdict"] == "pass" and "top5" in result["reason"]


def test_bench_summary(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new_summary.json").write_text(json.dumps({"throughput": 12.5}))
    assert pieces.read_bench_summary(str(tmp_path), "new")["throughput"] == 12.5
    with pytest.raises(UserError, match=r"none_summary\.json: missing .*rerun the perf step"):
        pieces.read_bench_summary(str(tmp_path), "none")
    (tmp_path / "dir_summary.json").mkdir()   # a folder in its place: one line, not a traceback
    with pytest.raises(UserError, match=r"dir_summary\.json: cannot read the ais_bench summary"):
        pieces.read_bench_summary(str(tmp_path), "dir")


def test_perf_from_summary_percentiles():
    times = [1.0, 2.0, 3.0, 4.0, 10.0]
    perf = pieces.perf_from_summary({"throughput": 400.0, "npu_compute_time_list": times,
                                     "NPU_compute_time": {"count": 5}}, loop=5, warmup=1)
    assert perf["latency_ms"]["p50"] == 3.0 and perf["latency_ms"]["mean"] == 4.0
    assert perf["latency_ms"]["p99"] == pytest.approx(np.percentile(times, 99))
    assert perf["samples"] == 5 and perf["loop"] == 5


def test_compare_flags_throughput_drop_and_accuracy_change():
    old = {"timestamp": "t0", "perf": {"throughput": 100.0},
           "accuracy": {"top1": 70.0, "top5": 89.0},
           "dataset": {"labels_sha256": "x"}}
    new = {"perf": {"throughput": 85.0}, "accuracy": {"top1": 69.5, "top5": 89.0},
           "dataset": {"labels_sha256": "x"}}
    changes = compare.compare(old, new)["changes"]
    assert [c["what"] for c in changes] == ["throughput", "top1"]
    assert changes[0]["change"] == "-15.0%"
    assert compare.compare(old,
                           dict(new, perf={"throughput": 95.0}))["changes"][0]["what"] == "top1"


def test_publish_is_idempotent_and_atomic(tmp_path, capsys):
    built = tmp_path / "built.json"
    body = {"schema": 1, "model": "m", "soc": "cpu", "batch_size": 1, "timestamp": "t1",
            "perf": {"throughput": 10.0}, "accuracy": None,
            "gate": {"verdict": "not applicable", "reason": "x"}}
    built.write_text(json.dumps(body))
    dest = tmp_path / "reports" / "cpu_bs1.json"
    publish.publish(str(built), str(dest))
    first = dest.read_text()
    publish.publish(str(built), str(dest))
    assert dest.read_text() == first
    assert "already recorded" in capsys.readouterr().out
    built.write_text(json.dumps(dict(body, timestamp="t2", perf={"throughput": 5.0})))
    republished, flagged = publish.publish(str(built), str(dest))
    assert republished["comparison"]["changes"][0]["flag"] == "drop" and flagged
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cpu_bs1.json", "history"]
    assert len(list((dest.parent / "history" / "cpu_bs1").iterdir())) == 2


def test_load_refuses_what_write_did_not_build(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"model": "m", "soc": "cpu", "batch_size": 1}))
    with pytest.raises(UserError, match="not a report built by `report write`"):
        build.load(str(path))


def test_recorded_commit_ignores_generated_outputs(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "cpu_bs1.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.setattr(config, "REPO_ROOT", str(tmp_path))
    clean = build.git_commit()
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "reports" / "cpu_bs1.json").write_text('{"new": 1}')
    assert build.git_commit() == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert build.git_commit() == clean + "-dirty"


def test_versions_merge_fills_what_this_image_lacks(tmp_path):
    elsewhere = tmp_path / "model.json"
    elsewhere.write_text(json.dumps({"torch": "9.9.9", "onnxruntime": "0.0.0", "python": "3.0"}))
    out = tmp_path / "env.json"
    proc = python("-m", "npuzoo.report", "versions", "--merge", elsewhere, "--out", out)
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(out.read_text())
    here = soc.package_versions()
    assert merged["onnxruntime"] == here["onnxruntime"]  # found here: kept
    assert merged["python"] == here["python"]
    assert merged["torch"] == (here["torch"] or "9.9.9")


WRITE_OPTIONS = ["model", "soc", "bs", "dataset", "weights", "accuracy", "perf_dir", "perf_dirname",
                 "loop", "warmup", "source", "extra", "environment", "results_dir", "prep_dir",
                 "fp32_model", "steps", "variant", "engine"]
REQUIRED = ("model", "soc", "bs", "loop", "warmup")  # a subset of cli.REQUIRED


def write_args(manifest, **given):
    """`report write` options as argparse gives them: `given` on the command line."""
    import argparse

    return argparse.Namespace(command="write", manifest=str(manifest), out="r.json",
                              **{name: given.get(name) for name in WRITE_OPTIONS})


def test_report_write_reads_the_plan_manifest_and_flags_win(tmp_path):
    manifest = tmp_path / "run.json"
    manifest.write_text(json.dumps({"model": "mobilenetv1", "soc": "cpu", "bs": 4, "warmup": 0,
                                    "loop": 20, "variant": "int8", "source": None}))
    args = cli.from_manifest(write_args(manifest, loop=5), REQUIRED)
    assert (args.bs, args.loop, args.warmup, args.variant) == (4, 5, 0, "int8")  # 0 is a value
    assert args.source is None
    with pytest.raises(UserError, match="missing --dataset"):
        cli.from_manifest(write_args(manifest), REQUIRED + ("dataset",))
    for text, error in (("[1]", "expected a JSON object"), ('{"colour": 1}', "unknown field")):
        manifest.write_text(text)
        with pytest.raises(UserError, match=error):
            cli.from_manifest(write_args(manifest), REQUIRED)


def test_a_plan_manifest_holds_every_field_report_write_reads(tmp_path):
    """The manifest npuzoo/plan.py writes names only options of `report write`, and all the
    required ones."""
    from npuzoo import plan

    run_plan = plan.RunPlan(
        model="mobilenetv1", soc="cpu", bs=4, runner="local", device="0", loop=20, warmup=2,
        limit=None, aipp=False, precision="int8", engine="onnxruntime", own_engine="openvino",
        quantizer="onnxruntime", tuned=False, streams=2, perf_seconds=3, force=False,
        strict=False, data_id="d-1-nall",
        prep_key="p", prep_bytes=1, export_key="e", weights_id="random", weights_path="random",
        has_upstream=False, calib=10, calib_id="c-1-o3-n10", calib_offset=3, calib_prep_key="cp")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(run_plan.manifest()))
    args = cli.from_manifest(write_args(manifest), ("model", "soc", "bs", "dataset", "weights",
                                                       "accuracy", "perf_dir", "loop", "warmup"))
    assert (args.variant, args.engine) == ("int8-onnxruntime", "onnxruntime")
    assert args.fp32_model == run_plan.paths()["ONNX"] and args.extra.endswith("backend-int8.json")
    # every int8 run, tuned or not, on either engine, gives `write` what int8_agreement needs
    # (the fp32 export, the results and the images they came from); an fp32 run gives none
    import dataclasses

    for engine, tuned, streams in (("openvino", True, 0), ("openvino", False, 2),
                                   ("onnxruntime", True, 0), ("onnxruntime", False, 1)):
        found = dataclasses.replace(run_plan, engine=engine, tuned=tuned, streams=streams)
        paths, manifest = found.paths(), found.manifest()
        assert manifest["fp32_model"] == paths["ONNX"] != paths["COMPILE_SOURCE"]
        assert (manifest["results_dir"], manifest["prep_dir"]) == \
            (f"{paths['OUT_DIR']}/results", paths["PREP_DIR"])
    assert dataclasses.replace(run_plan, precision="fp32").manifest()["fp32_model"] is None
