"""The runner's second engine (`--backend openvino`, npuzoo/engines.py) against the first.

Fast: tiny onnx.helper models through both engines (same result files within float noise,
same filesinfo, same summary keys and printed block; OpenVINO compiled in f32; one stream or
several), model.yaml's `runtime.backend` read with a tolerant default, the one-line refusals.

Slow (CI): every model of the zoo, exported with random weights by its own pth2onnx.py (once
per session), its own preprocess.py on the 10 real images of ../shared/data/imagenet-val-10,
then the runner at batch 4 (three batches, the last padded) with each engine: OpenVINO on the
export with 1 and 2 streams, and on the graph npuzoo.compile writes for ONNX Runtime (static
batch, `com.microsoft` FusedConv), which OpenVINO 2026.4 reads too. Stated tolerance:

- logits: |OpenVINO - ONNX Runtime| <= 1e-4 x max|ONNX Runtime logit| of the same image
  (measured: 1e-10..1.1e-6 of it);
- top-5: the same five classes in the same order, for every image whose ONNX Runtime top-6
  logits are further apart than twice that image's largest engine difference (closer logits
  are a tie at this precision, either order being right); at least 8 of the 10 images qualify
  (all 10 did for every model).

Random-weight logits are small and close (the seeded initialisation, no training), which makes
the top-5 check stricter than with the published weights, not looser. Tests never download:
the upstream trees of DPN131, TResNet-M and InceptionV4 come from the sdists cached in
.venv/sdists (by `make venv`); a model whose sdist is not cached is skipped.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from npuzoo import bench, config, engines, run
from npuzoo.errors import UserError

from helpers import (
    T23_KEYS,
    THROUGHPUT_RE,
    classifier,
    images,
    run_api,
    stats_re,
    summary_block,
    write_bins,
)

pytest.importorskip("openvino")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = config.model_names()
LOGIT_TOL = 1e-4   # of the image's largest |logit|
MIN_TOP5_IMAGES = 8


@pytest.fixture
def tiny(tmp_path):
    return classifier(tmp_path / "tiny.onnx", "batch")


def _outputs(folder):
    return {name: np.load(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


# -- fast: tiny models -------------------------------------------------------------------------

@pytest.mark.parametrize("streams", [1, 2])
def test_openvino_writes_what_onnxruntime_writes(tmp_path, tiny, capsys, streams):
    write_bins(tmp_path / "in", images(7, seed=5))
    docs = {}
    for backend in engines.BACKENDS:
        docs[backend], _ = run_api(
            ["-m", tiny, "-i", tmp_path / "in", "--batchsize", "2", "-o", tmp_path / backend,
             "--output_dirname", "r", "--outfmt", "NPY", "--backend", backend, "--streams", streams,
             "--loop", "2"], capsys, threads=2)
    ort, ov = _outputs(tmp_path / "onnxruntime" / "r"), _outputs(tmp_path / "openvino" / "r")
    assert sorted(ort) == sorted(ov) and len(ort) == 14
    for name in ort:
        assert ort[name].dtype == ov[name].dtype and ort[name].shape == ov[name].shape
        np.testing.assert_allclose(ov[name], ort[name], rtol=1e-5, atol=1e-5)
    a, b = docs["onnxruntime"], docs["openvino"]
    assert list(a) == list(b)
    assert json.dumps(b["filesinfo"]).replace("/openvino/",
                                              "/onnxruntime/") == json.dumps(a["filesinfo"])
    assert b["backend"] == "openvino" \
        and b["backend_version"] == engines.backend_version("openvino")
    assert b["streams"] == streams and b["NPU_compute_time"]["count"] == 8 == b["timed_runs"]


def test_openvino_printed_block_is_the_t23_block(tiny, capsys, monkeypatch):
    monkeypatch.setenv("NPUZOO_BENCH_T23_OUTPUT", "1")
    summary, out = run_api(["-m", tiny, "--backend", "openvino", "--dymBatch", "3", "--loop", "3",
                            "--display_all_summary", "1"], capsys)
    assert "[INFO] try get model batchsize:3" in out       # --dymBatch resolves it, as with ORT
    block = summary_block(out)
    assert len(block) == 4
    assert stats_re("NPU_compute_time").match(block[1])
    match = THROUGHPUT_RE.match(block[3])
    assert match and match.group(1) == "3" and float(match.group(3)) == summary["throughput"]
    assert "[INFO] npuzoo: OpenVINO " in out


def test_openvino_on_a_terminal_names_itself(tiny, capsys, monkeypatch):
    monkeypatch.delenv("NPUZOO_BENCH_T23_OUTPUT", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _, out = run_api(["-m", tiny, "--backend", "openvino"], capsys)
    assert "Performance Summary (CPU, OpenVINO)" in out


def test_openvino_pure_inference_plain_summary_has_t23_keys_only_without_npuzoo_flags(tiny, capsys,
                                                                                    monkeypatch):
    """The default engine is DEFAULT_BACKEND; naming it adds npuzoo's keys, as any npuzoo flag."""
    summary, _ = run_api(["-m", tiny], capsys)
    assert list(summary) == T23_KEYS
    summary, _ = run_api(["-m", tiny, "--backend", engines.DEFAULT_BACKEND], capsys)
    assert summary["backend"] == engines.DEFAULT_BACKEND


def test_openvino_compiles_in_f32_with_one_stream_per_runner_stream(tiny):
    sessions, inputs, outputs = engines.open_sessions(tiny, 1, "openvino", 3)
    assert len(sessions) == 3 and [d.name for d in inputs] == ["image"]
    assert [d.name for d in outputs] == ["class", "batchsum"]
    assert inputs[0].shape == [-1, 3, 4, 4] and inputs[0].datatype == np.float32
    sessions[0].prepare({"image": [2, 3, 4, 4]})
    compiled = sessions[0].compiled
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    # asked for 3 streams of 1 thread; OpenVINO caps both at the cores it finds (2 here), and
    # the runner's 3 infer requests then share its streams
    assert 1 <= int(compiled.get_property("NUM_STREAMS")) <= 3
    assert 1 <= int(compiled.get_property("INFERENCE_NUM_THREADS")) <= 3
    assert sessions[0].idle.qsize() == 3
    x = images(2, seed=9)
    out = [s.run(None, {"image": x}) for s in sessions]
    for got in out[1:]:
        np.testing.assert_array_equal(got[0], out[0][0])


def test_openvino_refusals(tmp_path, tiny):
    (tmp_path / "m.ort").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        bench.run(["-m", str(tmp_path / "m.ort"), "--backend", "openvino"], threads=1)
    assert "OpenVINO cannot read an ONNX Runtime .ort file" in str(err.value)
    (tmp_path / "m.om").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        bench.run(["-m", str(tmp_path / "m.om"), "--backend", "openvino"], threads=1)
    assert ".om" in str(err.value)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError) as err:
        bench.run(["-m", str(tmp_path / "bad.onnx"), "--backend", "openvino"], threads=1)
    assert str(err.value).startswith("OpenVINO cannot read {}".format(tmp_path / "bad.onnx"))
    assert "\n" not in str(err.value)


def mobilenetv1_with(runtime):
    data = yaml.safe_load(Path(REPO, "models/mobilenetv1/model.yaml").read_text(encoding="utf-8"))
    data.pop("runtime")
    if runtime is not None:
        data["runtime"] = runtime
    return data


@pytest.mark.parametrize("runtime, backend", [
    (None, config.DEFAULT_BACKEND),
    ({}, config.DEFAULT_BACKEND),
    ({"backend": None}, config.DEFAULT_BACKEND),
    ({"backend": "openvino"}, "openvino"),
    ({"backend": "onnxruntime"}, "onnxruntime"),
])
def test_runtime_backend_is_read_with_a_default(runtime, backend):
    where = os.path.join(REPO, "models/mobilenetv1")
    assert config.parse(mobilenetv1_with(runtime), "model.yaml", where).backend == backend


@pytest.mark.parametrize("runtime, fragment", [
    ({"backend": "tensorrt"}, "runtime.backend: expected one of onnxruntime, openvino"),
    ("openvino", "runtime: expected a mapping"),
])
def test_runtime_backend_errors_name_the_field(runtime, fragment):
    with pytest.raises(UserError) as err:
        config.parse(mobilenetv1_with(runtime), "model.yaml", os.path.join(REPO, "models"))
    assert str(err.value).startswith("model.yaml: " + fragment)


def test_every_model_backend_reaches_the_make_layer():
    for name in MODELS:
        spec = config.load(name)
        assert spec.backend in engines.BACKENDS
        settings = run.Settings({**run.DEFAULTS, "DATA": "/d", "TUNE": "0"})
        plan = run.plan_of(name, settings, "cpu")
        assert plan.make_variables()["ENGINE"] == spec.backend and plan.variant == ""


# -- slow: the zoo's models through both engines -------------------------------------------------

def _upstream_tree(name, dest):
    """The patched upstream tree from the cached sdist (never a download), or None when the
    network is defined in the model's folder."""
    from npuzoo import source

    upstream = config.load(name).upstream
    if not upstream.sources:
        return None
    pypi = [entry for entry in upstream.sources if isinstance(entry, config.PypiSource)]
    if not pypi:
        pytest.skip(f"{name}: no pypi source to build the upstream tree offline")
    package, version = source.parse_requirement(pypi[0].requirement)
    if not source.sdist_candidates(source.DEFAULT_CACHE, package, version):
        pytest.skip(f"{name}: {pypi[0].requirement} is not cached in {source.DEFAULT_CACHE} (run "
                    f"`make venv`)")
    source.fetch(dataclasses.replace(upstream, sources=tuple(pypi[:1])),
                 os.path.join(REPO, "models", name), str(dest),
                 cache=source.DEFAULT_CACHE, log=lambda *_: None)
    return str(dest)


def _script(name, script, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "models", name, script),
                           *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="session")
def zoo_exports(tmp_path_factory):
    """name -> its random-weight ONNX export, made on first use and kept for the session."""
    made = {}
    root = tmp_path_factory.mktemp("engines-zoo")

    def get(name):
        if name not in made:
            tree = _upstream_tree(name, root / f"{name}-src")
            path = root / f"{name}.onnx"
            _script(name, "pth2onnx.py", "random", path, *(["--source", tree] if tree else []))
            made[name] = str(path)
        return made[name]

    return get


@pytest.fixture(scope="session")
def zoo_inputs(shared_data, tmp_path_factory):
    """name -> the folder of its preprocessed 10 real images (its own preprocess.py)."""
    made = {}
    root = tmp_path_factory.mktemp("engines-prep")

    def get(name):
        if name not in made:
            out = root / name
            _script(name, "preprocess.py", shared_data / "imagenet-val-10" / "val", out)
            assert len(list(out.glob("*.bin"))) == 10
            made[name] = str(out)
        return made[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_gives_the_same_predictions_on_both_engines(name, zoo_exports, zoo_inputs,
                                                              tmp_path,
                                                             capsys):
    from npuzoo import compile as zoo_compile

    onnx_path, prep = zoo_exports(name), zoo_inputs(name)
    compiled = str(tmp_path / f"{name}_bs4.onnx")   # what `make` runs on the CPU
    zoo_compile.compile_model(onnx_path, compiled, 4)
    classes = config.load(name).output.classes
    logits = {}
    for backend, streams, model in (("onnxruntime", 1, onnx_path), ("openvino", 1, onnx_path),
                                    ("openvino", 2, onnx_path), ("openvino", 1, compiled)):
        key = "{}-{}{}".format(backend, streams, "-compiled" if model == compiled else "")
        run_api(["--model", model, "--input", prep, "--batchsize", "4", "--output", tmp_path,
                 "--output_dirname", key, "--outfmt", "NPY", "--backend", backend,
                 "--streams", streams], capsys, threads=2)
        files = sorted(os.listdir(tmp_path / key))
        assert len(files) == 10 and all(f.endswith("_0.npy") for f in files)
        logits[key] = np.concatenate([np.load(tmp_path / key / f) for f in files])
        assert logits[key].shape == (10, classes)
    ort = logits["onnxruntime-1"]
    for key in ("openvino-1", "openvino-2", "openvino-1-compiled"):
        ov = logits[key]
        diff = np.abs(ov - ort).max(axis=1)
        scale = np.abs(ort).max(axis=1)
        assert (diff <= LOGIT_TOL * scale).all(), (key, (diff / scale).max())
        top6 = -np.sort(-ort, axis=1)[:, :6]
        separated = (-np.diff(top6, axis=1) > 2 * diff[:, None]).all(axis=1)
        assert separated.sum() >= MIN_TOP5_IMAGES, (key, separated)
        ort_top5, ov_top5 = np.argsort(-ort, axis=1)[:, :5], np.argsort(-ov, axis=1)[:, :5]
        assert (ort_top5[separated] == ov_top5[separated]).all(), key


# -- the benchmark's verdict and the README table (no timing: synthetic figures) -------------------

def _bench_module():
    import importlib.util
    path = os.path.join(REPO, "benchmarks", "bench_engines.py")
    spec = importlib.util.spec_from_file_location("_bench_engines_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _measure(value, contended=False):
    return {"images_per_s": value, "load": {"contended": contended}}


def test_bench_summary_uses_quiet_rounds_and_same_round_ratios():
    be = _bench_module()
    ort = [_measure(100), _measure(50, True), _measure(110), _measure(100, None)]
    runner = [_measure(105), _measure(90), _measure(99), _measure(300)]
    got = be.summarise(runner, ort)
    assert got["quiet_rounds"] == 2 and got["used"] == "quiet rounds"   # rounds 1 and 3
    assert got["images_per_s"] == pytest.approx(102.0)
    assert got["ratio_to_ort"] == pytest.approx((1.05 + 0.9) / 2)
    assert got["rounds"] == [105, 90, 99, 300] and got["contended"] == [False, False, False, False]
    noisy = be.summarise([_measure(80, True)], [_measure(100, True)])
    assert noisy["quiet_rounds"] == 0 and noisy["ratio_to_ort"] == pytest.approx(0.8)


def test_bench_default_engine_rule():
    be = _bench_module()

    def rows(ov_over_ort):
        out = []
        for bs, (s1, s2) in ov_over_ort.items():
            contenders = {}
            for streams, ratio in ((1, s1), (2, s2)):
                # three rounds: the middle one contended (left out), the others at `ratio`
                contenders[be.runner_name("onnxruntime", "fp32", streams)] = {
                    "rounds": [100.0, 100.0, 50.0], "contended": [False, True, False]}
                contenders[be.runner_name("openvino", "fp32", streams)] = {
                    "rounds": [100.0 * ratio, 10.0, 50.0 * ratio],
                    "contended": [False, False, False]}
            out.append({"bs": bs, "contenders": contenders})
        return out

    ahead = be.pick_winner(rows({1: (1.2, 1.1), 4: (0.9, 1.3), 16: (1.1, 0.95)}), [1, 2])
    assert ahead["backend"] == "openvino" and ahead["openvino_ahead"] == 4
    behind = be.pick_winner(rows({1: (0.9, 0.98), 4: (1.01, 0.97), 16: (0.99, 0.95)}), [1, 2])
    assert behind["backend"] == "onnxruntime"
    tie = be.pick_winner(rows({1: (1.5, 0.98)}), [1, 2])
    assert tie["backend"] == "openvino"                        # 1 each: the geometric mean decides
    close = be.pick_winner(rows({1: (1.005, 0.98), 4: (1.009, 1.0)}), [1, 2])
    assert close["backend"] == "onnxruntime" and close["openvino_ahead"] == 0   # within 1%: no vote
    assert ahead["basis"] == "quiet rounds"
    # a comparison without a quiet round is left out while others have one
    noisy = rows({1: (0.9, 0.9), 4: (1.5, 1.5)})
    for streams in (1, 2):
        for backend in ("onnxruntime", "openvino"):
            noisy[1]["contenders"][be.runner_name(backend, "fp32",
                                                  streams)]["contended"] = [True] * 3
    judged = be.pick_winner(noisy, [1, 2])
    assert judged["backend"] == "onnxruntime" \
        and judged["left_out_no_quiet_round"] == ["bs4/s1", "bs4/s2"]
    models = {"a": {"winner": ahead}, "b": {"winner": behind}, "c": {"winner": dict(behind)}}
    verdict = be.default_verdict(models)
    assert verdict["choice"] == "onnxruntime" \
        and verdict["per_model_overrides"] == {"a": "openvino"}
    assert be.default_verdict({"a": {"winner": ahead},
                               "b": {"winner": behind}})["choice"] == "onnxruntime"


def test_readme_renders_the_engines_table_from_the_benchmark_json(tmp_path):
    from npuzoo import readme

    assert readme.engines_context(str(tmp_path / "absent.json")) is None
    be = _bench_module()
    contenders = {
        "ort": {"images_per_s": 290.04, "ratio_to_ort": 1.0, "quiet_rounds": 3},
        be.runner_name("onnxruntime", "fp32", 2): {"images_per_s": 320.0, "ratio_to_ort": 1.1,
                                                    "quiet_rounds": 3,
                                                    "fraction_of_attainable": 0.9},
        be.runner_name("onnxruntime", "fp32", 1): {"images_per_s": 289.0, "ratio_to_ort": 0.996,
                                                    "quiet_rounds": 0},
        "torch": {"images_per_s": 100.0, "ratio_to_ort": 0.345, "quiet_rounds": 2},
    }
    contenders[be.TUNED] = {"images_per_s": 330.0, "ratio_to_ort": 1.14, "quiet_rounds": 3,
                            "fraction_of_attainable": 0.93}
    versus = be.tuned_vs_best_plain(
        {be.TUNED: [{"images_per_s": 300.0, "load": {"contended": False},
                     "chosen": {"engine": "openvino", "streams": 2, "hint": "THROUGHPUT"}}],
         "ort": [_measure(250.0)], "openvino": [_measure(310.0)]}, rounds=1)
    assert versus["ratio"] == pytest.approx(300 / 310) and versus["best_plain"] == "openvino"
    assert versus["per_round"] == pytest.approx(300 / 310)
    block = {
        "date": "2026-11-29 12:00 UTC", "commit": "abc",
        "machine": {"cpu": "Xeon", "usable_cpus": 2},
        "versions": {"onnxruntime": "1.31.1", "numpy": "2"},
        "settings": {"rounds": 5, "seconds": 2},
        "attainable_gflops": {"median": 250.0}, "loadavg_1m": {"start": 0.5, "end": 0.7},
        "contended_measurements": 1, "measurements": 40,
        "rows": [{"bs": 1, "contenders": contenders, "tuned_vs_best_plain": versus}]}
    # the older one-machine layout is sorted by machine when the benchmark reads it
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"models": {"mobilenetv1": block}}))
    document = be.read_document(str(old))
    assert list(document["machines"]) == ["Xeon (2 CPUs)"]
    epyc = dict(block, machine={"cpu": "EPYC", "usable_cpus": 2})
    document["machines"]["EPYC (2 CPUs)"] = {"machine": epyc["machine"],
                                             "models": {"mobilenetv1": epyc},
                                             "default_backend": {"choice": "openvino"}}
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "engines.json").write_text(json.dumps(document))
    text = readme.render_top(root=str(tmp_path))
    assert "## CPU engines compared" in text
    assert ("| model | BS | plain ONNX Runtime (images/s) | runner, ONNX Runtime, 1 stream | "
            "runner, ONNX Runtime, 2 streams | runner, tuned | PyTorch eager | "
            "runner, tuned, vs fastest plain | fastest: share of attainable |") in text
    row = ("| mobilenetv1 | 1 | 290.0 | 1.00× † | 1.10× | 1.14× | 0.34× | 0.97× (OpenVINO ×2, "
           "THROUGHPUT; best plain: plain OpenVINO; per round 0.97×) | 93% (runner, tuned) |")
    assert text.count(row) == 2   # one table per machine, each machine's results kept
    assert text.index("### Xeon (2 CPUs)") < text.index("### EPYC (2 CPUs)")
    assert "† no round of this figure was free of other processes" in text
    assert "default engine would be **onnxruntime**" in text
    assert "default engine would be **openvino**" in text
    assert ("- mobilenetv1: 2026-11-29 12:00 UTC, commit abc, onnxruntime 1.31.1; "
            "5 rounds of 2 s") in text
    # the committed README's root: without the JSON the table is simply absent
    assert "CPU engines compared" not in readme.render_top(root=str(tmp_path / "elsewhere"))


def test_the_tuned_runner_is_compared_with_the_fastest_plain_median_and_per_round():
    """Three plain contenders as fast as the tuned runner but noisy: the best of each round is
    the luckiest of three, so the per-round figure falls short of 1 where the medians do not;
    a contended round is left out of both."""
    be = _bench_module()
    noisy = {"ort": [100.0, 104.0, 96.0, 500.0], "openvino": [96.0, 100.0, 104.0, 500.0],
             "openvino-async": [104.0, 96.0, 100.0, 500.0]}
    measured = {k: [_measure(v) for v in values] for k, values in noisy.items()}
    measured[be.TUNED] = [dict(_measure(v), chosen={"engine": "openvino", "streams": 1,
                                                    "hint": None})
                          for v in (100.0, 100.0, 100.0, 100.0)]
    measured["ort"][3]["load"]["contended"] = True
    versus = be.tuned_vs_best_plain(measured, rounds=4)
    assert versus["ratio"] == pytest.approx(1.0)
    assert versus["per_round"] == pytest.approx(100 / 104)
    assert versus["used"] == "quiet rounds" and versus["chosen"]["engine"] == "openvino"
