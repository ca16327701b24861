"""Tests of npuzoo.bench, the ais_bench (G2, T23) compatible ONNX Runtime runner.

Expected values follow docs/ais_bench_compatibility.md, "What npuzoo.bench reproduces". The
models are built here with onnx.helper and are tiny, so every test runs in well under a second
(the few CLI tests pay for one interpreter start each). No timing is asserted.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from npuzoo import bench, engines
from npuzoo.bench import inputs, load, options, outputs
from npuzoo.errors import UserError

from helpers import (
    FLOAT,
    REPO,
    T23_KEYS,
    THROUGHPUT_RE,
    W,
    classifier,
    images,
    one_error_line,
    run_api,
    save_onnx,
    stats_re,
    summary_block,
    write_bins,
)

onnx = pytest.importorskip("onnx")
TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper
TIMESTAMP = re.compile(r"^\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}$")

# -- the engine ----------------------------------------------------------------------------

@pytest.fixture(autouse=True, params=list(engines.BACKENDS))
def default_engine(request, monkeypatch):
    """Every test here runs once per engine as the runner's default: what a command line with
    T23's flags only gets (the CLI tests, in a process of their own, get the real default)."""
    monkeypatch.setattr(engines, "DEFAULT_BACKEND", request.param)
    return request.param


# -- models ---------------------------------------------------------------------------------

def identity(path, shape, cast_int64=False, transpose=False):
    """x -> x (or x cast to int64, or x transposed so the batch lands on axis 1)."""
    if cast_int64:
        node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64)
        out = helper.make_tensor_value_info("y", TensorProto.INT64, shape)
    elif transpose:
        node = helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape[::-1])
    else:
        node = helper.make_node("Identity", ["x"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([node], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], [out])
    return save_onnx(graph, path)


def two_inputs(path):
    """a [N,3] float, b [N,2] int64 -> s = a * 2 (N,3) float, t = b + 1 (N,2) int64."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "two"], ["s"]),
         helper.make_node("Add", ["b", "one"], ["t"])],
        "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("t", TensorProto.INT64, ["N", 2])],
        [numpy_helper.from_array(np.array(2, np.float32), "two"),
         numpy_helper.from_array(np.array(1, np.int64), "one")])
    return save_onnx(graph, path)


def pooled(path):
    """image [N,3,H,W] (dynamic H, W) -> global average pool flattened (N,3)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["p"]),
         helper.make_node("Flatten", ["p"], ["class"])],
        "pooled",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, ["N", 3])])
    return save_onnx(graph, path)


def expected_class(images):
    return images.reshape(-1, 48) @ W


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    return {
        "static": classifier(folder / "static.onnx", 2),
        "dynamic": classifier(folder / "dynamic.onnx", "batch"),
    }


def run_cli(*argv, env=None):
    full_env = dict(os.environ, PYTHONPATH=str(REPO))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "npuzoo.bench", *map(str, argv)], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=120)


# -- command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, field, value", [
    (["-m", "x.onnx"], "model", "x.onnx"),
    (["--model=x.onnx"], "model", "x.onnx"),
    (["--mod", "x.onnx"], "model", "x.onnx"),
    (["-m", "x", "-i", "a,b"], "input", "a,b"),
    (["-m", "x", "--input=a"], "input", "a"),
    (["-m", "x", "-o", "out"], "output", "out"),
    (["-m", "x", "--output", "out", "--output_dir", "d"], "output_dirname", "d"),
    (["-m", "x", "--output", "out", "--output_dirname=d"], "output_dirname", "d"),
    (["-m", "x", "--outfmt", "TXT"], "outfmt", "TXT"),
    (["-m", "x", "--outfmt=NPY"], "outfmt", "NPY"),
    (["-m", "x"], "outfmt", "BIN"),
    (["-m", "x", "-l", "7"], "loop", 7),
    (["-m", "x", "--loop=7"], "loop", 7),
    (["-m", "x"], "loop", 1),
    (["-m", "x", "--debug", "true"], "debug", True),
    (["-m", "x", "--debug=0"], "debug", False),
    (["-m", "x"], "debug", False),
    (["-m", "x", "-d", "3"], "device", 3),
    (["-m", "x", "--device=0,1,2"], "device", [0, 1, 2]),
    (["-m", "x"], "device", 0),
    (["-m", "x", "--dymBatch", "8"], "dymBatch", 8),
    (["-m", "x"], "dymBatch", 0),
    (["-m", "x", "--batchsize", "4"], "batchsize", 4),
    (["-m", "x"], "batchsize", None),
    (["-m", "x", "--pure_data_type", "random"], "pure_data_type", "random"),
    (["-m", "x"], "pure_data_type", "zero"),
    (["-m", "x", "--display_all_summary", "Y"], "display_all_summary", True),
    (["-m", "x", "--display_all_summary=no"], "display_all_summary", False),
    (["-m", "x", "--warmup_count", "3"], "warmup_count", 3),
    (["-m", "x", "--warmup-count=0"], "warmup_count", 0),
    (["-m", "x", "--warmup", "2"], "warmup_count", 2),
    (["-m", "x"], "warmup_count", 1),
    (["-m", "x", "--output_batchsize_axis", "1"], "output_batchsize_axis", 1),
    (["-m", "x"], "output_batchsize_axis", 0),
    (["-m", "x", "--dymHW", "300,500"], "dymHW", "300,500"),
    (["-m", "x", "--dymDims", "a:1,600"], "dymDims", "a:1,600"),
    (["-m", "x", "--dymShape", "a:1,3"], "dymShape", "a:1,3"),
    (["-m", "x", "--outputSize", "100,200"], "outputSize", "100,200"),
    (["-m", "x", "--auto_set_dymshape_mode", "1"], "auto_set_dymshape_mode", True),
    (["-m", "x", "--auto_set_dymdims_mode=TRUE"], "auto_set_dymdims_mode", True),
    (["-m", "x", "--profiler", "false"], "profiler", False),
    (["-m", "x", "--dump", "0"], "dump", False),
    (["-m", "x", "--run_mode", "full"], "run_mode", "full"),
    (["-m", "x"], "run_mode", "array"),
])
def test_flags_parse(argv, field, value):
    assert getattr(options.parse_args(argv), field) == value


@pytest.mark.parametrize("text", ["yes", "YES", "true", "True", "t", "T", "y", "Y", "1"])
def test_bool_true(text):
    assert options.str2bool(text) is True
    assert options.parse_args(["-m", "x", "--debug", text]).debug is True


@pytest.mark.parametrize("text", ["no", "No", "false", "FALSE", "f", "F", "n", "N", "0"])
def test_bool_false(text):
    assert options.str2bool(text) is False
    assert options.parse_args(["-m", "x", "--debug", text]).debug is False


@pytest.mark.parametrize("argv, fragment", [
    (["-m", "x", "--debug", "maybe"], "Boolean value expected"),
    # T23 gives every boolean one value (str2bool, no nargs="?"): a bare flag is refused
    (["-m", "x", "--debug"], "argument --debug: expected one argument"),
    (["-m", "x", "--display_all_summary", "--loop", "2"],
     "argument --display_all_summary: expected one argument"),
    (["-m", "x", "--loop", "0"], "invalid positive int"),
    (["-m", "x", "--batchsize", "0"], "invalid positive int"),
    (["-m", "x", "--warmup_count", "-1"], "invalid nonnegative int"),
    (["-m", "x", "--output_batchsize_axis", "-1"], "invalid nonnegative int"),
    (["-m", "x", "--device", "256"], "valid value range is [0, 255]"),
    (["-m", "x", "--device", "0,300"], "valid value range is [0, 255]"),
    (["-m", "x", "--outfmt", "CSV"], "invalid choice"),
    (["-m", "x", "--pure_data_type", "ones"], "invalid choice"),
    (["-m", "x", "--out", "o"], "ambiguous option"),
    (["-m", "x", "--nosuchflag"], "unrecognized arguments"),
    ([], "--model"),
    (["-m", "x", "--output_dirname", "d"], "--output_dirname can't be used alone"),
    (["-m", "x", "--profiler", "1", "-o", "o"], "--profiler is not supported by this runner"),
    (["-m", "x", "--dump", "true", "-o", "o"], "--dump is not supported by this runner"),
    (["-m", "x", "--acl_json_path", "acl.json"], "--acl_json_path is not supported by this runner"),
    (["-m", "x", "--dymShape_range", "x:1~3"], "--dymShape_range is not supported by this runner"),
])
def test_flag_errors(argv, fragment):
    with pytest.raises(UserError) as err:
        options.parse_args(argv)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_help_works():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for flag in ("--model", "--output_dirname", "--outfmt", "--warmup_count",
                 "--display_all_summary",
                 "--output_batchsize_axis", "--pure_data_type", "--dymBatch"):
        assert flag in proc.stdout


# -- batching ------------------------------------------------------------------------------

def test_files_per_batch_padding_and_values(tmp_path, models, capsys):
    """6 one-image files, batch 4: 2 batches, the last padded with its own first file;
    padded slots write nothing; every output equals numpy's on that file."""
    data = images(6)
    write_bins(tmp_path / "in", data)
    summary, out = run_api(["--model", models["dynamic"], "--dymBatch", "4", "--input",
                            tmp_path / "in",
                            "--output", tmp_path / "out", "--output_dirname", "r", "--outfmt",
                            "NPY"],
                           capsys)
    assert "[INFO] try get model batchsize:4" in out
    assert "filesperbatch:4 runcount:2" in out
    result = tmp_path / "out" / "r"
    assert sorted(os.listdir(result)) == sorted(
        f"img_{i:03d}_{k}.npy" for i in range(6) for k in (0, 1))
    for i in range(6):
        got = np.load(result / f"img_{i:03d}_0.npy")
        assert got.shape == (1, 10)
        np.testing.assert_allclose(got[0], expected_class(data[i:i + 1])[0], rtol=1e-5, atol=1e-5)
    # batchsum reveals the batch contents: batch 1 is files 4,5 then two copies of file 4
    batch0 = data[0:4].sum()
    batch1 = data[4].sum() * 3 + data[5].sum()
    for i in range(4):
        np.testing.assert_allclose(np.load(result / f"img_{i:03d}_1.npy"), [[batch0]], rtol=1e-4)
    for i in (4, 5):
        np.testing.assert_allclose(np.load(result / f"img_{i:03d}_1.npy"), [[batch1]], rtol=1e-4)
    assert summary["NPU_compute_time"]["count"] == 2   # the padded batch is timed
    assert list(summary["filesinfo"]) == [str(i) for i in range(6)]
    assert summary["filesinfo"]["5"]["infiles"] == [str(tmp_path / "in" / "img_005.bin")]
    assert summary["filesinfo"]["5"]["outfiles"] == [str(result / "img_005_0.npy"),
                                                     str(result / "img_005_1.npy")]


def test_static_batch_files_holding_whole_batches(tmp_path, models, capsys):
    data = images(6, seed=1)
    write_bins(tmp_path / "in", [data[0:2], data[2:4], data[4:6]])
    summary, out = run_api(["-m", models["static"], "-i", tmp_path / "in", "-o", tmp_path / "out",
                            "--output_dirname", "r"], capsys)
    assert "try get model batchsize:2" in out
    assert "filesperbatch:1 runcount:3" in out
    for i in range(3):
        got = np.fromfile(tmp_path / "out" / "r" / f"img_{i:03d}_0.bin", dtype=np.float32)
        np.testing.assert_allclose(got.reshape(2, 10), expected_class(data[2 * i:2 * i + 2]),
                                   rtol=1e-5,
                                   atol=1e-5)
    assert summary["NPU_compute_time"]["count"] == 3


def test_dynamic_batch_resolution(tmp_path, models, capsys):
    data = images(3, seed=2)
    write_bins(tmp_path / "in", data)
    argv = ["-m", models["dynamic"], "-i", tmp_path / "in"]
    _, out = run_api(argv, capsys)                          # default: batch 1
    assert "try get model batchsize:1" in out and "filesperbatch:1 runcount:3" in out
    _, out = run_api(argv + ["--batchsize", "2"], capsys)    # --batchsize resolves it
    assert "try get model batchsize" not in out and "filesperbatch:2 runcount:2" in out
    assert "batchsize.mean(2)" in out
    _, out = run_api(argv + ["--batchsize", "2", "--dymBatch", "3"], capsys)  # dymBatch wins
    assert "filesperbatch:3 runcount:1" in out


def test_npy_inputs_contribute_array_bytes(tmp_path, models, capsys):
    data = images(4, seed=3)
    os.makedirs(tmp_path / "in")
    for i in range(4):
        np.save(tmp_path / "in" / f"s{i}.npy", data[i:i + 1])
    run_api(["-m", models["dynamic"], "--dymBatch", "2", "-i", tmp_path / "in", "-o",
             tmp_path / "out",
             "--output_dirname", "r"], capsys)
    for i in range(4):
        got = np.fromfile(tmp_path / "out" / "r" / f"s{i}_0.bin", dtype=np.float32)
        np.testing.assert_allclose(got, expected_class(data[i:i + 1])[0], rtol=1e-5, atol=1e-5)


def test_directory_listing_filters_and_natural_sort(tmp_path, models, capsys):
    data = images(4, seed=4)
    write_bins(tmp_path / "in", data, names=["img10.bin", "img2.BIN", "img1.bin", "img9.bin"])
    (tmp_path / "in" / "notes.txt").write_text("skip me")
    (tmp_path / "in" / "sub").mkdir()
    np.zeros(5, np.float32).tofile(tmp_path / "in" / "sub" / "deep.bin")   # no recursion
    summary, _ = run_api(["-m", models["dynamic"], "-i", tmp_path / "in", "-o", tmp_path / "out",
                          "--output_dirname", "r"], capsys)
    order = [os.path.basename(v["infiles"][0]) for v in summary["filesinfo"].values()]
    assert order == ["img1.bin", "img2.BIN", "img9.bin", "img10.bin"]


def test_file_list_input_equals_directory_input(tmp_path, models, capsys):
    data = images(3, seed=5)
    paths = write_bins(tmp_path / "in", data)
    run_api(["-m", models["dynamic"], "-i", ",".join(paths), "-o", tmp_path / "o1",
             "--output_dirname", "r"],
            capsys)
    run_api(["-m", models["dynamic"], "-i", tmp_path / "in", "-o", tmp_path / "o2",
             "--output_dirname", "r"],
            capsys)
    for name in sorted(os.listdir(tmp_path / "o1" / "r")):
        assert (tmp_path / "o1" / "r" / name).read_bytes() \
            == (tmp_path / "o2" / "r" / name).read_bytes()


def test_two_inputs_dirs_and_file_chunks(tmp_path, capsys):
    model = two_inputs(tmp_path / "two.onnx")
    a = np.arange(12, dtype=np.float32).reshape(4, 1, 3)
    b = np.arange(8, dtype=np.int64).reshape(4, 1, 2) * 10
    pa = write_bins(tmp_path / "a", a, names=[f"x{i}.bin" for i in range(4)])
    pb = write_bins(tmp_path / "b", b, names=[f"y{i}.bin" for i in range(4)])
    summary, _ = run_api(["-m", model, "--batchsize", "2", "-i",
                          "{},{}".format(tmp_path / "a", tmp_path / "b"),
                          "-o", tmp_path / "out", "--output_dirname", "dirs", "--outfmt", "TXT"],
                          capsys)
    assert summary["filesinfo"]["3"]["infiles"] == [pa[3], pb[3]]
    for i in range(4):
        s = (tmp_path / "out" / "dirs" / f"x{i}_0.txt").read_text()
        t = (tmp_path / "out" / "dirs" / f"x{i}_1.txt").read_text()
        assert s == "".join(f"{v:f} " for v in a[i].ravel() * 2) + "\n"
        assert t == "".join(f"{v:d} " for v in b[i].ravel() + 1) + "\n"
    run_api(["-m", model, "--batchsize", "2", "-i", ",".join(pa + pb),
             "-o", tmp_path / "out", "--output_dirname", "files", "--outfmt", "TXT"], capsys)
    for name in os.listdir(tmp_path / "out" / "dirs"):
        assert (tmp_path / "out" / "files" / name).read_text() \
            == (tmp_path / "out" / "dirs" / name).read_text()


def test_tensorsize_error_first_file(tmp_path, models):
    np.zeros(25, np.float32).tofile(tmp_path / "bad.bin")   # 100 bytes; the input takes 192
    with pytest.raises(UserError) as err:
        bench.run(["-m", models["dynamic"], "-i", str(tmp_path / "bad.bin")], threads=1)
    assert "arg0 tensorsize: 192 filesize: 100 not match" in str(err.value)
    assert str(tmp_path / "bad.bin") in str(err.value)


def test_tensorsize_error_later_file(tmp_path, models):
    data = images(3)
    write_bins(tmp_path / "in", data)
    np.zeros(24, np.float32).tofile(tmp_path / "in" / "img_004.bin")   # half an image
    with pytest.raises(UserError) as err:
        bench.run(["-m", models["dynamic"], "--dymBatch", "2", "-i", str(tmp_path / "in"),
                   "-o", str(tmp_path / "out"), "--output_dirname", "r"], threads=1)
    assert "tensorsize: 384 filesize: 96 not match" in str(err.value)
    assert str(tmp_path / "in" / "img_004.bin") in str(err.value)
    assert not (tmp_path / "out").exists()   # refused before anything is written


def test_save_out_files_error_and_batchsize_axis(tmp_path, capsys):
    model = identity(tmp_path / "t.onnx", [4, 2], transpose=True)   # output (2, 4): batch on axis 1
    data = np.arange(8, dtype=np.float32).reshape(4, 1, 2)
    write_bins(tmp_path / "in", data)
    argv = ["-m", model, "-i", tmp_path / "in", "-o", tmp_path / "out", "--output_dirname", "r"]
    with pytest.raises(UserError) as err:
        run_api(argv, capsys)
    assert "save out files error" in str(err.value)
    run_api(argv + ["--output_batchsize_axis", "1"], capsys)
    for i in range(4):
        got = np.fromfile(tmp_path / "out" / "r" / f"img_{i:03d}_0.bin", dtype=np.float32)
        np.testing.assert_array_equal(got, data[i].T.ravel())


# -- output formats ---------------------------------------------------------------------------

def test_txt_bin_npy_bytes(tmp_path, capsys):
    model = identity(tmp_path / "id.onnx", [1, 2, 3])
    x = np.array([[[1.5, -2.25, 0.0], [3.0, 1e-7, -0.5]]], np.float32)
    x.tofile(tmp_path / "a.b.bin")
    for fmt in ("TXT", "BIN", "NPY"):
        run_api(["-m", model, "-i", tmp_path / "a.b.bin", "-o", tmp_path / "out",
                 "--output_dirname", fmt,
                 "--outfmt", fmt], capsys)
    # the stem is cut at the first "."
    assert os.listdir(tmp_path / "out" / "TXT") == ["a_0.txt"]
    assert (tmp_path / "out" / "TXT" / "a_0.txt").read_bytes() == (
        b"1.500000 -2.250000 0.000000 \n3.000000 0.000000 -0.500000 \n")
    assert (tmp_path / "out" / "BIN" / "a_0.bin").read_bytes() == x.tobytes()
    raw = (tmp_path / "out" / "NPY" / "a_0.npy").read_bytes()
    assert raw.startswith(b"\x93NUMPY")
    got = np.load(tmp_path / "out" / "NPY" / "a_0.npy")
    assert got.dtype == np.float32 and got.shape == (1, 2, 3)
    np.testing.assert_array_equal(got, x)


def test_int64_output_txt_and_bin(tmp_path, capsys):
    model = identity(tmp_path / "c.onnx", [1, 3], cast_int64=True)
    np.array([[7.9, -2.0, 3.0]], np.float32).tofile(tmp_path / "v.bin")
    for fmt in ("TXT", "BIN"):
        run_api(["-m", model, "-i", tmp_path / "v.bin", "-o", tmp_path / "out", "--output_dirname",
                 fmt,
                 "--outfmt", fmt], capsys)
    assert (tmp_path / "out" / "TXT" / "v_0.txt").read_bytes() == b"7 -2 3 \n"
    assert (tmp_path / "out" / "BIN" / "v_0.bin").read_bytes() == np.array([7, -2, 3],
                                                                           np.int64).tobytes()


def _savetxt_reference(ndata):
    """ais_bench's own TXT writer (np.savetxt per row), to compare text exactly."""
    import io
    outdata = ndata.reshape(-1, ndata.shape[-1])
    fmt = "%f" if ndata.dtype in (np.float16, np.float32, np.float64) else "%d"
    handle = io.BytesIO()
    for i in range(outdata.shape[0]):
        np.savetxt(handle, np.c_[outdata[i]], fmt=fmt, newline=" ")
        handle.write(b"\n")
    return handle.getvalue()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int32,
                                   np.int64, np.uint64, np.bool_])
def test_txt_writer_matches_savetxt(dtype):
    rng = np.random.default_rng(7)
    data = (rng.normal(size=(2, 3, 17)) * 1000).astype(dtype)
    if np.dtype(dtype).kind == "f":
        data.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
    assert outputs.txt_bytes(data) == _savetxt_reference(data)


# -- output layout and summary ------------------------------------------------------------

def test_timestamp_dir_and_summary_beside_it(tmp_path, models, capsys):
    summary, out = run_api(["-m", models["static"], "-o", tmp_path / "out"], capsys)
    entries = sorted(os.listdir(tmp_path / "out"))
    dirs = [e for e in entries if os.path.isdir(tmp_path / "out" / e)]
    assert len(dirs) == 1 and TIMESTAMP.match(dirs[0])
    assert entries == sorted([dirs[0], dirs[0] + "_summary.json"])
    assert "[INFO] output path:{}".format(tmp_path / "out" / dirs[0]) in out
    assert sorted(os.listdir(tmp_path / "out" / dirs[0])) == ["pure_infer_data_0.bin",
                                                              "pure_infer_data_1.bin"]
    on_disk = json.loads((tmp_path / "out" / (dirs[0] + "_summary.json")).read_text())
    assert on_disk == json.loads(json.dumps(summary))


def test_summary_json_schema(tmp_path, models, capsys):
    data = images(3)
    write_bins(tmp_path / "in", data)
    argv = ["-m", models["dynamic"], "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
            "--output_dirname", "run", "--loop", "2"]
    _summary, _ = run_api(argv, capsys)
    assert sorted(os.listdir(tmp_path / "out")) == ["run", "run_summary.json"]
    assert not any("summary" in name or "sumary" in name
                   for name in os.listdir(tmp_path / "out" / "run"))
    doc = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert list(doc) == ["filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency",
                         "throughput", "npu_compute_time_list", "pid"]
    assert doc["args"][1:] == argv and isinstance(doc["args"][0], str)
    assert isinstance(doc["pid"], int) and doc["pid"] == os.getpid()
    for key in ("NPU_compute_time", "H2D_latency", "D2H_latency"):
        block = doc[key]
        for stat in ("min", "max", "mean", "median", "percentile(99%)"):
            assert isinstance(block[stat], float)
        assert isinstance(block["count"], int)
    times = doc["npu_compute_time_list"]
    assert len(times) == doc["NPU_compute_time"]["count"] == 3 * 2
    assert doc["H2D_latency"]["count"] == doc["D2H_latency"]["count"] == 3
    assert all(isinstance(t, float) and t > 0 for t in times)
    npu = doc["NPU_compute_time"]
    assert npu["min"] == pytest.approx(min(times)) and npu["max"] == pytest.approx(max(times))
    assert npu["mean"] == pytest.approx(np.mean(times))
    assert npu["median"] == pytest.approx(np.median(times))
    assert npu["percentile(99%)"] == pytest.approx(np.percentile(times, 99))
    assert doc["throughput"] == pytest.approx(1000 * 1 / np.mean(times))
    assert set(doc["filesinfo"]) == {"0", "1", "2"}
    for entry in doc["filesinfo"].values():
        assert set(entry) == {"infiles", "outfiles"}
        assert all(os.path.isfile(p) for p in entry["outfiles"])


def test_nothing_saved_without_output(tmp_path, models, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary, out = run_api(["-m", models["static"]], capsys)
    assert os.listdir(tmp_path) == ["models"]
    assert "output path" not in out
    assert summary["filesinfo"] == {}


def test_rerun_overwrites(tmp_path, models, capsys):
    argv = ["-m", models["dynamic"], "-i", tmp_path / "in", "-o", tmp_path / "out",
            "--output_dirname", "same"]
    write_bins(tmp_path / "in", images(1, seed=10))
    run_api(argv, capsys)
    first = (tmp_path / "out" / "same" / "img_000_0.bin").read_bytes()
    data = images(1, seed=11)
    write_bins(tmp_path / "in", data)
    summary, _ = run_api(argv + ["--loop", "3"], capsys)
    second = (tmp_path / "out" / "same" / "img_000_0.bin").read_bytes()
    assert first != second
    np.testing.assert_allclose(np.frombuffer(second, np.float32), expected_class(data)[0],
                               rtol=1e-5, atol=1e-5)
    doc = json.loads((tmp_path / "out" / "same_summary.json").read_text())
    assert doc["NPU_compute_time"]["count"] == 3 and doc == json.loads(json.dumps(summary))
    assert sorted(os.listdir(tmp_path / "out")) == ["same", "same_summary.json"]


def test_output_dirname_with_a_trailing_slash_keeps_the_summary_inside(tmp_path, models, capsys):
    """T23 joins --output and --output_dirname as typed and appends `_summary.json`: the
    InceptionV4 guide's `--output_dirname ./result_bs4/` puts `_summary.json` in the folder."""
    write_bins(tmp_path / "in", images(2))
    argv = ["-m", models["dynamic"], "-i", tmp_path / "in", "-o", tmp_path / "out",
            "--output_dirname", "./result_bs4/"]
    summary, out = run_api(argv, capsys)
    assert "[INFO] output path:{}".format(os.path.join(str(tmp_path / "out"),
                                                       "./result_bs4/")) in out
    assert sorted(os.listdir(tmp_path / "out")) == ["result_bs4"]
    listed = sorted(os.listdir(tmp_path / "out" / "result_bs4"))
    assert listed[0] == "_summary.json" and "img_001_0.bin" in listed
    doc = json.loads((tmp_path / "out" / "result_bs4" / "_summary.json").read_text())
    assert doc == json.loads(json.dumps(summary))
    assert doc["filesinfo"]["0"]["outfiles"][0] == os.path.join(
        str(tmp_path / "out"), "./result_bs4/", "img_000_0.bin")


# -- printed block (doc: "The printed summary block") -----------------------------------------

# Verbatim from the T23 Readme (the example block of ais_bench's own README): the regexes above
# must accept it.
T23_BLOCK = (REPO / "tests" / "fixtures" / "t23_readme_block.txt").read_text()


def test_regexes_accept_the_t23_readme_block():
    block = summary_block(T23_BLOCK)
    assert stats_re("H2D_latency").match(block[0])
    assert stats_re("NPU_compute_time").match(block[1])
    assert stats_re("D2H_latency").match(block[2])
    assert THROUGHPUT_RE.match(block[3]).group(3) == "1503.759349974173"


def test_printed_block_default(tmp_path, models, capsys):
    summary, out = run_api(["-m", models["static"], "--loop", "4"], capsys)
    lines = out.splitlines()
    assert lines[0] == "[INFO] try get model batchsize:2"
    assert "[INFO] warm up 1 done" in lines
    block = summary_block(out)
    assert len(block) == 2
    npu = stats_re("NPU_compute_time").match(block[0])
    assert npu, block[0]
    assert float(npu.group(3)) == summary["NPU_compute_time"]["mean"]
    tp = THROUGHPUT_RE.match(block[1])
    assert tp, block[1]
    assert tp.group(1) == "2"
    assert float(tp.group(3)) == pytest.approx(1000 * 2 / float(tp.group(2)))
    assert float(tp.group(3)) == summary["throughput"]
    assert "H2D_latency" not in out and "D2H_latency" not in out
    for line in lines:
        assert line.startswith("[INFO] ") or line.startswith("[DEBUG] ")


def test_printed_block_display_all_summary(tmp_path, models, capsys):
    _, out = run_api(["-m", models["static"], "--display_all_summary", "1"], capsys)
    block = summary_block(out)
    assert len(block) == 4
    assert stats_re("H2D_latency").match(block[0])
    assert stats_re("NPU_compute_time").match(block[1])
    assert stats_re("D2H_latency").match(block[2])
    assert THROUGHPUT_RE.match(block[3])


def test_debug_prints_model_table(tmp_path, models, capsys):
    _, out = run_api(["-m", models["dynamic"], "--debug", "1", "--dymBatch", "3"], capsys)
    assert re.search(r"^\[DEBUG\] input\s+0\s+image\s+float32\s+\[-1, 3, 4, 4\]\s+\[3, 3, 4, "
                     r"4\]\s+576$",
                     out, re.M), out
    assert re.search(r"^\[DEBUG\] output\s+1\s+batchsum\s+float32", out, re.M)
    _, out = run_api(["-m", models["dynamic"]], capsys)
    assert "[DEBUG]" not in out


# -- pure inference -------------------------------------------------------------------------

class _CountingSession:
    def __init__(self, session):
        self.session, self.calls = session, 0

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


@pytest.fixture
def counted(monkeypatch):
    sessions = []
    real = engines.open_sessions

    def wrapper(*args, **kwargs):
        opened, inputs, outputs = real(*args, **kwargs)
        sessions.extend(_CountingSession(session) for session in opened)
        return sessions[-len(opened):], inputs, outputs

    monkeypatch.setattr(engines, "open_sessions", wrapper)
    return sessions


def test_pure_inference_loop_and_warmup(tmp_path, models, capsys, counted):
    summary, out = run_api(["-m", models["static"], "--loop", "7", "--warmup_count", "3", "-o",
                            tmp_path,
                            "--output_dirname", "p"], capsys)
    assert "[INFO] warm up 3 done" in out
    assert counted[0].calls == 3 + 7
    assert summary["NPU_compute_time"]["count"] == 7 == len(summary["npu_compute_time_list"])
    assert summary["H2D_latency"]["count"] == 1
    outfiles = [str(tmp_path / "p" / f"pure_infer_data_{i}.bin") for i in (0, 1)]
    assert summary["filesinfo"] == {"0": {"infiles": ["pure_infer_data"], "outfiles": outfiles}}
    zeros = np.fromfile(tmp_path / "p" / "pure_infer_data_0.bin", np.float32)
    np.testing.assert_array_equal(zeros, np.zeros(20, np.float32))


def test_pure_inference_no_warmup(tmp_path, models, capsys, counted):
    summary, out = run_api(["-m", models["static"], "--warmup_count", "0"], capsys)
    assert "[INFO] warm up 0 done" in out
    assert counted[0].calls == 1 and summary["NPU_compute_time"]["count"] == 1


def test_loop_with_input_runs_each_batch_loop_times(tmp_path, models, capsys, counted):
    write_bins(tmp_path / "in", images(5))
    summary, _ = run_api(["-m", models["static"], "-i", tmp_path / "in", "--loop", "3",
                          "--warmup-count", "2"],
                         capsys)
    assert summary["NPU_compute_time"]["count"] == 3 * 3   # 5 files, 2 per batch -> 3 batches
    assert counted[0].calls == 2 + 9


def test_pure_inference_random_bytes_do_not_crash(tmp_path, models, capsys):
    # random bytes read as float32 may be NaN or inf: that must not stop the run or the TXT writer
    summary, _ = run_api(["-m", models["dynamic"], "--pure_data_type", "random", "--loop", "3",
                          "-o", tmp_path,
                          "--output_dirname", "r", "--outfmt", "TXT"], capsys)
    assert summary["NPU_compute_time"]["count"] == 3
    text = (tmp_path / "r" / "pure_infer_data_0.txt").read_text()
    assert text.endswith(" \n") and len(text.split()) == 10


def test_dynamic_hw_needs_a_shape(tmp_path, capsys):
    model = pooled(tmp_path / "p.onnx")
    with pytest.raises(UserError) as err:
        run_api(["-m", model], capsys)
    assert "--dymShape" in str(err.value)
    summary, out = run_api(["-m", model, "--dymShape", "image:2,3,5,6"], capsys)
    assert "try get model batchsize:2" in out and summary["NPU_compute_time"]["count"] == 1
    summary, out = run_api(["-m", model, "--dymHW", "7,9", "--debug", "1"], capsys)
    assert "[1, 3, 7, 9]" in out


def test_auto_set_dymshape_mode(tmp_path, capsys):
    model = pooled(tmp_path / "p.onnx")
    os.makedirs(tmp_path / "in")
    arrays = [np.full((n, 3, 2 + n, 3), float(n), np.float32) for n in (1, 3)]
    for i, array in enumerate(arrays):
        np.save(tmp_path / "in" / f"a{i}.npy", array)
    _summary, out = run_api(["-m", model, "-i", tmp_path / "in", "--auto_set_dymshape_mode", "true",
                            "-o", tmp_path / "out", "--output_dirname", "r", "--outfmt", "NPY"],
                            capsys)
    for i, array in enumerate(arrays):
        np.testing.assert_allclose(np.load(tmp_path / "out" / "r" / f"a{i}_0.npy"),
                                   array.mean(axis=(2, 3)))
    assert "batchsize.mean(2.0)" in out   # mean of the per-file batch sizes, as T23


# -- multi-device --------------------------------------------------------------------------

def test_device_list_runs_each_device(tmp_path, models, capsys):
    data = images(4)
    write_bins(tmp_path / "in", data)
    result, out = run_api(["-m", models["dynamic"], "-d", "0,1", "-i", tmp_path / "in", "-o",
                           tmp_path / "out",
                           "--output_dirname", "m"], capsys)
    assert sorted(os.listdir(tmp_path / "out" / "m")) == ["device0", "device0_summary.json",
                                                          "device1", "device1_summary.json"]
    assert sorted(os.listdir(tmp_path / "out" / "m" / "device0")) == ["img_000_0.bin",
                                                                      "img_000_1.bin",
                                                                     "img_001_0.bin",
                                                                     "img_001_1.bin"]
    assert sorted(os.listdir(tmp_path / "out" / "m" / "device1")) == ["img_002_0.bin",
                                                                      "img_002_1.bin",
                                                                     "img_003_0.bin",
                                                                     "img_003_1.bin"]
    lines = out.splitlines()
    assert lines.count("[INFO] -----------------Performance Summary------------------") == 2
    per_device = [line for line in lines if line.startswith("i:")]
    assert len(per_device) == 2
    values = []
    for i, line in enumerate(per_device):
        match = re.match(rf"^i:{i} device_{i} throughput:({FLOAT}) start_time:({FLOAT}) "
                         rf"end_time:({FLOAT})$",
                         line)
        assert match, line
        values.append(float(match.group(1)))
    total = re.search(rf"^\[INFO\] summary throughput:({FLOAT})$", out, re.M)
    assert total and float(total.group(1)) == pytest.approx(sum(values))
    assert result["throughput"] == pytest.approx(sum(values))


# -- errors through the command line ----------------------------------------------------------

def test_cli_missing_model(tmp_path):
    proc = run_cli("--model", tmp_path / "nope.onnx")
    one_error_line(proc, "model file not found", "nope.onnx", status=None)
    assert proc.returncode == 2


def test_cli_wrong_size_bin(tmp_path, models):
    np.zeros(25, np.float32).tofile(tmp_path / "bad.bin")
    proc = run_cli("--model", models["dynamic"], "--input", tmp_path / "bad.bin", "--output",
                   tmp_path / "o")
    one_error_line(proc, "arg0 tensorsize: 192 filesize: 100 not match", str(tmp_path / "bad.bin"),
                   status=None)


def test_cli_output_dirname_without_output(models):
    proc = run_cli("-m", models["static"], "--output_dirname", "x")
    one_error_line(proc, "--output_dirname", status=None)


def test_cli_unsupported_flag_and_bad_threads(models):
    one_error_line(run_cli("-m", models["static"], "--profiler", "true", "-o", "o"),
                          "not supported by this runner", status=None)
    one_error_line(run_cli("-m", models["static"], env={"NPUZOO_THREADS": "zero"}),
                   "NPUZOO_THREADS", status=None)


def test_cli_success_end_to_end(tmp_path, models):
    data = images(2)
    write_bins(tmp_path / "in", data)
    proc = run_cli("--model=" + models["dynamic"], "--input", tmp_path / "in", "--output",
                   tmp_path / "o",
                   "--output_dir=r", "--outfmt", "TXT", "--display_all_summary=true")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "[INFO] warm up 1 done" in proc.stdout
    assert THROUGHPUT_RE.search(proc.stdout.splitlines()[-2])
    text = (tmp_path / "o" / "r" / "img_000_0.txt").read_text()
    assert text.endswith(" \n") and text.count("\n") == 1
    np.testing.assert_allclose([float(v) for v in text.split()], expected_class(data[:1])[0],
                               atol=2e-6)
    doc = json.loads((tmp_path / "o" / "r_summary.json").read_text())
    assert doc["args"][0].endswith("__main__.py") and "--output_dir=r" in doc["args"]


def test_static_model_rejects_other_dymbatch(models):
    with pytest.raises(UserError) as err:
        bench.run(["-m", models["static"], "--dymBatch", "4"], threads=1)
    assert "static batch of 2" in str(err.value)


def test_om_model_refused(tmp_path):
    (tmp_path / "m.om").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        bench.run(["-m", str(tmp_path / "m.om")], threads=1)
    assert ".om" in str(err.value)


def test_on_a_terminal_the_summary_speaks_of_the_cpu_in_rounded_figures(models, capsys,
                                                                          monkeypatch):
    monkeypatch.delenv("NPUZOO_BENCH_T23_OUTPUT", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    summary, out = run_api(["-m", models["static"], "--loop", "3"], capsys)
    block = summary_block(re.sub(r"Performance Summary \(CPU, (ONNX Runtime|OpenVINO)\)",
                                 "Performance Summary", out))
    assert "NPU" not in "\n".join(block)
    assert re.fullmatch(r"\[INFO\] compute time per batch of 2 on the CPU \(ms\): mean \d+\.\d\d, "
                        r"median \d+\.\d\d, min \d+\.\d\d, max \d+\.\d\d, p99 \d+\.\d\d \(3 runs\)",
                        block[0]), block[0]
    assert block[1] == "[INFO] throughput: {:.1f} images/s".format(summary["throughput"])
    # the summary JSON keeps the contract's keys and full precision
    assert set(summary) >= {"NPU_compute_time", "throughput", "npu_compute_time_list"}
    # and the contract's verbatim block is one variable away
    monkeypatch.setenv("NPUZOO_BENCH_T23_OUTPUT", "1")
    _, out = run_api(["-m", models["static"], "--loop", "3"], capsys)
    assert stats_re("NPU_compute_time").match(summary_block(out)[0])


# -- npuzoo's own flags: streams, engine, precision, time-bounded loops, load --------------------

NPUZOO_KEYS = ["backend", "backend_version", "precision", "streams", "threads_per_stream",
               "batchsize",
               "timed_runs", "wall_time_ms", "throughput_wall", "loop_runs", "loop_seconds",
               "throughput_windows", "throughput_median", "throughput_spread",
               "loadavg_1m_start", "loadavg_1m_end", "cpus", "own_cpu_s", "other_cpu_s", "steal_s",
               "other_cpu_share", "reference_gflops", "reference_change", "reference_best_gflops",
               "reference_below_best", "contended", "contended_rule"]


@pytest.mark.parametrize("argv, field, value", [
    (["-m", "x"], "streams", 1),
    (["-m", "x", "--streams", "3"], "streams", 3),
    (["-m", "x", "--streams=2"], "streams", 2),
    (["-m", "x"], "backend", "the default"),
    (["-m", "x.ort"], "backend", "onnxruntime"),          # only ONNX Runtime reads .ort files
    (["-m", "x", "--backend", "openvino"], "backend", "openvino"),
    (["-m", "x"], "precision", "fp32"),
    (["-m", "x", "--precision", "int8"], "precision", "int8"),
    (["-m", "x"], "loop_seconds", 0.0),
    (["-m", "x", "--loop_seconds", "2.5"], "loop_seconds", 2.5),
    (["-m", "x", "--loop", "3"], "loop", 3),             # an exact name wins over --loop_seconds
    (["-m", "x"], "npuzoo_keys", False),
    (["-m", "x", "--streams", "1"], "npuzoo_keys", True),  # given at its default: keys wanted
    (["-m", "x", "--loop_seconds", "0"], "npuzoo_keys", True),
])
def test_npuzoo_flags_parse(argv, field, value):
    expected = engines.DEFAULT_BACKEND if value == "the default" else value
    assert getattr(options.parse_args(argv), field) == expected


@pytest.mark.parametrize("argv, fragment", [
    (["-m", "x", "--streams", "0"], "invalid positive int"),
    (["-m", "x", "--backend", "tensorrt"], "invalid choice"),
    (["-m", "x", "--precision", "fp16"], "invalid choice"),
    (["-m", "x", "--loop_seconds", "-1"], "invalid nonnegative number"),
    (["-m", "x", "--loop_seconds", "inf"], "invalid nonnegative number"),
    (["-m", "x", "--loop_seconds", "soon"], "is not a number"),
])
def test_npuzoo_flag_errors(argv, fragment):
    with pytest.raises(UserError) as err:
        options.parse_args(argv)
    assert fragment in str(err.value)


def _tree(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, names in os.walk(folder) for f in names}


@pytest.mark.parametrize("outfmt", ["TXT", "NPY"])
def test_streams_write_the_same_files_and_filesinfo(tmp_path, models, capsys, outfmt):
    """7 files, batch 2 (the last batch padded), loop 2: 1, 2 and 3 streams write identical
    result files and the same filesinfo, in the same order, and time as many calls."""
    write_bins(tmp_path / "in", images(7, seed=21))
    docs = {}
    for streams in (1, 2, 3):
        out = tmp_path / f"s{streams}"
        summary, _ = run_api(["-m", models["dynamic"], "-i", tmp_path / "in", "--batchsize", "2",
                              "--loop", "2", "-o", out, "--output_dirname", "r", "--outfmt", outfmt,
                              "--streams", streams], capsys)
        docs[streams] = summary
        assert summary["streams"] == streams
    reference = _tree(tmp_path / "s1" / "r")
    assert len(reference) == 2 * 7
    for streams in (2, 3):
        assert _tree(tmp_path / f"s{streams}" / "r") == reference
        got = json.loads(json.dumps(docs[streams]["filesinfo"]).replace(f"/s{streams}/", "/s1/"))
        assert list(got.items()) == list(docs[1]["filesinfo"].items())
        assert docs[streams]["NPU_compute_time"]["count"] == 4 * 2 == docs[streams]["timed_runs"]
        assert docs[streams]["H2D_latency"]["count"] == docs[streams]["D2H_latency"]["count"] == 4
        assert docs[streams]["loop_runs"] == 2


@pytest.mark.parametrize("streams", [1, 2])
def test_an_input_read_error_in_a_later_batch_stops_the_run(tmp_path, models, monkeypatch, streams):
    """Batches after the first are read ahead in a reader thread: its error reaches the caller
    as the same one-line UserError, naming the file."""
    write_bins(tmp_path / "in", images(6))
    real = inputs.read_into
    victim = str(tmp_path / "in" / "img_004.bin")

    def failing(buf, offset, size, path):
        if path == victim:
            raise UserError(f"cannot read input file {path}: Input/output error")
        real(buf, offset, size, path)

    monkeypatch.setattr(inputs, "read_into", failing)
    with pytest.raises(UserError, match=r"cannot read input file .*img_004.bin"):
        bench.run(["-m", models["dynamic"], "--dymBatch", "2", "-i", str(tmp_path / "in"),
                   "-o", str(tmp_path / "out"), "--output_dirname", "r", "--streams", str(streams)],
                  threads=2)


@pytest.mark.parametrize("streams", [1, 2])
def test_an_output_write_error_stops_the_run(tmp_path, models, monkeypatch, streams):
    """Outputs are written by a writer thread while the next batch runs: a failed write
    reaches the caller as the runner's one-line UserError."""
    write_bins(tmp_path / "in", images(6))
    real = outputs.save_data_to_file

    def failing(path, ndata):
        if "img_002" in path:
            raise UserError(f"cannot write {path}: No space left on device")
        real(path, ndata)

    monkeypatch.setattr(outputs, "save_data_to_file", failing)
    with pytest.raises(UserError, match=r"cannot write .*img_002_0.bin: No space left"):
        bench.run(["-m", models["dynamic"], "--dymBatch", "2", "-i", str(tmp_path / "in"),
                   "-o", str(tmp_path / "out"), "--output_dirname", "r", "--streams", str(streams)],
                  threads=2)


def test_many_batches_on_one_stream_keep_their_order_and_values(tmp_path, models, capsys):
    """Read-ahead and write-behind over 9 batches: every output is its own input's result."""
    data = images(17, seed=5)
    write_bins(tmp_path / "in", data)
    summary, _ = run_api(["-m", models["dynamic"], "--dymBatch", "2", "-i", tmp_path / "in",
                          "-o", tmp_path / "out", "--output_dirname", "r"], capsys)
    assert len(summary["filesinfo"]) == 17
    for i in range(17):
        got = np.fromfile(tmp_path / "out" / "r" / f"img_{i:03d}_0.bin", dtype=np.float32)
        np.testing.assert_allclose(got, data[i].reshape(48) @ W, rtol=1e-5, atol=1e-5)
        assert summary["filesinfo"][str(i)]["infiles"] \
            == [str(tmp_path / "in" / f"img_{i:03d}.bin")]


def test_streams_share_the_runs_of_one_batch(tmp_path, models, capsys, counted):
    """Pure inference (the perf step): --loop 9 over 3 streams is 9 timed runs in all, on 3
    sessions, each warmed up --warmup_count times."""
    summary, _ = run_api(["-m", models["static"], "--loop", "9", "--warmup_count", "2", "--backend",
                          "onnxruntime", "--streams", "3", "-o", tmp_path, "--output_dirname", "p"],
                          capsys,
                         threads=3)
    assert len(counted) == 3
    assert sum(s.calls for s in counted) == 9 + 3 * 2
    assert all(s.calls >= 2 for s in counted)
    assert summary["NPU_compute_time"]["count"] == 9 == len(summary["npu_compute_time_list"])
    assert summary["H2D_latency"]["count"] == summary["D2H_latency"]["count"] == 1
    assert summary["threads_per_stream"] == 1 and summary["loop_runs"] == 9
    assert sorted(os.listdir(tmp_path / "p")) == ["pure_infer_data_0.bin", "pure_infer_data_1.bin"]


@pytest.mark.parametrize("threads, streams, per_stream",
                         [(1, 1, 1), (2, 1, 2), (2, 2, 1), (1, 3, 1),
                                                          (8, 2, 4), (5, 2, 2)])
def test_threads_per_stream(models, capsys, monkeypatch, threads, streams, per_stream):
    seen = []
    real = engines.open_onnxruntime

    def spy(model_path, threads):
        seen.append(threads)
        return real(model_path, threads)

    monkeypatch.setattr(engines, "open_onnxruntime", spy)
    summary, _ = run_api(["-m", models["static"], "--streams", streams, "--backend", "onnxruntime"],
                         capsys,
                         threads=threads)
    assert seen == [per_stream] * streams
    assert summary["threads_per_stream"] == per_stream


def test_time_bounded_loop(models, capsys):
    summary, out = run_api(["-m", models["static"], "--loop", "2", "--loop_seconds", "0.3"], capsys)
    assert summary["wall_time_ms"] >= 300
    assert summary["loop_runs"] == summary["timed_runs"] == summary["NPU_compute_time"]["count"] > 2
    assert summary["loop_seconds"] == 0.3
    assert "time-bounded loop: {} runs in at least 0.3 s".format(summary["loop_runs"]) in out
    # --loop stays a floor: a short bound never cuts it
    summary, _ = run_api(["-m", models["static"], "--loop", "40", "--loop_seconds", "0.001"],
                         capsys)
    assert summary["loop_runs"] >= 40


def test_a_time_bounded_loop_ends_on_whole_rounds_of_the_streams():
    """3 runs on 2 streams would leave the last one alone on its core, the other idle (the
    wall time of 4): a time-bounded loop runs 4; an exact --loop (no seconds) keeps its 3."""
    import threading

    from npuzoo.bench import runner

    class Instant:
        def run(self, output_names, feeds):
            return []

    for seconds, runs in ((1e-9, 4), (0, 3)):
        times, _ = runner.run_batch([Instant(), Instant()], {}, 3, seconds, threading.Event())
        assert len(times) == runs
    times, _ = runner.run_batch([Instant()] * 3, {}, 4, 1e-9, threading.Event())
    assert len(times) == 6


def test_time_bounded_loop_applies_to_each_batch(tmp_path, models, capsys):
    write_bins(tmp_path / "in", images(4, seed=3))
    summary, _ = run_api(["-m", models["dynamic"], "-i", tmp_path / "in", "--batchsize", "2",
                          "--loop", "1", "--loop_seconds", "0.1", "--streams", "2"], capsys,
                          threads=2)
    assert summary["wall_time_ms"] >= 100
    assert summary["loop_runs"] > 1 and summary["timed_runs"] >= 2 * summary["loop_runs"]


def test_npuzoo_keys_follow_t23_keys_only_when_asked(tmp_path, models, capsys, monkeypatch):
    """T23's keys alone without npuzoo's flags (as the real front end writes them, see
    test_ascend.py); with one of them the npuzoo keys follow, and `throughput` keeps its T23
    meaning (per call) beside `throughput_wall` (images / wall time across the streams)."""
    monkeypatch.setattr(load, "reference_gflops", lambda: 1.0)   # a steady machine
    argv = ["-m", models["static"], "--loop", "6", "-o", tmp_path, "--output_dirname"]
    plain, _ = run_api(argv + ["plain"], capsys)
    assert list(plain) == T23_KEYS
    summary, _ = run_api(argv + ["streams", "--streams", "2"], capsys, threads=2)
    doc = json.loads((tmp_path / "streams_summary.json").read_text())
    assert list(doc) == T23_KEYS + NPUZOO_KEYS
    assert doc["throughput"] == pytest.approx(1000 * 2 / np.mean(doc["npu_compute_time_list"]))
    assert doc["throughput_wall"] == pytest.approx(1000 * 2 * 6 / doc["wall_time_ms"])
    assert doc["wall_time_ms"] > 0 and doc["timed_runs"] == 6
    assert (doc["backend"], doc["precision"], doc["streams"], doc["batchsize"]) == (
        engines.DEFAULT_BACKEND, "fp32", 2, 2)
    assert doc["backend_version"] == engines.backend_version(engines.DEFAULT_BACKEND)
    assert doc["cpus"] >= 1 and doc["own_cpu_s"] >= 0
    if os.path.isfile("/proc/stat"):
        assert doc["other_cpu_s"] >= 0
        assert doc["contended"] is None   # a few ms: too short for /proc/stat's clock ticks
    summary, _ = run_api(["-m", models["static"], "--loop_seconds", "0.6"], capsys, threads=2)
    if os.path.isfile("/proc/stat"):
        assert summary["contended"] == (
            summary["other_cpu_s"] > 0.10 * summary["cpus"] * summary["wall_time_ms"] / 1000)


def test_npuzoo_lines_keep_the_t23_block_last_and_alone_with_the_word(tmp_path, models):
    proc = run_cli("-m", models["static"], "--loop", "3", "--streams", "2", "--loop_seconds",
                   "0.05")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert THROUGHPUT_RE.match(lines[-2])
    assert [line for line in lines if "throughput" in line] == [lines[-2]]
    npuzoo = [line for line in lines if line.startswith("[INFO] npuzoo: ")]
    assert len(npuzoo) == 2
    assert re.search(r"(ONNX Runtime|OpenVINO) [\d.]+, fp32, 2 streams x 1 thread: \d+ runs of "
                     r"batch 2 in [\d.]+ s "
                     r"of wall time = [\d.]+ images/s across the streams", npuzoo[0]), npuzoo[0]
    assert re.search(r"load average \(1 min\) [\d.]+ -> [\d.]+; other processes took [\d.]+ CPU-s "
                     r"of "
                     r"[\d.]+ on \d+ CPUs? \(\d+%\): (not contended|CONTENDED|too short to judge)",
                     npuzoo[1]), npuzoo[1]


def _stat(jiffies):
    """A /proc/stat with cpu0 and cpu1 each at `jiffies` (busy, steal) and some idle time."""
    rows = [f"cpu{c} {b // 2} 0 {b - b // 2 - s} 1000 5 0 0 {s} 0 0"
            for c, (b, s) in enumerate(jiffies)]
    total_b, total_s = sum(b for b, _ in jiffies), sum(s for _, s in jiffies)
    return "\n".join([f"cpu {total_b // 2} 0 {total_b - total_b // 2 - total_s} 2000 10 0 0 "
                      f"{total_s} 0 0"] + rows) + "\nintr 0\n"


@pytest.mark.parametrize("busy_after, own, contended, other", [
    ((100 + 110, 100 + 95), 1.5, True, 0.55),    # 2.05 CPU-s busy, 1.5 ours: 0.55 of 2.0 -> 27%
    ((100 + 80, 100 + 80), 1.5, False, 0.10),    # 1.6 busy, 1.5 ours: 0.1 of 2.0 -> 5%
    ((100 + 50, 100 + 50), 1.5, False, 0.0),
        # busy below our own (tick rounding): never negative
])
def test_load_monitor_counts_other_processes_cpu_time(tmp_path, monkeypatch, busy_after, own,
                                                      contended,
                                                      other):
    stat = tmp_path / "stat"
    stat.write_text(_stat([(100, 0), (100, 0)]))
    clock = iter([10.0, 11.0])                              # 1 s of wall time
    monitor = load.LoadMonitor(str(stat), clock=lambda: next(clock), reference=lambda: 1.0)
    monitor.cpus, monitor.tick = [0, 1], 100
    own_times = iter([5.0, 5.0 + own])
    monkeypatch.setattr(monitor, "_own", lambda: next(own_times))
    monitor.start()
    stat.write_text(_stat([(busy_after[0], 2), (busy_after[1], 1)]))
    result = monitor.stop()
    assert result["cpus"] == 2
    assert result["other_cpu_s"] == pytest.approx(other)
    assert result["own_cpu_s"] == pytest.approx(own)
    assert result["steal_s"] == pytest.approx(0.03)
    assert result["other_cpu_share"] == pytest.approx(other / 2.0)
    assert result["contended"] is contended
    assert "0.1 * cpus * wall_s" in result["contended_rule"]
    clock = iter([10.0, 10.2])                              # 0.4 CPU-s of capacity: 40 ticks
    own_times = iter([5.0, 5.0])
    short = load.LoadMonitor(str(stat), clock=lambda: next(clock), reference=lambda: 1.0)
    short.cpus, short.tick = [0, 1], 100
    monkeypatch.setattr(short, "_own", lambda: next(own_times))
    short.start()
    stat.write_text(_stat([(busy_after[0] + 30, 2), (busy_after[1] + 30, 1)]))
    assert short.stop()["contended"] is None


def test_load_monitor_reads_only_this_process_cpus_and_survives_no_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(_stat([(100, 0), (100, 0)]))
    monitor = load.LoadMonitor(str(stat))
    monitor.cpus = [1]
    assert monitor._busy() == (100, 0, 1)
    monitor.cpus = [7]                                       # not listed: the total line
    assert monitor._busy() == (200, 0, 2)
    gone = load.LoadMonitor(str(tmp_path / "absent"), reference=lambda: 1.0).start().stop()
    assert gone["other_cpu_s"] is None and gone["contended"] is None
    assert isinstance(gone["own_cpu_s"], float)


def _qdq_model(path):
    """x [N,4] -> QuantizeLinear -> DequantizeLinear -> y: a (tiny) int8 QDQ graph."""
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
         numpy_helper.from_array(np.array(0, np.int8), "z")])
    return save_onnx(graph, path)


def test_precision_is_checked_against_the_graph(tmp_path, models, capsys):
    qdq = _qdq_model(tmp_path / "q.onnx")
    summary, _ = run_api(["-m", qdq, "--precision", "int8"], capsys)
    assert summary["precision"] == "int8"
    with pytest.raises(UserError) as err:
        run_api(["-m", qdq, "--precision", "fp32"], capsys)
    assert "--precision fp32, but the graph is quantised (DequantizeLinear, QuantizeLinear)" \
        in str(err.value)
    with pytest.raises(UserError) as err:
        run_api(["-m", models["static"], "--precision", "int8"], capsys)
    assert "no quantised operator" in str(err.value)
    summary, _ = run_api(["-m", models["static"], "--precision", "fp32"], capsys)
    assert summary["precision"] == "fp32"


def test_without_its_default_engine_the_runner_falls_back_and_says_so(monkeypatch, capsys):
    from npuzoo import engines

    installed = {"onnxruntime": "1.31.1"}
    monkeypatch.setattr(engines, "DEFAULT_BACKEND", "openvino")  # the project's default
    monkeypatch.setattr(engines, "backend_version", installed.get)
    assert options.parse_args(["-m", "x.onnx"]).backend == "onnxruntime"
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("note: OpenVINO (the default engine) is not installed; running on "
                           "ONNX Runtime")
    # an engine asked for by name is never swapped (its absence is an error where it loads)
    assert options.parse_args(["-m", "x.onnx", "--backend", "openvino"]).backend == "openvino"
    installed["openvino"] = "2026.4.1"
    assert options.parse_args(["-m", "x.onnx"]).backend == "openvino"
    assert capsys.readouterr().err == ""
