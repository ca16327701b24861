"""PRECISION=int8's two quantisers (npuzoo/quantize.py), the QUANTIZER variable, and what the
plan makes of it: names per quantiser, and int8 tuning on one engine (issue 23)."""

import json
import os

import numpy as np
import pytest

from npuzoo import config, engines, history, plan, quantize, run, tune

from helpers import run_api

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm at opset 11 (the exports'), and
    twelve calibration images as the preprocess step writes them (float32 .bin)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(0, 0.3, (8, *SHAPE[:1], 3, 3)), "b": rng.normal(0, 0.1, 8),
              "g": rng.normal(0, 0.3, (10, 8)), "gb": np.zeros(10)}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1)], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, root / "m.onnx")
    prep = root / "prep"
    prep.mkdir()
    images = rng.normal(0, 1, (12, *SHAPE)).astype(np.float32)
    for i, image in enumerate(images):
        image.tofile(prep / f"{i:02d}.bin")
    return root, images


def outputs(path, images):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": images})[0]


def input_zero_point_type(path):
    """The element type of the zero point the graph quantises its input `x` with."""
    model = onnx.load(path)
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    return {i.name: i.data_type for i in model.graph.initializer}[node.input[2]]


@pytest.mark.parametrize("method", sorted(quantize.METHODS))
def test_each_method_quantises_and_agrees_with_fp32(tiny, tmp_path, capsys, method):
    root, images = tiny
    out = tmp_path / "int8" / "q.onnx"
    old = os.umask(0o027)
    try:
        quantize.main(["model", str(root / "m.onnx"), str(root / "prep"), str(out),
                       "--method", method])
    finally:
        os.umask(old)
    assert capsys.readouterr().out.splitlines() == [
        f"quantized {root / 'm.onnx'} -> {out} (int8, {method}, calibrated on 12 images)"]
    assert os.listdir(out.parent) == ["q.onnx"] and (out.stat().st_mode & 0o777) == 0o640
    engines.check_precision(str(out), "int8")   # a UserError if nothing was quantised
    reference, found = outputs(root / "m.onnx", images), outputs(out, images)
    assert not np.array_equal(found, reference)
    assert np.abs(found - reference).max() < 0.15 * np.abs(reference).max()
    assert (found.argmax(1) == reference.argmax(1)).mean() >= 0.75


def test_the_method_decides_the_graph_and_the_record(tiny, tmp_path, capsys):
    """ONNX Runtime's quantiser (as configured) takes uint8 activations, NNCF's preset int8
    ones: a method ignored would give the same input zero point type."""
    root, _ = tiny
    for method in quantize.METHODS:
        quantize.quantize(str(root / "m.onnx"), str(root / "prep"), str(tmp_path / method),
                          method)
    assert input_zero_point_type(tmp_path / "onnxruntime") == TensorProto.UINT8
    assert input_zero_point_type(tmp_path / "nncf") == TensorProto.INT8
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"name": "calib", "images": 12, "offset": 3}))
    recorded = {}
    for method in quantize.METHODS:
        quantize.main(["backend", str(tmp_path / f"{method}.json"), "--calibration",
                       str(dataset), "--method", method])
        recorded[method] = json.loads((tmp_path / f"{method}.json").read_text())["calibration"]
    assert recorded["onnxruntime"]["method"].startswith("onnxruntime 1.")
    assert "quantize_static, QDQ, MinMax" in recorded["onnxruntime"]["method"]
    assert recorded["nncf"]["method"].startswith("nncf 3.4.0 nncf.quantize")
    assert recorded["nncf"]["images"] == 12 and recorded["nncf"]["offset"] == 3


@pytest.mark.parametrize("method", sorted(quantize.METHODS))
@pytest.mark.parametrize("problem", ["none", "size"])
def test_bad_calibration_images_stop_in_one_line(tiny, tmp_path, capsys, method, problem):
    root, _ = tiny
    prep = tmp_path / "prep"
    prep.mkdir()
    if problem == "size":
        for name in ("a.bin", "b.bin"):
            np.zeros(int(np.prod(SHAPE)), np.float32).tofile(prep / name)
        np.zeros(5, np.float32).tofile(prep / "c.bin")
    out = tmp_path / "q.onnx"
    out.write_bytes(b"earlier")
    with pytest.raises(SystemExit) as stop:
        quantize.main(["model", str(root / "m.onnx"), str(prep), str(out), "--method", method])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    expected = {"none": f"error: {prep}: no preprocessed calibration images",
                "size": f"error: {prep / 'c.bin'}: 20 bytes, expected 768 (float32 [3, 8, 8])"}
    assert len(lines) == 1 and lines[0].startswith(expected[problem]), lines
    assert out.read_bytes() == b"earlier" and sorted(os.listdir(tmp_path)) == ["prep", "q.onnx"]


def settings(**values):
    return run.Settings({**run.DEFAULTS, "DATA": "/data", **values})


@pytest.mark.parametrize("values, fragment", [
    ({"PRECISION": "int8", "QUANTIZER": "tensorrt"},
     "QUANTIZER=tensorrt: unknown value; use onnxruntime or nncf, or leave it unset"),
    ({"PRECISION": "int8", "QUANTIZER": "nncf; id"}, "QUANTIZER=nncf; id: unknown value"),
    ({"QUANTIZER": "nncf"}, "QUANTIZER=nncf: quantises PRECISION=int8 runs; add PRECISION=int8"),
])
def test_the_quantizer_is_checked(values, fragment):
    with pytest.raises(run.UserError) as err:
        settings(**values)
    assert str(err.value).startswith(fragment) and "\n" not in str(err.value)


def test_each_quantiser_has_its_own_files_and_label():
    """Default quantiser: the label says nothing of it; another: it is in the label, so the
    report folder, README heading and plot line say it; in build/ it is always named."""
    def plan_of(**values):
        return run.plan_of("mobilenetv1", settings(PRECISION="int8", **values), "cpu",
                           calib_prep_key="cp")

    own = config.INT8_BACKEND
    other = next(e for e in config.BACKENDS if e != own)
    plans = {(engine, method): plan_of(QUANTIZER=method, BACKEND=engine if engine != own else "")
             for engine in config.BACKENDS for method in quantize.METHODS}
    assert plan_of().quantizer == config.INT8_QUANTIZER[own]
    for (engine, method), found in plans.items():
        assert found.quantizer == method and found.make_variables()["QUANTIZER"] == method
        words = found.variant.split("-")
        assert ("nncf" in words) == (method == "nncf"), found.variant   # whatever the defaults
        assert (engine in words) == (engine == other)
        assert plan.QUANTIZER_WORDS[method] in found.paths()["COMPILE_SOURCE"]
        assert f"({method} quantiser)" in found.how()
    # the quantised graph per quantiser (either engine may run it), the rest per run
    assert len({p.paths()["COMPILE_SOURCE"] for p in plans.values()}) == len(quantize.METHODS)
    for name in ("COMPILED", "RUN_DIR", "REPORT"):
        assert len({p.paths()[name] for p in plans.values()}) == len(plans), name
    assert plan_of(QUANTIZER="nncf").variant == "int8-nncf"
    assert plan_of(QUANTIZER="onnxruntime").variant == "int8"
    assert plan_of(QUANTIZER="nncf", BACKEND="onnxruntime").variant == "int8-nncf-onnxruntime"
    assert plan_of(QUANTIZER="onnxruntime", BACKEND="onnxruntime").variant == "int8-onnxruntime"


def _qdq_model(path):
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
         numpy_helper.from_array(np.array(0, np.int8), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, path)
    return str(path)


def test_int8_tuning_stays_on_the_engine_of_its_graph(tmp_path, capsys, monkeypatch):
    assert {layout["engine"] for layout in tune.layouts("openvino", 2, ("openvino",))} == \
        {"openvino"}
    assert {layout["engine"] for layout in tune.layouts("onnxruntime", 2, ("onnxruntime",))} \
        == {"onnxruntime"}
    monkeypatch.setattr(tune, "SECONDS", 0.01)
    model = _qdq_model(tmp_path / "q.onnx")
    for engine in engines.BACKENDS if engines.backend_version("openvino") else ["onnxruntime"]:
        argv = ["-m", model, "--loop", "2", "--tune", str(tmp_path / engine), "--backend",
                engine, "--precision", "int8"]
        summary, _ = run_api(argv, capsys, threads=2)
        tried = summary["tuning"]["candidates"]
        assert tried and {t["engine"] for t in tried} == {engine}, tried
    fp32 = tune.layouts("onnxruntime", 2)
    if engines.backend_version("openvino"):
        assert {layout["engine"] for layout in fp32} == {"onnxruntime", "openvino"}


def test_runs_of_two_quantisers_never_share_an_owner():
    """A report's label could be edited or older than the labels' rule: the report's
    calibration.method keeps two quantisers' current reports apart whatever their labels."""
    base = {"soc": "cpu", "device": "CPU X (2 cores)", "batch_size": 4, "variant": "int8",
            "backend": {"name": "openvino", "precision": "int8"}}
    runs = {method: dict(base, calibration={"method": quantize.described(method)})
            for method in quantize.METHODS}
    assert {method: history.quantizer(run) for method, run in runs.items()} == {
        method: method for method in quantize.METHODS}
    assert history.quantizer(base) is None
    assert not history.same_owner(runs["nncf"], runs["onnxruntime"])
    assert history.same_owner(runs["nncf"], base)   # an older report without the record
