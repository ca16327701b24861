"""benchmarks/bench_int8.py: its JSON kept per machine, the agreement of real graph runs against
numbers worked out by hand, the quantiser rule and the README table (speeds are synthetic: no
timing is asserted). One slow test runs it for real on MobileNetV1."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from npuzoo.report.agreement import compare

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "bench_int8.py")


def _module():
    """The script imported by its own name from benchmarks/ (on sys.path, which a spawned
    process inherits): the graphs' logits run in processes that import it again."""
    folder = os.path.dirname(SCRIPT)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("bench_int8")


def test_compare_by_hand():
    fp32 = np.array([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [1, 0, 0, 0, 0, 0]])
    int8 = np.array([[5.0, 4, 3, 2, 1, 0],       # the same: agrees
                     [5, 4, 3, 2, 1, 0.5],       # fp32's top (5) is last: no top-1, no top-5
                     [0.5, 1, 0, 0, 0, 0]])      # top-1 differs, fp32's top (0) second
    found = compare(fp32, int8)
    assert found["top1"] == pytest.approx(100 / 3, abs=0.01)
    assert found["top5"] == pytest.approx(200 / 3, abs=0.01)
    assert found["max_abs_logit_error"] == 5.0        # image 2: |5 - 0| and |0 - 5|
    assert found["mean_abs_logit_error"] == pytest.approx((0 + 5 + 3 + 1 + 1 + 3 + 4.5 + 0.5
                                                           + 1) / 18, abs=1e-5)


# The graph: the three channel means of a 3x224x224 image times W (10 x 3). Classes 0-2 score
# one channel each, the others score below every image's top class.
W = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]] + [[-k, -k, -k] for k in range(1, 8)],
             np.float32)
IMAGES = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, 0)]   # fp32 top classes 0, 1, 2, 0


def _graph(path, weight):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w"], ["class"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                      ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


SPEED = {"fp32/ort": 100.0, "fp32/openvino": 120.0, "onnxruntime/ort": 150.0,
         "onnxruntime/openvino": 300.0, "nncf/ort": 60.0, "nncf/openvino": 400.0}


@pytest.fixture
def stubbed(tmp_path, monkeypatch):
    """The script with its inputs and timing stubbed: a tiny fp32 graph; "onnxruntime" quantises
    to the same weights, "nncf" swaps the rows of classes 0 and 2; synthetic rounds in which
    nncf/openvino's second one is contended (a figure of 10 that must not count)."""
    bi = _module()
    monkeypatch.setattr(bi, "CACHE", str(tmp_path / "cache"))
    fp32 = tmp_path / "fp32.onnx"
    _graph(fp32, W)
    monkeypatch.setattr(bi.be, "prepare_model", lambda name, given=None: (str(fp32), None))
    sets = {}
    for role, images in (("eval", IMAGES), ("calib", IMAGES[:2])):
        folder = tmp_path / role
        folder.mkdir()
        for index, means in enumerate(images):
            image = np.ones((3, 224, 224), np.float32) * np.array(means, np.float32)[:, None, None]
            image.tofile(folder / f"img{index}.bin")
        sets[role] = str(folder)

    def check_data(args, hashes):
        args.data = str(tmp_path)
        args.selections = {"eval": ("eval-id", len(IMAGES), 0), "calib": ("calib-id", 2, 4)}

    monkeypatch.setattr(bi, "check_data", check_data)
    monkeypatch.setattr(bi, "image_sets", lambda name, data, selections: sets)
    quantised = []

    def quantize(model_path, prep_dir, out_path, method):
        assert prep_dir == sets["calib"] and model_path == str(fp32)
        quantised.append(method)
        _graph(out_path, W[[2, 1, 0, *range(3, 10)]] if method == "nncf" else W)

    from npuzoo import quantize as quantize_module
    monkeypatch.setattr(quantize_module, "quantize", quantize)

    def measure(name, graphs, args, threads, shape):
        assert set(graphs) == {"fp32", "onnxruntime", "nncf"}
        measured = {}
        for bs in args.batch_sizes:
            measured[bs] = {}
            for key, speed in SPEED.items():
                rounds = [{"images_per_s": speed * bs, "load": {"contended": False}}
                          for _ in range(args.rounds)]
                if key == "nncf/openvino":
                    rounds[1] = {"images_per_s": 10.0, "load": {"contended": True}}
                measured[bs][key] = rounds
        return measured, {}

    monkeypatch.setattr(bi, "measure", measure)
    bi.quantised_calls = quantised
    return bi


def _on(bi, monkeypatch, cpu):
    monkeypatch.setattr(bi.be, "machine", lambda: {"cpu": cpu, "usable_cpus": 2})


def test_json_per_machine_agreement_and_readme(stubbed, tmp_path, monkeypatch, capsys):
    bi = stubbed
    out = tmp_path / "root" / "benchmarks" / "results" / "int8.json"
    argv = ["--batch-sizes", "1,4", "--rounds", "3", "--out", str(out)]
    _on(bi, monkeypatch, "CPU A")
    assert bi.main(["--models", "mobilenetv1", *argv]) == 0
    first = json.loads(out.read_text())
    assert first["generated_by"].startswith("python3 benchmarks/bench_int8.py")
    [key] = first["machines"]
    assert key == "CPU A (2 CPUs)"
    block = first["machines"][key]["models"]["mobilenetv1"]
    assert block["agreement_meaningful"] is False and block["weights"].startswith("random")
    assert set(block["graphs"]) == {"fp32", "onnxruntime", "nncf"}
    # by hand: nncf swaps classes 0 and 2, so images 0, 2 and 3 change their top class (all
    # keep it in the top five); |diff| per image 2, 0, 2, 4 over 4 x 10 logits
    for engine in ("ort", "openvino"):
        assert block["agreement"][f"nncf/{engine}"] == {
            "images": 4, "top1": 25.0, "top5": 100.0, "max_abs_logit_error": 2.0,
            "mean_abs_logit_error": 0.2}
        assert block["agreement"][f"onnxruntime/{engine}"] == {
            "images": 4, "top1": 100.0, "top5": 100.0, "max_abs_logit_error": 0.0,
            "mean_abs_logit_error": 0.0}
    row = block["rows"][1]
    assert row["bs"] == 4 and row["fp32_best"] == "openvino" and row["int8_best"] == "nncf/openvino"
    best = row["int8"]["nncf/openvino"]
    assert best["images_per_s"] == 1600.0 and best["quiet_rounds"] == 2   # the contended left out
    assert best["vs_fp32_same_engine"] == pytest.approx(400 / 120)
    assert best["vs_fastest_fp32"] == pytest.approx(400 / 120)
    ort = row["int8"]["onnxruntime/ort"]
    assert ort["vs_fp32_same_engine"] == pytest.approx(1.5)
    assert ort["vs_fastest_fp32"] == pytest.approx(150 / 120)
    assert set(row["fp32"]["ort"]) >= {"images_per_s", "range", "quiet_rounds"}
    choice = first["machines"][key]["recommendation"]["engines"]
    assert choice["openvino"]["choice"] == "nncf" and choice["ort"]["choice"] == "onnxruntime"
    printed = capsys.readouterr().out
    assert ('recommendation for npuzoo.config.INT8_QUANTIZER: {"openvino": "nncf", '
            '"onnxruntime": "onnxruntime"}') in printed
    assert first["machines"][key]["recommendation"]["int8_quantizer"] == {
        "openvino": "nncf", "onnxruntime": "onnxruntime"}
    assert sorted(bi.quantised_calls) == ["nncf", "onnxruntime"]

    # a second machine adds its block; a rerun on the first adds a model and keeps the other
    _on(bi, monkeypatch, "Xeon | *fast*")
    assert bi.main(["--models", "mobilenetv1", *argv]) == 0
    assert sorted(bi.quantised_calls) == ["nncf", "onnxruntime"]   # reused from the cache
    _on(bi, monkeypatch, "CPU A")
    assert bi.main(["--models", "vovnet39", *argv]) == 0
    document = json.loads(out.read_text())
    assert list(document["machines"]) == ["CPU A (2 CPUs)", "Xeon | *fast* (2 CPUs)"]
    assert list(document["machines"][key]["models"]) == ["mobilenetv1", "vovnet39"]
    assert document["machines"][key]["models"]["mobilenetv1"] == block

    from npuzoo import readme
    text = readme.render_top(root=str(tmp_path / "root"))
    row = ("| mobilenetv1 | 4 | 480.0 (plain OpenVINO) | 1,600.0 (NNCF on plain OpenVINO) | "
           "3.33× | 3.33× | 25.0% / 100.0% ‡ | 2 |")
    assert text.count(row) == 2   # one table per machine
    assert "### CPU A (2 CPUs)" in text and "### Xeon \\| \\*fast\\* (2 CPUs)" in text
    assert "‡ random weights" in text and "† no round" not in text
    assert "on plain OpenVINO: NNCF (faster; no real weights' agreement to weigh)" in text
    assert "- vovnet39: " in text
    assert "int8 against fp32" not in readme.render_top(root=str(tmp_path / "elsewhere"))
    out.write_text('{"machines": {"x": {"models": {"m": {"rows": 3}}}}}')
    assert "int8 against fp32" not in readme.render_top(root=str(tmp_path / "root"))
    assert "not readable as the int8 benchmark's JSON" in capsys.readouterr().err


def test_the_quantiser_rule_weighs_only_real_weights_agreement():
    bi = _module()

    def block(speeds, top1, meaningful=True):
        return {"agreement_meaningful": meaningful,
                "agreement": {f"{q}/ort": {"top1": t} for q, t in top1.items()},
                "rows": [{"int8": {f"{q}/ort": {"vs_fp32_same_engine": s}
                                   for q, s in speeds.items()}}]}

    def choice(*blocks):
        return bi.recommend(dict(enumerate(blocks)))["engines"]["ort"]

    faster_worse = block({"onnxruntime": 2.0, "nncf": 1.5}, {"onnxruntime": 80, "nncf": 90})
    assert choice(faster_worse)["choice"] == "nncf"                      # 10 points: clearly
    assert choice(block({"onnxruntime": 2.0, "nncf": 1.5},
                        {"onnxruntime": 86, "nncf": 90}))["choice"] == "onnxruntime"
    assert choice(block({"onnxruntime": 2.0, "nncf": 1.99},
                        {"onnxruntime": 86, "nncf": 87}))["choice"] == "nncf"   # a speed tie
    random = block({"onnxruntime": 2.0, "nncf": 1.5}, {"onnxruntime": 0, "nncf": 100}, False)
    assert choice(random)["choice"] == "onnxruntime"                    # noise is not weighed
    both = choice(faster_worse, random)
    assert both["top1"] == {"onnxruntime": 80, "nncf": 90} and both["choice"] == "nncf"
    assert both["speed_vs_fp32"]["onnxruntime"] == pytest.approx(2.0)
    # a graph the engine refused for one model (OpenVINO and ONNX Runtime's QDQ TResNet-M):
    # the faster quantiser is left out there, whether it failed to load or to be timed
    refused = dict(block({"nncf": 1.5}, {"nncf": 90}),
                   agreement={"onnxruntime/ort": {"error": "No suitable implementations."},
                              "nncf/ort": {"top1": 90}})
    assert choice(faster_worse, refused)["choice"] == "nncf"
    assert choice(faster_worse, refused)["fails"] == {"onnxruntime": [1]}
    dropped = dict(block({"nncf": 1.5}, {"onnxruntime": 80, "nncf": 90}),
                   dropped={"onnxruntime/ort": "RuntimeError: ..."})
    assert "onnxruntime left out: fails on 1" in choice(faster_worse, dropped)["reason"]
    gone = dict(refused, agreement={q: {"error": "no"} for q in ("onnxruntime/ort", "nncf/ort")})
    assert choice(gone)["choice"] is None


@pytest.mark.parametrize("argv, fragment", [
    (["--models", "nope"], "--models: unknown nope"),
    (["--batch-sizes", "0"], "must be positive"),
    (["--data", "/nonexistent/data"], "error: --data /nonexistent/data: not a folder"),
])
def test_bad_arguments_are_one_line(argv, fragment):
    done = subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_too_few_images_is_one_line(tmp_path, shared_data):
    done = subprocess.run([sys.executable, SCRIPT, "--data", str(shared_data / "imagenet-val-10"),
                           "--no-write"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "10 labelled images, fewer than --eval 200 + --calib 100" in done.stderr


@pytest.mark.slow
def test_quick_run_on_mobilenetv1(tmp_path, shared_data):
    """Everything real on 10 sample images: selection, the model's preprocessing, both
    quantisers, both engines, the JSON and its README table."""
    out = tmp_path / "int8.json"
    done = subprocess.run([sys.executable, SCRIPT, "--models", "mobilenetv1", "--quick",
                           "--data", str(shared_data / "imagenet-val-10"), "--eval", "6",
                           "--calib", "4", "--batch-sizes", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [results] = json.loads(out.read_text())["machines"].values()
    block = results["models"]["mobilenetv1"]
    assert set(block["agreement"]) == {"onnxruntime/ort", "onnxruntime/openvino", "nncf/ort",
                                       "nncf/openvino"}
    assert all(a["images"] == 6 for a in block["agreement"].values())
    [row] = block["rows"]
    assert len(row["int8"]) == 4 and row["int8_best"] in row["int8"]
    assert "recommendation for npuzoo.config.INT8_QUANTIZER" in done.stdout
    from npuzoo import readme
    [table] = readme.int8_context(str(out))
    assert [r for r in table["rows"] if r["model"] == "mobilenetv1"]
