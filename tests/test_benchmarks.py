"""The benchmark scripts run from a checkout and print their comparison (timings not asserted)."""

import json
import os
import re
import subprocess
import sys

import pytest

from helpers import classifier, synthetic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_bench(name):
    """benchmarks/<name>.py, imported by its path (the folder is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_{name}",
                                                  os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dataset_mode_benchmark_prints_its_ratios(tmp_path):
    done = subprocess.run([sys.executable,
                           os.path.join(REPO, "benchmarks", "bench_dataset_mode.py"),
                           "--images", "40", "--batchsize", "8", "--rounds", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "40 synthetic files, 40 images in 5 batches of 8; 1 threads, 1 stream(s)" in out
    assert len(re.findall(r"^round \d: dataset mode [\d.]+, pure inference [\d.]+, plain ORT loop "
                          r"[\d.]+",
                          out, re.M)) == 2
    assert re.search(r"^dataset mode / pure inference: \d\.\d{3} \(target >= 0\.9\): (PASS|BELOW)$",
                     out, re.M)
    assert re.search(r"^dataset mode / plain ORT loop: \d\.\d{3}$", out, re.M)
    assert os.listdir(tmp_path) == []   # its files live in a temporary folder


@pytest.mark.parametrize("argv, fragment", [
    (["--prep", "/nonexistent/prep"], "--prep /nonexistent/prep: not a folder"),
    (["--batchsize", "0"], "--batchsize: expected a positive integer, got 0"),
])
def test_dataset_mode_benchmark_refuses_bad_arguments(argv, fragment):
    done = subprocess.run([sys.executable,
                           os.path.join(REPO, "benchmarks", "bench_dataset_mode.py"), *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and fragment in done.stderr


@pytest.mark.slow
def test_engines_benchmark_runs_and_writes_what_the_readme_renders(tmp_path):
    """One model, one batch size, one short round: every contender runs in its own worker
    process and the JSON it writes renders as the README's engines table."""
    out = tmp_path / "engines.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_engines.py"),
                           "--models", "mobilenetv1", "--batch-sizes", "1", "--rounds", "1",
                           "--seconds", "0.2", "--min-runs", "1", "--warmup", "1", "--out",
                           str(out)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "default engine" in done.stdout
    data = json.loads(out.read_text())
    [results] = data["machines"].values()   # this machine's
    [row] = results["models"]["mobilenetv1"]["rows"]
    assert row["bs"] == 1
    assert {"ort", "openvino", "openvino-async", "runner/onnxruntime/fp32/s1",
            "runner/openvino/fp32/s2", "runner/tuned/fp32"} <= set(row["contenders"])
    versus = row["tuned_vs_best_plain"]
    assert versus["ratio"] > 0 and versus["chosen"]["engine"] in ("onnxruntime", "openvino")
    assert results["default_backend"]["choice"] in ("onnxruntime", "openvino")

    from npuzoo import readme
    [context] = readme.engines_context(str(out))
    assert [r for r in context["rows"] if "mobilenetv1" in str(r)]


def test_the_tuned_runner_is_judged_contended_by_the_same_rule_as_every_contender():
    """The runner with --tune also calls a run contended when its reference product fell below
    the machine's best; in the engines table every contender is judged by the CPU share alone."""
    bench_engines = load_bench("bench_engines")
    summary = {"throughput_wall": 150.0, "throughput": 75.0, "timed_runs": 8, "wall_time_ms": 850.0,
               "loadavg_1m_start": 1.0, "loadavg_1m_end": 1.0, "cpus": 2, "own_cpu_s": 1.7,
               "other_cpu_s": 0.01, "steal_s": 0.0, "contended": True,
               "tuning": {"chosen": {"engine": "openvino", "streams": 2}}}
    runner = bench_engines.Runner({"threads": 2, "onnx": "m.onnx", "precision": "fp32",
                                   "tune": "t", "backend": "onnxruntime"})
    for share, contended in ((0.01, False), (0.2, True), (None, None)):
        runner.bench = type("Bench", (), {"run": staticmethod(
            lambda argv, threads, share=share: dict(summary, other_cpu_share=share))})
        result = runner.measure(1, 0.1, 1, 1)
        assert result["load"]["contended"] is contended
        assert result["load"]["runner_contended"] is True and result["chosen"]["streams"] == 2


def test_the_engines_benchmark_counts_flops_in_the_graph_and_lists_every_model(tmp_path):
    """GFLOP per image from the exported graph (no table to keep up to date): a 3x3 conv 3->8
    with stride 2 on 32x32 (16x16 outputs) and a 8->10 linear layer, counted by hand."""
    import torch

    from npuzoo import config

    bench = load_bench("bench_engines")
    assert config.model_names() == bench.MODELS
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10))
    path = tmp_path / "net.onnx"
    torch.onnx.export(net.eval(), torch.zeros(1, 3, 32, 32), str(path), input_names=["image"],
                      output_names=["class"], dynamic_axes={"image": {0: "-1"}, "class": {0: "-1"}},
                      opset_version=11, dynamo=False)
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)
    linear = 2 * 10 * 8
    assert bench.gflop_per_image(str(path)) == pytest.approx((conv + linear) / 1e9)

    # A Gemm whose input shape inference cannot tell (a reshape to a shape computed at run
    # time, as pretrainedmodels 0.7.4's InceptionV4 exports): counted from its weight.
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w"], ["y"], transB=1)]
    weight = numpy_helper.from_array(np.zeros((10, 8), np.float32), "w")
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight]),
                              opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8   # what the installed ONNX Runtime reads
    onnx.save(model, str(tmp_path / "gemm.onnx"))
    assert bench.gflop_per_image(str(tmp_path / "gemm.onnx")) == pytest.approx(linear / 1e9)


def test_the_make_benchmark_splits_each_make_into_its_steps_and_what_it_reused(tmp_path):
    """A steps.jsonl of a cold run (every step, the perf step failed once and ran again) and a
    warm one (the driver's data step only): each make's seconds per step, the rest of its wall
    time, the steps the warm run reused; the tuning records that appeared, not the probe's."""
    bench = load_bench("bench_make")
    log = tmp_path / "steps.jsonl"
    cold = [("data", None, 0.5, 0), ("export", None, 10.0, 0), ("compile", 16, 2.0, 0),
            ("inference", 16, 30.0, 0), ("perf", 16, 1.0, 2), ("perf", 16, 4.0, 0)]
    lines = [json.dumps({"run": "cold", "step": s, "bs": bs, "seconds": t, "status": status})
             for s, bs, t, status in cold]
    lines.insert(2, "not json")
    lines.append(json.dumps({"run": "warm", "step": "data", "bs": None, "seconds": 0.25,
                             "status": 0}))
    log.write_text("\n".join(lines) + "\n")
    assert bench.run_ids(str(log)) == ["cold", "warm"]

    first = bench.breakdown(str(log), "cold", [], 50.0, 20.0)
    assert first["steps_s"] == {"data": 0.5, "export": 10.0, "compile": 2.0, "inference": 30.0,
                                "perf": 5.0}
    assert (first["steps_total_s"], first["orchestration_s"], first["reused"]) == (47.5, 2.5, [])
    second = bench.breakdown(str(log), "warm", ["cold"], 1.0, 0.0)
    assert second["steps_s"] == {"data": 0.25} and second["orchestration_s"] == 0.75
    assert second["reused"] == ["export", "compile", "inference", "perf"]

    block = {"cold": first, "warm": second, "ratio_cold": 12.5, "ratio_warm": 0.25,
             "necessary": {"images": 10, "decode_resize_s": 1.0, "session_s": 0.5,
                           "inference_s": 2.5, "total_s": 4.0},
             "startup_s": {"import npuzoo.steps": 0.1}}
    text = bench.report(block)
    assert re.search(r"^export +10\.00 +20% +reused *$", text, re.M)
    assert re.search(r"^  of which tuning +20\.00 +40% +0\.00 +0%$", text, re.M)
    assert re.search(r"^orchestration \(the rest\) +2\.50 +5% +0\.75 +75%$", text, re.M)
    assert "whole make / necessary work: cold 12.50x, warm 0.25x" in text

    tuning = tmp_path / "build" / "tuning"
    tuning.mkdir(parents=True)
    (tuning / "old.json").write_text(json.dumps({"chosen": {}, "seconds": 7.0}))
    before = {str(tuning / "old.json")}
    (tuning / "new.json").write_text(json.dumps({"chosen": {}, "seconds": 3.5}))
    (tuning / "probe.json").write_text(json.dumps({"gflops": 120.0}))
    assert bench.tuning_seconds(str(tmp_path), before) == 3.5


def test_the_readme_table_of_the_make_benchmark_shows_each_step_or_that_it_was_reused(tmp_path):
    """Per machine and setting: the cold and warm make step by step in the pipeline's order (a
    step the run reused says so, one it never had is a dash), against the necessary work; the
    JSON's text is escaped; no JSON, no table; an unreadable one is left out with a warning."""
    from npuzoo import readme
    run = {"date": "2026-12-07 02:06 UTC", "commit": "abc", "versions": {"onnxruntime": "1.3"},
           "settings": {"model": "mobilenetv1", "bs": 16, "n": 8, "data": "val|<b>",
                        "images": 8, "weights": "random"},
           "cold": {"wall_s": 50.0, "steps_s": {"perf": 5.0, "data": 0.5, "export": 10.0},
                    "orchestration_s": 2.5, "tuning_s": 20.0, "reused": []},
           "warm": {"wall_s": 1.0, "steps_s": {"data": 0.25}, "orchestration_s": 0.75,
                    "tuning_s": 0.0, "reused": ["export", "perf"]},
           "necessary": {"images": 8, "decode_resize_s": 1.0, "session_s": 0.5,
                         "inference_s": 2.5, "total_s": 4.0},
           "ratio_cold": 12.5, "ratio_warm": 0.25}
    out = tmp_path / "make_time.json"
    out.write_text(json.dumps({"machines": {"CPU X (2 CPUs)": {"runs": {"k": run}}}}))
    [machine] = readme.make_time_context(str(out))
    assert machine["machine"] == "CPU X (2 CPUs)"
    [table] = machine["runs"]
    assert table["columns"] == ["data", "export", "perf"]
    cold, warm = table["rows"]
    assert (cold["make"], cold["cells"], cold["wall"], cold["ratio"]) == (
        "cold", ["0.50", "10.00", "5.00"], "50.00", "12.50×")
    assert warm["cells"] == ["0.25", "reused", "reused"] and warm["orchestration"] == "0.75"
    assert table["title"] == ("make mobilenetv1 DATA=val\\|&lt;b> BS=16 N=8 (8 images, "
                              "random weights)")
    assert "decode and resize 1.00 s, one inference pass 2.50 s" in table["necessary"]
    text = readme.render("_make_time.md.j2", {"make_time": [machine]})
    assert "| cold | 50.00 | 0.50 | 10.00 | 5.00 | 2.50 | 20.00 | 12.50× |" in text
    assert "| warm | 1.00 | 0.25 | reused | reused | 0.75 | 0.00 | 0.25× |" in text
    del run["necessary"]
    out.write_text(json.dumps({"machines": {"CPU X (2 CPUs)": {"runs": {"k": run}}}}))
    assert readme.make_time_context(str(out)) is None
    assert readme.make_time_context(str(tmp_path / "absent.json")) is None


@pytest.mark.parametrize("argv, fragment", [
    (["--bs", "0"], "--bs and --n take positive integers"),
    (["--n", "100000"], "has only"),
])
def test_the_make_benchmark_refuses_bad_arguments_before_any_make(tmp_path, argv, fragment):
    data = synthetic_dataset(tmp_path / "data", count=2)
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_make.py"),
                           "--data", str(data), "--no-write", *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_make_benchmark_runs_cold_then_warm_in_a_clone(tmp_path, shared_data):
    """Both makes of the 10 real images in a clone of HEAD (conftest's TUNE=0 and
    PERF_SECONDS=0 reach them, and the settings say so)."""
    out = tmp_path / "make_time.json"
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_make.py"),
                           "--data", str(shared_data / "imagenet-val-10"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [results] = json.loads(out.read_text())["machines"].values()
    block = results["runs"]["mobilenetv1 BS 16 imagenet-val-10 N all"]
    assert block["settings"]["environment"] == {"TUNE": "0", "PERF_SECONDS": "0"}
    assert {"preprocess", "export", "compile", "inference", "perf"} <= set(block["cold"]["steps_s"])
    assert block["cold"]["reused"] == [] and block["cold"]["tuning_s"] == 0
    assert {"preprocess", "export", "compile", "inference", "perf"} <= set(block["warm"]["reused"])
    assert not {"export", "compile", "inference"} & set(block["warm"]["steps_s"])
    assert block["necessary"]["images"] == 10 and block["ratio_cold"] > 0 < block["ratio_warm"]
    assert re.search(r"^whole make / necessary work: cold [\d.]+x, warm [\d.]+x$", done.stdout,
                     re.M)


def test_the_layouts_benchmark_times_every_tuning_layout_and_openvinos_own_recipes(tmp_path):
    """Each layout the tuning times, OpenVINO's explicit streams it leaves out and plain
    OpenVINO's async THROUGHPUT queue, in interleaved rounds; the table's ratios are to the
    first layout (the tuning's fallback), computed per round."""
    bench = load_bench("bench_layouts")
    samples = {"fallback": [100.0, 80.0, 90.0], "other": [110.0, 84.0, 81.0]}
    text = bench.report("m", 4, samples)
    assert re.search(r"fallback +90\.00 +1\.000 \(1\.000-1\.000\)", text)
    assert re.search(r"other +84\.00 +1\.050 \(0\.900-1\.100\)", text)

    model = classifier(tmp_path / "m.onnx", "N")
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_layouts.py"),
                           "--models", "mobilenetv1", "--batch-sizes", "2", "--rounds", "2",
                           "--seconds", "0.05", "--onnx", f"mobilenetv1={model}"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("mobilenetv1 BS 2:"):]
    rows = [line for line in table.splitlines()[1:] if line.strip()]
    from npuzoo import engines, tune
    from npuzoo.bench.runner import default_threads
    threads = default_threads()
    own = bench.be.model_config("mobilenetv1")["runtime"]["backend"]
    expected = [tune.describe(layout) for layout in tune.layouts(own, threads)]
    if engines.backend_version("openvino"):
        expected += [f"OpenVINO {threads} stream(s) x 1 thread(s)"] * (threads > 1)
        expected += [bench.PLAIN_ASYNC]
    assert [row.strip().split("  ")[0] for row in rows] == expected
    assert rows[0].split()[-2:] == ["1.000", "(1.000-1.000)"]

    bad = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_layouts.py"),
                          "--rounds", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--rounds" in bad.stderr and "Traceback" not in bad.stderr


def test_waiting_for_a_quiet_machine_judges_the_cpu_share_only(monkeypatch):
    """wait_quiet has no machine best to hold a reference product against: it runs none (two
    per check, 0.1 s of every CPU, before each of a run's hundreds of measurements)."""
    from npuzoo.bench import load

    def refused(*args, **kwargs):
        raise AssertionError("wait_quiet ran the reference product")

    monkeypatch.setattr(load, "reference_gflops", refused)
    waited = load_bench("bench_engines").wait_quiet(0.6)
    assert 0.5 <= waited < 60
