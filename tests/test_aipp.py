"""AIPP (make AIPP=1): config values, the ONNX prepend, `preprocess.py --uint8`, and end to end.

The AIPP block computes `(px - mean_chn - min_chn) * var_reci_chn` on uint8 NHWC input
(docs/ais_bench_compatibility.md, "AIPP"); npuzoo.aipp builds it from model.yaml and puts the
same arithmetic in front of the ONNX graph, which the CPU compile and the stand-in atc both use.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npuzoo import aipp
from npuzoo.errors import UserError

from helpers import FRONTEND, HAS_FRONTEND, REPO, frontend_env, make

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper
PY = sys.executable


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# -- config values ----------------------------------------------------------------------------

@pytest.mark.parametrize("model, min_chn, var_reci", [
    ("mobilenetv1", (123.675, 116.28, 103.53), (0.0171248, 0.0175070, 0.0174292)),
    ("tresnet", (0, 0, 0), (1 / 255,) * 3),
    ("inceptionv4", (127.5,) * 3, (1 / 127.5,) * 3),
])
def test_config_values_by_mean_std_style(model, min_chn, var_reci):
    fields = aipp.parse(aipp.config_text(model))
    assert fields["aipp_mode"] == "static" and fields["input_format"] == "RGB888_U8"
    assert fields["src_image_size_w"] == 224 or model == "inceptionv4"
    assert fields["csc_switch"] is False and fields["rbuv_swap_switch"] is False
    for i in range(3):
        assert fields[f"mean_chn_{i}"] == 0
        assert fields[f"min_chn_{i}"] == pytest.approx(min_chn[i], abs=1e-9)
        assert fields[f"var_reci_chn_{i}"] == pytest.approx(var_reci[i], rel=3e-6)


def test_inceptionv4_image_size_is_its_crop():
    fields = aipp.parse(aipp.config_text("inceptionv4"))
    assert (fields["src_image_size_h"], fields["src_image_size_w"]) == (299, 299)


def test_parser_round_trip_and_errors():
    fields = aipp.fields_for([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], 8, 6)
    parsed = aipp.parse("# comment\n" + aipp.render(fields))
    assert parsed.keys() == fields.keys()
    for key, value in fields.items():
        assert parsed[key] == pytest.approx(value, rel=1e-9) if isinstance(value, float) \
            else parsed[key] == value
    aipp.check(parsed, 8, 6)
    with pytest.raises(UserError, match="differs from the model input"):
        aipp.check(parsed, 8, 8)
    with pytest.raises(UserError, match="aipp_op"):
        aipp.parse("aipp { }")
    with pytest.raises(UserError, match="input_format is required"):
        aipp.check(aipp.parse("aipp_op {\n aipp_mode: static\n}"))
    bad = dict(fields, input_format="YUV420SP_U8")
    with pytest.raises(UserError, match="RGB888_U8"):
        aipp.check(aipp.parse(aipp.render(bad)))


# -- the prepend --------------------------------------------------------------------------------

def tiny_model(height=5, width=4):
    """A float32 NCHW model: a 1x1 convolution with fixed weights, dynamic batch."""
    weight = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) / 7
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["class"])], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, ["N", 2, height, width])],
        [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7)


def float_preprocess(pixels, mean, std):
    """preprocess.py's arithmetic on uint8 NHWC pixels: float32 NCHW (x/255 - mean)/std."""
    out = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255
    return (out - np.float32(mean).reshape(1, 3, 1, 1)) / np.float32(std).reshape(1, 3, 1, 1)


def test_prepend_on_a_tiny_model_equals_float_preprocessing():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pixels = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    expected = session(tiny_model()).run(None, {"image": float_preprocess(pixels, mean, std)})[0]
    model = aipp.prepend(tiny_model(), aipp.fields_for(mean, std, 5, 4))
    onnx.checker.check_model(model)
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {11}
    image = model.graph.input[0]
    assert image.name == "image" and image.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim] == ["N", 5, 4, 3]
    got = session(model).run(None, {"image": pixels})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_prepend_rejects_a_size_mismatch():
    with pytest.raises(UserError, match="differs"):
        aipp.prepend(tiny_model(), aipp.fields_for([0] * 3, [1] * 3, 4, 4))


@pytest.fixture(scope="module")
def mobilenet_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("aipp-onnx") / "mobilenetv1.onnx"
    proc = subprocess.run([PY, str(REPO / "models/mobilenetv1/pth2onnx.py"), "random", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return path


def preprocess(src, dst, *extra):
    proc = subprocess.run([PY, str(REPO / "models/mobilenetv1/preprocess.py"), str(src), str(dst),
                           *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return sorted(Path(dst).glob("*.bin"))


@pytest.fixture(scope="module")
def prepped(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("aipp-prep")
    src = shared_data / "imagenet-val-10" / "val"
    return preprocess(src, root / "f32"), preprocess(src, root / "u8", "--uint8")


def test_uint8_files_are_the_float_files_denormalised(prepped):
    floats, bytes_ = prepped
    assert [p.name for p in floats] == [p.name for p in bytes_] and len(floats) == 10
    mean = np.float32([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = np.float32([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    for f32, u8 in zip(floats, bytes_, strict=False):
        assert u8.stat().st_size == 224 * 224 * 3 == f32.stat().st_size // 4
        pixels = np.fromfile(u8, np.uint8).reshape(224, 224, 3).transpose(2, 0, 1)
        values = np.fromfile(f32, np.float32).reshape(3, 224, 224)
        tolerance = 0.5 / 255 / std
        assert np.all(np.abs((pixels / 255 - mean) / std - values) <= tolerance)
        np.testing.assert_array_equal(np.rint((values * std + mean) * 255).astype(np.uint8), pixels)


def test_prepended_mobilenet_on_uint8_equals_original_on_float32(mobilenet_onnx, prepped):
    floats, bytes_ = prepped
    batch_f32 = np.stack([np.fromfile(p, np.float32).reshape(3, 224, 224) for p in floats])
    batch_u8 = np.stack([np.fromfile(p, np.uint8).reshape(224, 224, 3) for p in bytes_])
    expected = session(onnx.load(mobilenet_onnx)).run(None, {"image": batch_f32})[0]
    model = aipp.prepend(onnx.load(mobilenet_onnx), aipp.parse(aipp.config_text("mobilenetv1")))
    onnx.checker.check_model(model)
    got = session(model).run(None, {"image": batch_u8})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_compile_with_aipp_takes_uint8_nhwc(mobilenet_onnx, tmp_path):
    cfg = tmp_path / "aipp.cfg"
    assert subprocess.run([PY, "-m", "npuzoo.aipp", "config", "mobilenetv1", str(cfg)],
                          cwd=REPO).returncode == 0
    out = tmp_path / "m_bs2_aipp.onnx"
    proc = subprocess.run([PY, "-m", "npuzoo.compile", str(mobilenet_onnx), str(out), "--batch",
                           "2", "--aipp", str(cfg)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    image = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()[0]
    assert (image.name, image.type, image.shape) == ("image", "tensor(uint8)", [2, 224, 224, 3])


# -- end to end ---------------------------------------------------------------------------------

def run_pipeline(root, log, *args, standins=False):
    """`make ARGS` in `root`, no CANN, the stand-ins when asked; it must succeed."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_STANDIN", "ASCEND_")) and k != "PYTHONPATH"}
    env.update(MAKEFLAGS="", CI="", NPUZOO_THREADS="1", NPUZOO_STANDIN_LOG=str(log),
               NPUZOO_ASCEND_ROOT=str(log.parent / "no-ascend-here"),
               PYTHONPATH=str(root), PATH=os.pathsep.join([str(Path(PY).parent),
                                                          "/usr/local/bin:/usr/bin:/bin"]))
    if standins:  # stand-in atc and npu-smi; the real ais_bench front end on a stand-in aclruntime
        if not HAS_FRONTEND:
            pytest.skip(f"the ais_bench front end is not at {FRONTEND} (../shared/third_party)")
        env["PATH"] = str(root / "tests" / "standins") + os.pathsep + env["PATH"]
        env.update(frontend_env(root))
    proc = make(root, "-o", ".venv/.installed", *args, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_e2e_aipp_accuracy_equals_float_path(scratch, shared_data, tmp_path):
    data = shared_data / "imagenet-val-1300"
    common = ["mobilenetv1", "BS=4", f"DATA={data}", "N=16", "WEIGHTS=random", "LOOP=2",
              "WARMUP=1"]
    log = tmp_path / "standin.log"
    run_pipeline(scratch, log, *common, "SOC=cpu")
    run_pipeline(scratch, log, *common, "SOC=cpu", "AIPP=1")
    run_pipeline(scratch, log, *common, "SOC=Ascend310P3", "AIPP=1", standins=True)

    build = scratch / "build" / "mobilenetv1"
    [prep] = [p for p in (scratch / "build" / "prep").glob("imagenet-val-1300-*-u8-*")
              if p.is_dir()]
    sizes = {p.stat().st_size for p in prep.glob("*.bin")}
    assert sizes == {224 * 224 * 3} and len(list(prep.glob("*.bin"))) == 16
    assert (build / "cpu" / "random" / "mobilenetv1_bs4_aipp.onnx").is_file()
    assert (build / "Ascend310P3" / "random" / "mobilenetv1_bs4_aipp.om").is_file()

    def accuracy(chip, suffix):
        run = next((build / chip / "random" / f"bs4{suffix}").glob("imagenet-val-1300-*"))
        return json.loads((run / "accuracy.json").read_text())

    plain = accuracy("cpu", "")
    assert plain["value"][0]["value"] == "16"
    assert accuracy("cpu", "_aipp") == plain
    assert accuracy("Ascend310P3", "_aipp") == plain

    atc_calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()
                 if json.loads(line)["tool"] == "atc"]
    assert len(atc_calls) == 1
    assert "--insert_op_conf=build/mobilenetv1/aipp.cfg" in atc_calls[0]
    assert "--enable_small_channel=1" in atc_calls[0]
    assert "--input_shape=image:4,3,224,224" in atc_calls[0]

    reports = scratch / "reports" / "mobilenetv1"
    assert json.loads((reports / "cpu_bs4.json").read_text())["backend"].get("aipp") is None
    for chip in ("cpu", "Ascend310P3"):
        report = json.loads((reports / "aipp" / f"{chip}_bs4.json").read_text())
        assert report["backend"]["aipp"] is True
        assert report["accuracy"] == json.loads((reports / "cpu_bs4.json").read_text())["accuracy"]
    assert not (reports / "Ascend310P3_bs4.json").exists()
