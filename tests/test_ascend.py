"""The Ascend path (issues 5, 12 and 18): atc and the real ais_bench front ends as the ModelZoo
guides drive them, chip detection, the CANN environment.

No Ascend hardware exists here. An unmodified ais_bench front end (`python3 -m ais_bench` from
../shared/third_party, put on PYTHONPATH, never copied: the 2023 one, ais_bench-9d6da90, or
the ait one, ais_bench-ait-3baadae7, which checks the paths it is given) runs on the test-only
aclruntime stand-in (tests/standins/acl/), which executes the stand-in `.om` with ONNX Runtime
and, under the 2023 front end, has the paths checked by the ait front end's own functions;
the stand-in atc and npu-smi (tests/standins/) enforce docs/ais_bench_compatibility.md ("atc",
"SOC names and npu-smi"). All of them log their argv, so these tests check the exact commands
mk/pipeline.mk issues, that what the real tools reject is rejected, and that a missing toolkit,
an unknown chip and a wrong-chip .om each stop with one `error: ...` line. Tests that need the
front end skip when ../shared/third_party
is absent (NPUZOO_SHARED_THIRD_PARTY points elsewhere).
"""

import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from npuzoo import ascend, config, soc
from npuzoo.errors import UserError

from helpers import (
    FRONTENDS,
    HAS_FRONTEND,
    REPO,
    STANDINS,
    SYSTEM_PATH,
    THIRD_PARTY,
    VENV_BIN,
    Namespace,
    frontend_env,
    one_error_line,
    scratch_repository,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
TensorProto, helper = onnx.TensorProto, onnx.helper
ACL = os.path.join(STANDINS, "acl")  # the aclruntime stand-in and its metadata
needs_frontend = pytest.mark.skipif(
    not HAS_FRONTEND,
    reason=f"the ais_bench front ends are not in {THIRD_PARTY} (../shared/third_party)")
LABELS = {"2023": "0.0.2 (tools 9d6da90)", "ait": "0.0.2 (ait 3baadae7)"}  # the report's names
STANDIN_ACLRUNTIME = "0.0.2 (Python source: a stand-in, not the compiled backend)"


# -- helpers -----------------------------------------------------------------------------------

def standin_env(tmp_path, standins=True, frontend="2023", **extra):
    """The stand-ins first on PATH, the real ais_bench `frontend` and the aclruntime stand-in on
    PYTHONPATH (or none of them), no CANN."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_STANDIN", "ASCEND_")) and k not in ("PYTHONPATH",)}
    path = [VENV_BIN, SYSTEM_PATH]
    if standins:
        path.insert(0, STANDINS)
        env.update(frontend_env(REPO, frontend))
    else:
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PATH"] = os.pathsep.join(path)
    env["NPUZOO_ASCEND_ROOT"] = str(tmp_path / "no-ascend-here")
    env["NPUZOO_STANDIN_LOG"] = str(tmp_path / "standin.log")
    env["NPUZOO_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def log_entries(tmp_path, tool=None):
    path = tmp_path / "standin.log"
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in entries if tool is None or e["tool"] == tool]


def calls(tmp_path, tool=None):
    return [e["argv"] for e in log_entries(tmp_path, tool)]


def assert_real_frontend(tmp_path, frontend="2023"):
    """Every ais_bench run logged was the unmodified `frontend` from ../shared/third_party."""
    runs = log_entries(tmp_path, "ais_bench")
    assert runs
    for entry in runs:
        assert entry["frontend"] == str(FRONTENDS[frontend] / "ais_bench"), entry


def run(argv, env, cwd=None, umask=-1):
    return subprocess.run([str(a) for a in argv], env=env, cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=600, umask=umask)


def atc(tmp_path, *args, **extra):
    return run([os.path.join(STANDINS, "atc"), *args], standin_env(tmp_path, **extra),
               cwd=tmp_path)


def ais_bench(tmp_path, *args, frontend="2023", **extra):
    return run([sys.executable, "-m", "ais_bench", *args],
               standin_env(tmp_path, frontend=frontend, **extra), cwd=tmp_path)


def bench(tmp_path, *args):
    return run([sys.executable, "-m", "npuzoo.bench", *args], standin_env(tmp_path),
               cwd=tmp_path)


def tiny_model(path, dynamic=True):
    """image [N,3,4,4] -> Flatten -> MatMul -> class [N,10]; N dynamic ('-1') as the exports."""
    batch = "-1" if dynamic else 2
    weight = helper.make_tensor("w", TensorProto.FLOAT, [48, 10],
                                np.linspace(-1, 1, 480, dtype=np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["class"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 4, 4])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, [batch, 10])],
        [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)
    return str(path)


def compile_tiny(tmp_path, soc_version="Ascend310P3", bs=2, **extra):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    base = tmp_path / "om" / f"tiny_bs{bs}"
    proc = atc(tmp_path, "--framework=5", f"--model={onnx_path}", f"--output={base}",
               "--input_format=NCHW", f"--input_shape=image:{bs},3,4,4", "--log=error",
               f"--soc_version={soc_version}", **extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return onnx_path, str(base) + ".om"


def write_inputs(folder, count, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(count):
        array = rng.standard_normal((3, 4, 4), dtype=np.float32)
        name = f"ILSVRC2012_val_{i + 1:08d}"
        array.tofile(folder / f"{name}.bin")
        arrays[name] = array
    return arrays


# -- atc stand-in -------------------------------------------------------------------------------

def _read_om(path):
    sys.path.insert(0, STANDINS)
    try:
        import _standin
    finally:
        sys.path.remove(STANDINS)
    return _standin.read_om(path)


def test_atc_om_container(tmp_path):
    _onnx_path, om = compile_tiny(tmp_path, bs=4)
    header, offset = _read_om(om)
    assert header["soc_version"] == "Ascend310P3"
    assert header["input_shape"] == {"image": [4, 3, 4, 4]}
    with open(om, "rb") as handle:
        handle.seek(offset)
        model = onnx.load_from_string(handle.read())
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [4, 3, 4, 4]
    assert calls(tmp_path, "atc")[0][-1] == "--soc_version=Ascend310P3"


def test_atc_accepts_space_separated_single_dash_and_hyphenated_flags(tmp_path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    base = tmp_path / "m"
    proc = atc(tmp_path, "--framework", "5", "-model", onnx_path, f"--output={base}",
               "--input_shape", "image:2,3,4,4", "--soc-version=Ascend310")
    assert proc.returncode == 0, proc.stderr
    assert "ATC run success" in proc.stdout
    assert _read_om(str(base) + ".om")[0]["soc_version"] == "Ascend310"


ATC_BASE = ["--framework=5", "--input_format=NCHW", "--input_shape=image:2,3,4,4",
            "--log=error", "--soc_version=Ascend310P3"]


def _replace(args, flag, value):
    """ATC_BASE with `flag` set to value (None removes it)."""
    out = [a for a in args if not a.startswith(f"--{flag}=")]
    return out + ([f"--{flag}={value}"] if value is not None else [])


@pytest.mark.parametrize("args, fragment", [
    (ATC_BASE + ["--bogus=1"], "[--bogus] is not supported"),
    (_replace(ATC_BASE, "framework", "4"), "[--framework]"),
    (_replace(ATC_BASE, "framework", "3"), "ONNX models only"),
    (_replace(ATC_BASE, "soc_version", None), "[--soc_version] is required"),
    (_replace(ATC_BASE, "soc_version", "Ascend999"),
     "Value [Ascend999] for parameter [--soc_version]"),
    (_replace(ATC_BASE, "input_shape", "image2,3,4,4"), 'expected "name:d,d,d,d'),
    (_replace(ATC_BASE, "input_shape", "image:2,3,x,4"), "must be integers"),
    (_replace(ATC_BASE, "input_shape", "input:2,3,4,4"), "opname [input] is not exist"),
    (_replace(ATC_BASE, "input_shape", "image:2,3,4"), "rank 4"),
    (_replace(ATC_BASE, "input_shape", "image:2,3,5,4"), "dim 2 of image is 4"),
    (_replace(ATC_BASE, "input_shape", "image:-1,3,4,4"), "-1 needs --dynamic_batch_size"),
    (_replace(ATC_BASE, "input_shape", None), "has a dynamic shape"),
    (_replace(ATC_BASE, "input_format", "NHWC"), "[--input_format]"),
    (_replace(ATC_BASE, "log", "loud"), "[--log]"),
    (_replace(ATC_BASE, "input_shape", "image:-1,3,4,4")
     + ["--dynamic_batch_size=1,2", "--dynamic_image_size=4,4;8,8"], "mutually exclusive"),
    (_replace(ATC_BASE, "input_shape", "image:-1,3,4,4") + ["--dynamic_batch_size=4"],
     "between 2 and 100 profiles"),
    (ATC_BASE + ["--dynamic_dims=1;2", "--insert_op_conf=aipp.cfg"], "--insert_op_conf"),
    (ATC_BASE + ["--precision_mode=force_fp16", "--precision_mode_v2=fp16"],
     "cannot be used together"),
    (ATC_BASE + ["--log=info"], "more than once"),
    (ATC_BASE + ["stray"], "not an option"),
    (ATC_BASE + ["--out_nodes=nowhere:0"], "node nowhere is not in the model"),
])
def test_atc_rejects_what_atc_rejects(tmp_path, args, fragment):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    proc = atc(tmp_path, f"--model={onnx_path}", f"--output={tmp_path / 'm'}", *args)
    assert proc.returncode != 0
    assert "ATC run failed" in proc.stderr and fragment in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("m*.om"))


def test_atc_missing_model_file(tmp_path):
    proc = atc(tmp_path, f"--model={tmp_path / 'none.onnx'}", f"--output={tmp_path / 'm'}",
               *ATC_BASE)
    assert proc.returncode != 0 and "file does not exist" in proc.stderr


def test_atc_leaves_its_debris_in_the_working_directory(tmp_path):
    compile_tiny(tmp_path)
    assert (tmp_path / "kernel_meta").is_dir() and (tmp_path / "fusion_result.json").is_file()
    assert calls(tmp_path, "atc") and log_entries(tmp_path, "atc")[0]["cwd"] == str(tmp_path)


def test_atc_os_arch_suffix_is_renamed_by_record_om(tmp_path):
    onnx_path, _ = compile_tiny(tmp_path, NPUZOO_STANDIN_ATC_SUFFIX="linux_x86_64")
    base = str(tmp_path / "om" / "tiny_bs2")
    assert os.path.isfile(base + "_linux_x86_64.om") and not os.path.exists(base + ".om")
    record = ascend.record_om(base, "Ascend310P3", onnx_path, 2)
    assert os.path.isfile(base + ".om") and not os.path.exists(base + "_linux_x86_64.om")
    assert record["soc_version"] == "Ascend310P3"
    ascend.check_om(base + ".om", "Ascend310P3")


def test_remove_om_and_record_om_keep_to_their_own_artefact(tmp_path):
    """`<base>_aipp.om` (AIPP=1, same batch size) starts like `<base>_*.om`: it is another
    artefact, neither deleted before atc writes <base> nor taken for atc's <base>_<os>_<arch>."""
    folder = tmp_path / "om"
    folder.mkdir()
    base = str(folder / "m_bs4")
    for name in ("m_bs4.om", "m_bs4.om.json", "m_bs4_linux_aarch64.om", "m_bs4_aipp.om",
                 "m_bs4_aipp.om.json", "m_bs4_aipp_linux_x86_64.om", "m_bs16.om"):
        (folder / name).write_bytes(b"x")
    assert ascend.om_variants(base) == [base + "_linux_aarch64.om"]
    ascend.remove_om(base)
    assert sorted(os.listdir(folder)) == ["m_bs16.om", "m_bs4_aipp.om", "m_bs4_aipp.om.json",
                                          "m_bs4_aipp_linux_x86_64.om"]
    with pytest.raises(UserError, match="wrote neither"):
        ascend.record_om(base, "Ascend310P3")
    proc = run([sys.executable, "-m", "npuzoo.ascend", "remove-om", folder / "m_bs4_aipp"],
               standin_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(folder)) == ["m_bs16.om"]


# -- the real ais_bench front end on the aclruntime stand-in ---------------------------------------

@needs_frontend
@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_ais_bench_outputs_in_the_documented_formats(tmp_path, frontend):
    onnx_path, om = compile_tiny(tmp_path, bs=2)
    arrays = write_inputs(tmp_path / "prep", 5)
    out = tmp_path / "out"
    proc = ais_bench(tmp_path, "--model", om, "--input", tmp_path / "prep", "--output", out,
                     "--output_dirname", "results", "--outfmt", "TXT", "--batchsize", "2",
                     "--device", "0", frontend=frontend)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[INFO] -----------------Performance Summary------------------" in proc.stdout
    assert "throughput 1000*batchsize.mean(2)/NPU_compute_time.mean(" in proc.stdout
    assert "H2D_latency" not in proc.stdout
    assert "aclruntime version" not in proc.stdout  # the stand-in's version is read (array mode)
    summary = json.loads((out / "results_summary.json").read_text())
    assert summary["NPU_compute_time"]["count"] == 3  # 5 files, batch 2: last batch padded
    assert not (out / "results" / "sumary.json").exists()
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    files = sorted(os.listdir(out / "results"))
    assert files == sorted(f"{name}_0.txt" for name in arrays)
    for name, array in arrays.items():
        text = (out / "results" / f"{name}_0.txt").read_text()
        assert text.endswith(" \n") and text.count("\n") == 1
        got = np.array(text.split(), dtype=np.float32)
        want = session.run(None, {"image": array[None]})[0][0]
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert calls(tmp_path, "ais_bench")[0][:2] == ["--model", om]
    assert_real_frontend(tmp_path, frontend)


@needs_frontend
@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_ais_bench_perf_loop_and_warmup(tmp_path, frontend):
    _, om = compile_tiny(tmp_path, bs=2)
    out = tmp_path / "perf"
    proc = ais_bench(tmp_path, "--model", om, "--output", out, "--output_dirname", "perf",
                     "--outfmt", "BIN", "--batchsize", "2", "--loop", "5", "--warmup_count", "2",
                     frontend=frontend)
    assert proc.returncode == 0, proc.stderr
    assert "[INFO] warm up 2 done" in proc.stdout
    summary = json.loads((out / "perf_summary.json").read_text())
    assert summary["NPU_compute_time"]["count"] == 5
    assert (out / "perf" / "pure_infer_data_0.bin").stat().st_size == 2 * 10 * 4


@needs_frontend
@pytest.mark.parametrize("args, fragment", [
    (["--bogus", "1"], "error: unrecognized arguments: --bogus 1"),
    (["--outfmt", "CSV"], "invalid choice: 'CSV'"),
    (["--output_dirname", "results"], "--output_dirname cann't be used alone"),
    (["--device", "300"], "valid value range is [0, 255]"),
    (["--device", "1"], "aclrtSetDevice(1) failed"),
    (["--loop", "0"], "0 is an invalid positive int value"),
    (["--debug"], "argument --debug: expected one argument"),
])
def test_ais_bench_rejects_what_ais_bench_rejects(tmp_path, args, fragment):
    _, om = compile_tiny(tmp_path)
    proc = ais_bench(tmp_path, "--model", om, *args)
    assert proc.returncode != 0
    assert fragment in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@needs_frontend
def test_ais_bench_input_size_must_divide_model_input(tmp_path):
    _, om = compile_tiny(tmp_path)
    (tmp_path / "prep").mkdir()
    np.zeros(40, dtype=np.float32).tofile(tmp_path / "prep" / "a.bin")
    proc = ais_bench(tmp_path, "--model", om, "--input", tmp_path / "prep", "--output",
                     tmp_path / "out")
    assert proc.returncode != 0
    assert "[ERROR] arg0 tensorsize: 384 filesize: 160 not match" in proc.stdout


@needs_frontend
def test_ais_bench_refuses_om_of_another_chip_and_non_om(tmp_path):
    onnx_path, om = compile_tiny(tmp_path, soc_version="Ascend310")
    proc = ais_bench(tmp_path, "--model", om)
    assert proc.returncode != 0
    assert "built with --soc_version=Ascend310 but device 0 is an Ascend310P3" in proc.stderr
    proc = ais_bench(tmp_path, "--model", om, NPUZOO_STANDIN_CHIP="310")
    assert proc.returncode == 0, proc.stderr
    # the stand-in's own refusal (the ait checks, which refuse a model not named .om, off)
    proc = ais_bench(tmp_path, "--model", onnx_path, NPUZOO_STANDIN_AIT="")
    assert proc.returncode != 0 and "not an offline model" in proc.stderr
    proc = ais_bench(tmp_path, "--model", onnx_path)
    assert proc.returncode != 0 and "file type not in ['om']" in proc.stdout + proc.stderr


@needs_frontend
def test_ais_bench_dynamic_batch_om(tmp_path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    base = tmp_path / "dyn"
    proc = atc(tmp_path, "--framework=5", f"--model={onnx_path}", f"--output={base}",
               "--input_shape=image:-1,3,4,4", "--dynamic_batch_size=1,2,4",
               "--soc_version=Ascend310P3")
    assert proc.returncode == 0, proc.stderr
    om = str(base) + ".om"
    proc = ais_bench(tmp_path, "--model", om)
    assert proc.returncode != 0 and "give --dymBatch" in proc.stderr
    proc = ais_bench(tmp_path, "--model", om, "--dymBatch", "3")
    assert proc.returncode != 0 and "not one of the om's batch sizes" in proc.stderr
    proc = ais_bench(tmp_path, "--model", om, "--dymBatch", "4")
    assert proc.returncode == 0, proc.stderr
    assert "batchsize.mean(4)" in proc.stdout


@needs_frontend
@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_the_front_end_and_aclruntime_are_named_from_the_install(tmp_path, frontend):
    install = ascend.ais_bench_install(sys.executable, standin_env(tmp_path, frontend=frontend))
    assert install["ais_bench"] == install["aclruntime"] == "0.0.2"
    assert install["ait"] is (frontend == "ait")
    assert ascend.frontend_label(install) == LABELS[frontend]
    assert ascend.aclruntime_label(install) == STANDIN_ACLRUNTIME
    # the known builds' fingerprints are those of the front ends beside the repository
    digest = hashlib.sha256((FRONTENDS[frontend] / "ais_bench" / "infer" / "__main__.py")
                            .read_bytes()).hexdigest()
    assert ascend.KNOWN_FRONTENDS[digest] == LABELS[frontend][7:-1]
    # a build not known: its generation, from its own files, and its fingerprint
    assert ascend.frontend_label(dict(install, frontend_sha256="ab" * 32)) == \
        f"0.0.2 ({'ait' if frontend == 'ait' else 'tools'} front end, unknown build abababababab)"
    assert ascend.aclruntime_label({"aclruntime": "0.0.2", "aclruntime_file":
                                    "aclruntime.cpython-310-aarch64-linux-gnu.so"}) == \
        "0.0.2 (cpython-310-aarch64-linux-gnu)"
    assert ascend.frontend_label({}) is None and ascend.aclruntime_label({}) is None


# -- the paths handed to ais_bench: the ait front end's rules -----------------------------------

def ait_refusal(cwd, *argv):
    """None when the ait front end's own checks (run as the aclruntime stand-in runs them)
    accept the paths of `argv` from `cwd`, else their messages."""
    spec = importlib.util.spec_from_file_location("_standin_aclruntime",
                                                  os.path.join(ACL, "aclruntime", "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    proc = run([sys.executable, "-c", module._AIT_CHECKS, *argv],
               dict(os.environ, PYTHONPATH=str(FRONTENDS["ait"]), PYTHONDONTWRITEBYTECODE="1"),
               cwd=cwd)
    return None if proc.returncode == 0 else proc.stdout + proc.stderr


@needs_frontend
@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_hand_over_gives_ais_bench_what_the_ait_front_end_accepts(tmp_path, mask):
    """What the pipeline hands over, made under the umask as the steps make it (the .om by
    atc, the preprocessed files, a shard's hard links and stamp, `mkdir -p` output folders):
    refused by ait as made, accepted after hand_over, with no bit added."""
    saved = os.umask(mask)
    try:
        for folder in ("build/m/om", "build/prep/set", "build/m/run/perf-loop2",
                       "build/m/run/shards2/0/input"):
            (tmp_path / folder).mkdir(parents=True)
        (tmp_path / "build/m/om/m_bs4.om").write_bytes(b"om")
        for name in ("a.bin", "b.bin", ".done", "prep.json"):
            (tmp_path / "build/prep/set" / name).write_bytes(b"x")
        os.link(tmp_path / "build/prep/set/a.bin", tmp_path / "build/m/run/shards2/0/input/a.bin")
        (tmp_path / "build/m/run/shards2/0/input/.done").write_text("{}")
    finally:
        os.umask(saved)
    commands = [
        ["--model", "build/m/om/m_bs4.om", "--input", "build/prep/set", "--output", "build/m/run",
         "--output_dirname", "results", "--outfmt", "TXT", "--batchsize", "4", "--device", "0"],
        ["--model", "build/m/om/m_bs4.om", "--output", "build/m/run/perf-loop2",
         "--output_dirname", "perf", "--outfmt", "BIN", "--loop", "2"],
        ["--model=build/m/om/m_bs4.om", "--input=build/m/run/shards2/0/input",
         "--output=build/m/run/shards2/0", "--output_dirname=results"],
    ]
    before = {p: stat.S_IMODE(p.lstat().st_mode) for p in (tmp_path / "build").rglob("*")}
    for argv in commands:
        assert ait_refusal(tmp_path, *argv), argv  # 0755 output folders; under 002 all of it
        ascend.hand_over(argv, str(tmp_path))
        assert ait_refusal(tmp_path, *argv) is None, argv
    for path, mode in before.items():
        now = stat.S_IMODE(path.lstat().st_mode)
        assert now & ~mode == 0 and now & 0o700 == mode & 0o700, path  # only bits taken away
    assert stat.S_IMODE((tmp_path / "build/m/run").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "build/prep/set/a.bin").stat().st_mode) == 0o644


def test_hand_over_refuses_what_no_mode_can_fix(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.bin").symlink_to("/dev/null")
    with pytest.raises(UserError, match=r"^in/a.bin: a symbolic link, which ais_bench refuses"):
        ascend.hand_over(["--model", "m.om", "--input", "in"], str(tmp_path))
    for argv, shown in ((["--output", "out dir"], "--output out dir"),
                        (["--input=a,b+c"], "--input b+c"),
                        (["-m", "x" * 256 + ".om"], "-m " + "x" * 256)):
        with pytest.raises(UserError, match=r"takes only the characters A-Za-z0-9_-/. in a path"):
            ascend.hand_over(argv, str(tmp_path))
        try:
            ascend.hand_over(argv, str(tmp_path))
        except UserError as err:
            assert str(err).startswith(shown)
    assert ascend.handed_paths(["--input", "a,b", "-o", "o", "--outfmt", "TXT", "--model"]) == [
        ("--input", "a", "read"), ("--input", "b", "read"), ("-o", "o", "write")]


def test_make_n_hands_ais_bench_plain_paths_under_build(tmp_path, shared_data):
    """Every path of the pipeline's ais_bench commands: relative, under build/, and plain
    (the ait front end's characters), made of validated names whatever DATA is called."""
    data = tmp_path / "my data (val) ü"
    shutil.copytree(shared_data / "imagenet-val-10", data)
    lines = make_n(tmp_path, "mobilenetv1", "BS=4", "SOC=Ascend310P3", f"DATA={data}",
                   "WEIGHTS=random", "AIPP=1")
    bench = [line.split(" -m ais_bench ", 1)[1].split(" | ")[0].split()
             for line in lines if " -m ais_bench " in line]
    assert len(bench) == 2
    for argv in bench:
        paths = ascend.handed_paths(argv)
        assert len(paths) == (4 if "--input" in argv else 3)
        for flag, path, _ in paths:
            assert ascend.PLAIN_PATH.fullmatch(path), (flag, path)
            assert flag == "--output_dirname" or path.startswith("build/"), (flag, path)


@pytest.mark.parametrize("goal", [[], ["mobilenetv1", "SOC=Ascend310P3"], ["sweep"], ["test"]])
def test_a_checkout_path_with_a_space_stops_first_with_one_line(tmp_path, goal):
    """Make splits such a path in every recipe (`$(PY)` first): refused before anything runs."""
    root = tmp_path / "my checkout"
    (root / "mk").mkdir(parents=True)
    for name in ("Makefile", "mk/outside.mk"):
        shutil.copy(os.path.join(REPO, name), root / name)
    proc = run(["make", "--no-print-directory", *goal], standin_env(tmp_path), cwd=root)
    one_error_line(proc, f"{root}: the checkout path has a space", "move or clone", status=None,
                   alone=False)
    assert proc.returncode == 2 and sorted(os.listdir(root)) == ["Makefile", "mk"]


# -- our runner against the tool: the same commands, the same files -------------------------------

@needs_frontend
def test_npuzoo_bench_writes_what_the_real_front_end_writes(tmp_path):
    """The pipeline's commands (dataset mode with TXT, pure-inference perf mode, and the
    InceptionV4 guide's `--output_dirname ./result_bs4/`) through `python3 -m ais_bench` on the
    .om and through `python3 -m npuzoo.bench` on the ONNX model inside it: identical result
    files, summary files in the same places with the same keys, the same filesinfo."""
    from npuzoo import compile as zoo_compile

    onnx_path, om = compile_tiny(tmp_path, bs=2)
    cpu = str(tmp_path / "tiny_bs2.onnx")
    zoo_compile.compile_model(onnx_path, cpu, 2, None)  # what the stand-in .om holds
    write_inputs(tmp_path / "prep", 5)

    def keys(node):
        if isinstance(node, dict):
            return {k: keys(v) for k, v in node.items() if k != "filesinfo"}
        return type(node).__name__ if not isinstance(node, (int, float)) else "number"

    cases = {
        "infer": ["--input", "prep", "--output", "{out}", "--output_dirname", "results",
                  "--outfmt", "TXT", "--batchsize", "2", "--device", "0"],
        "perf": ["--output", "{out}", "--output_dirname", "perf", "--outfmt", "BIN",
                 "--batchsize", "2", "--loop", "3", "--warmup_count", "1", "--device", "0"],
        "slash": ["--input", "prep", "--output", "{out}", "--output_dirname", "./result_bs2/",
                  "--outfmt", "TXT", "--batchsize", "2"],
    }
    for case, args in cases.items():
        results = {}
        for tool, model in (("ais_bench", om), ("npuzoo", cpu)):
            out = f"{tool}-{case}"
            argv = ["--model", model, *[a.format(out=out) for a in args]]
            proc = (ais_bench(tmp_path, *argv) if tool == "ais_bench" else bench(tmp_path, *argv))
            assert proc.returncode == 0, (tool, case, proc.stdout + proc.stderr)
            files = {str(p.relative_to(tmp_path / out)): p for p in (tmp_path / out).rglob("*")
                     if p.is_file()}
            results[tool] = (out, files, proc.stdout)
        (a_out, a_files, a_log), (b_out, b_files, b_log) = results["ais_bench"], results["npuzoo"]
        assert sorted(a_files) == sorted(b_files), case
        summaries = [name for name in a_files if name.endswith("summary.json")]
        assert len(summaries) == 1, a_files
        for name in a_files:
            if name in summaries:
                continue
            assert a_files[name].read_bytes() == b_files[name].read_bytes(), (case, name)
        a_sum = json.loads(a_files[summaries[0]].read_text())
        b_sum = json.loads(b_files[summaries[0]].read_text())
        assert list(a_sum) == list(b_sum) and keys(a_sum) == keys(b_sum), case
        for block in ("NPU_compute_time", "H2D_latency", "D2H_latency"):
            assert list(a_sum[block]) == list(b_sum[block])
        assert a_sum["NPU_compute_time"]["count"] == b_sum["NPU_compute_time"]["count"]
        assert [a.replace(a_out, b_out).replace(om, cpu) for a in a_sum["args"][1:]] \
            == b_sum["args"][1:]
        swap = json.dumps(a_sum["filesinfo"]).replace(a_out, b_out)
        assert json.loads(swap) == b_sum["filesinfo"], case
        assert "output path:" + a_out in a_log and "output path:" + b_out in b_log
    # the guide's trailing slash: the summary is `_summary.json` inside the folder, in both
    assert (tmp_path / "ais_bench-slash" / "result_bs2" / "_summary.json").is_file()
    assert (tmp_path / "npuzoo-slash" / "result_bs2" / "_summary.json").is_file()
    # a bare boolean flag: both refuse it
    for proc in (ais_bench(tmp_path, "--model", om, "--display_all_summary", "--loop", "2"),
                 bench(tmp_path, "--model", cpu, "--display_all_summary", "--loop", "2")):
        assert proc.returncode != 0
        assert "argument --display_all_summary: expected one argument" in proc.stderr


# -- npu-smi and SOC=auto ------------------------------------------------------------------------

def test_npu_smi_standin_table_parses(tmp_path):
    proc = run(["npu-smi", "info"], standin_env(tmp_path, NPUZOO_STANDIN_NPUS=2))
    assert proc.returncode == 0
    assert "npu-smi 23.0.0" in proc.stdout and "Version: 23.0.0" in proc.stdout
    rows = soc.parse_table(proc.stdout)
    assert [(r["npu"], r["device"], r["name"]) for r in rows] == [(0, 0, "310P3"), (1, 1, "310P3")]
    power = run(["npu-smi", "info", "-t", "power", "-i", "0"], standin_env(tmp_path))
    assert "Power Dissipation(W)" in power.stdout


DUO = """\
| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|
| Chip  Device              | Bus-Id        | AICore(%)   Memory-Usage(MB)                        |
+===========================+===============+====================================================+
| 1       310P3             | OK            | NA          52                0    / 0             |
| 0       0                 | 0000:01:00.0  | 0           1652 / 44280                            |
| 1       1                 | 0000:01:00.0  | 0           1400 / 43693                            |
+===========================+===============+====================================================+
| 2       310               | OK            | NA          50                0    / 0             |
| 0       2                 | 0000:02:00.0  | 0           1652 / 44280                            |
+===========================+===============+====================================================+
"""


def test_device_ids_come_from_the_chip_device_rows():
    rows = soc.parse_table(DUO)
    assert [(r["npu"], r["device"], r["name"]) for r in rows] == [
        (1, 0, "310P3"), (1, 1, "310P3"), (2, 2, "310")]


@pytest.mark.parametrize("chip, device, expected", [
    ("310P3", 0, "Ascend310P3"), ("910B3", 1, "Ascend910B3"), ("310", 0, "Ascend310")])
def test_soc_auto_with_npu_smi(tmp_path, chip, device, expected):
    env = standin_env(tmp_path, NPUZOO_STANDIN_CHIP=chip, NPUZOO_STANDIN_NPUS=2)
    proc = run([sys.executable, "-m", "npuzoo.soc", "resolve", "auto", "--device", device], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_soc_auto_without_npu_smi_is_cpu(tmp_path):
    proc = run([sys.executable, "-m", "npuzoo.soc", "resolve", "auto"],
               standin_env(tmp_path, standins=False))
    assert proc.stdout.strip() == "cpu"


def test_soc_auto_device_not_listed(tmp_path):
    proc = run([sys.executable, "-m", "npuzoo.soc", "resolve", "auto", "--device", "3"],
               standin_env(tmp_path))
    one_error_line(proc, "DEVICE=3", status=None, alone=False)


# -- npuzoo.ascend: the CANN environment, chip checks, versions -----------------------------------

def ascend_cli(env, *args):
    """In the test's folder: a tool run without --cwd leaves its debris where it runs."""
    return run([sys.executable, "-m", "npuzoo.ascend", *args], env,
               cwd=os.path.dirname(env["NPUZOO_STANDIN_LOG"]))


def fake_toolkit(tmp_path, socs=("Ascend310P3", "Ascend310")):
    """An ascend-toolkit folder whose set_env.sh puts the stand-ins on PATH, as CANN's does atc."""
    home = tmp_path / "Ascend" / "ascend-toolkit" / "latest"
    (home / "x86_64-linux" / "data" / "platform_config").mkdir(parents=True)
    for name in socs:
        platform = home / "x86_64-linux" / "data" / "platform_config"
        (platform / f"{name}.ini").write_text("[version]\n")
    (home / "x86_64-linux" / "ascend_toolkit_install.info").write_text(
        "package_name=Ascend-cann-toolkit\nversion=7.0.0\ninnerversion=V100R001C15\n")
    (home.parent / "set_env.sh").write_text(
        f'export ASCEND_TOOLKIT_HOME={home}\nexport ASCEND_HOME_PATH={home}\n'
        f'export PATH={STANDINS}:$PATH\n'
        f'export PYTHONPATH={frontend_env(REPO)["PYTHONPATH"]}:$PYTHONPATH\n')
    return home


def test_missing_toolkit_stops_with_one_line(tmp_path):
    env = standin_env(tmp_path, standins=False)
    proc = ascend_cli(env, "run", "--soc", "Ascend310P3", "--", "atc", "--framework=5")
    one_error_line(proc, "CANN environment is not set", "set_env.sh", status=None, alone=False)
    assert calls(tmp_path) == []


def test_set_env_is_sourced_from_ascend_toolkit_home(tmp_path):
    home = fake_toolkit(tmp_path)
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    env = standin_env(tmp_path, standins=False, ASCEND_TOOLKIT_HOME=home)
    proc = ascend_cli(env, "run", "--soc", "Ascend310P3", "--", "atc", "--framework=5",
                      f"--model={onnx_path}", f"--output={tmp_path / 'm'}",
                      "--input_shape=image:1,3,4,4", "--soc_version=Ascend310P3")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.om").is_file()
    cann_env, sourced = ascend.cann_environment(env=env)
    assert sourced == str(home.parent / "set_env.sh")
    assert ascend.toolkit_version(cann_env) == "7.0.0"


def test_set_env_of_the_cann_8_5_layout_is_found(tmp_path):
    """CANN 8.5 and later install under <root>/cann/ (a link to cann-<version>)."""
    root = tmp_path / "Ascend"
    home = root / "cann-8.5.0"
    (home / "x86_64-linux").mkdir(parents=True)
    (home / "x86_64-linux" / "ascend_toolkit_install.info").write_text("version=8.5.0\n")
    (root / "cann").symlink_to(home)
    (home / "set_env.sh").write_text(
        f'export ASCEND_HOME_PATH={root / "cann"}\nexport PATH={STANDINS}:$PATH\n')
    env = standin_env(tmp_path, standins=False, NPUZOO_ASCEND_ROOT=root)
    assert ascend.set_env_candidates(env) == [str(root / "cann" / "set_env.sh")]
    cann_env, sourced = ascend.cann_environment(env=env)
    assert sourced == str(root / "cann" / "set_env.sh")
    assert ascend.toolkit_version(cann_env) == "8.5.0"
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    proc = ascend_cli(env, "run", "--soc", "Ascend310P3", "--", "atc", "--framework=5",
                      f"--model={onnx_path}", f"--output={tmp_path / 'm'}",
                      "--input_shape=image:1,3,4,4", "--soc_version=Ascend310P3")
    assert proc.returncode == 0, proc.stderr


def test_run_in_a_scratch_folder_keeps_the_command_line(tmp_path):
    """--cwd: atc's debris lands in the scratch folder, and the command's relative paths
    (build/..., as mk/pipeline.mk gives them) still reach the same files through its links."""
    top = tmp_path / "repo"
    (top / "build" / "m" / "onnx").mkdir(parents=True)
    tiny_model(top / "build" / "m" / "onnx" / "tiny.onnx")
    env = standin_env(tmp_path)
    argv = ["run", "--cwd", "build/m/Ascend310P3/cann-work", "--soc", "Ascend310P3", "--",
            "atc", "--framework=5", "--model=build/m/onnx/tiny.onnx",
            "--output=build/m/Ascend310P3/tiny_bs1", "--input_shape=image:1,3,4,4",
            "--soc_version=Ascend310P3"]
    proc = run([sys.executable, "-m", "npuzoo.ascend", *argv], env, cwd=top)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    work = top / "build" / "m" / "Ascend310P3" / "cann-work"
    assert (top / "build" / "m" / "Ascend310P3" / "tiny_bs1.om").is_file()
    assert (work / "kernel_meta").is_dir() and (work / "fusion_result.json").is_file()
    assert not (top / "kernel_meta").exists() and not (top / "fusion_result.json").exists()
    assert os.readlink(work / "build") == os.path.join("..", "..", "..")
    assert sorted(os.listdir(work)) == ["build", "fusion_result.json", "kernel_meta"]
    entry = log_entries(tmp_path, "atc")[0]
    assert entry["cwd"] == str(work) and entry["argv"] == argv[7:]
    # a second run finds its links in place
    proc = run([sys.executable, "-m", "npuzoo.ascend", *argv], env, cwd=top)
    assert proc.returncode == 0, proc.stderr


def test_chip_the_toolkit_does_not_know(tmp_path):
    home = fake_toolkit(tmp_path, socs=("Ascend310P3",))
    env = standin_env(tmp_path, standins=False, ASCEND_TOOLKIT_HOME=home)
    proc = ascend_cli(env, "run", "--soc", "Ascend910B3", "--", "atc", "--framework=5")
    one_error_line(proc, "SOC=Ascend910B3", "no platform file", "Ascend310P3", status=None,
                   alone=False)
    assert calls(tmp_path, "atc") == []


def test_failing_atc_ends_with_one_clear_line(tmp_path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    env = standin_env(tmp_path, NPUZOO_STANDIN_ATC_SOCS="Ascend310P3")
    proc = ascend_cli(env, "run", "--soc", "Ascend910B3", "--", "atc", "--framework=5",
                      f"--model={onnx_path}", f"--output={tmp_path / 'm'}",
                      "--input_shape=image:1,3,4,4", "--soc_version=Ascend910B3")
    assert "E10001" in proc.stderr
    one_error_line(proc, "atc failed for SOC=Ascend910B3", status=None, alone=False)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


@needs_frontend
def test_om_chip_record_is_checked(tmp_path):
    onnx_path, om = compile_tiny(tmp_path)
    env = standin_env(tmp_path)
    args = ["run", "--soc", "Ascend310P3", "--om", om, "--device", "0", "--",
            sys.executable, "-m", "ais_bench", "--model", om]
    one_error_line(ascend_cli(env, *args), "no record of the chip", status=None, alone=False)
    ascend.record_om(om[:-3], "Ascend310", onnx_path, 2)
    one_error_line(ascend_cli(env, *args),
                   "built for Ascend310, not SOC=Ascend310P3", status=None, alone=False)
    ascend.record_om(om[:-3], "Ascend310P3", onnx_path, 2)
    proc = ascend_cli(env, *args)
    assert proc.returncode == 0, proc.stderr


def test_device_chip_must_match_soc(tmp_path):
    onnx_path, om = compile_tiny(tmp_path, soc_version="Ascend310")
    ascend.record_om(om[:-3], "Ascend310", onnx_path, 2)
    proc = ascend_cli(standin_env(tmp_path), "run", "--soc", "Ascend310", "--om", om,
                      "--device", "0", "--", sys.executable, "-m", "ais_bench", "--model", om)
    one_error_line(proc, "DEVICE=0 is an Ascend310P3", "SOC=Ascend310", status=None, alone=False)
    assert calls(tmp_path, "ais_bench") == []


def test_ais_bench_not_installed(tmp_path):
    env = standin_env(tmp_path, standins=False, ASCEND_HOME_PATH=str(tmp_path))
    proc = ascend_cli(env, "run", "--", sys.executable, "-m", "ais_bench", "--model", "x.om")
    one_error_line(proc, "-m ais_bench` is not the ais_bench inference tool", "pip install",
                   status=None, alone=False)


def test_describe_records_versions(tmp_path):
    home = fake_toolkit(tmp_path)
    env = standin_env(tmp_path, standins=False, ASCEND_TOOLKIT_HOME=home)
    (tmp_path / "no-ascend-here" / "driver").mkdir(parents=True)
    (tmp_path / "no-ascend-here" / "driver" / "version.info").write_text("Version=23.0.rc3\n")
    out = tmp_path / "backend.json"
    proc = ascend_cli(env, "describe", "--soc", "Ascend310P3", "--device", "0",
                      "--ais-bench", f"{sys.executable} -m ais_bench", "--out", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"backend", "device", "environment"}
    assert data["backend"]["name"] == "ais_bench"
    assert data["environment"]["cann_toolkit"] == "7.0.0"
    assert data["environment"]["driver"] == "23.0.rc3"
    assert data["environment"]["ais_bench"] == data["backend"]["frontend"] == LABELS["2023"]
    assert data["backend"]["version"] == "0.0.2"
    assert data["environment"]["aclruntime"] == STANDIN_ACLRUNTIME
    assert data["device"].startswith("Ascend310P3")


def test_check_om_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"no such .om"):
        ascend.check_om(str(tmp_path / "x.om"), "Ascend310P3")


# -- make: the commands the guides give ----------------------------------------------------------

def expected_atc(model, soc_version, bs, hw, weights="random", aipp=False):
    suffix = "_aipp" if aipp else ""
    return ["--framework=5", f"--model=build/{model}/onnx/{weights}/{model}.onnx",
            f"--output=build/{model}/{soc_version}/{weights}/{model}_bs{bs}{suffix}",
            "--input_format=NCHW", f"--input_shape=image:{bs},3,{hw},{hw}", "--log=error",
            f"--soc_version={soc_version}"] + (
        [f"--insert_op_conf=build/{model}/aipp.cfg", "--enable_small_channel=1"] if aipp else [])


def make_n(tmp_path, *args, **extra):
    proc = run(["make", "-n", "-o", ".venv/.installed", *args], standin_env(tmp_path, **extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout.replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines()]


def test_make_n_shows_the_guides_commands(tmp_path, shared_data):
    data = shared_data / "imagenet-val-10"
    lines = make_n(tmp_path, "mobilenetv1", "BS=4", "SOC=Ascend310P3", f"DATA={data}",
                   "WEIGHTS=random")
    base = "build/mobilenetv1/Ascend310P3/random/mobilenetv1_bs4"
    assert any(line.endswith(f"-m npuzoo.ascend remove-om {base}") for line in lines)
    atc_line = next(line for line in lines if " atc " in line)
    assert "npuzoo.ascend run --cwd build/mobilenetv1/Ascend310P3/cann-work --soc Ascend310P3 --" \
        in atc_line
    atc_args = atc_line.split(" atc ", 1)[1].split()
    want = expected_atc("mobilenetv1", "Ascend310P3", 4, 224)
    want[4] = '--input_shape="image:4,3,224,224"'
    assert atc_args == want
    bench_lines = [line for line in lines if " python3 -m ais_bench " in line]
    bench = [line.split(" python3 -m ais_bench ", 1)[1].split(" | ")[0].split()
             for line in bench_lines]
    dataset = "build/prep/imagenet-val-10-"
    infer, perf = bench
    assert infer[:2] == ["--model", base + ".om"]
    assert infer[2] == "--input" and infer[3].startswith(dataset) and "-f32-" in infer[3]
    assert infer[6:] == ["--output_dirname", "results", "--outfmt", "TXT", "--batchsize", "4",
                         "--device", "0"]
    # LOOP and WARMUP unset: the MobileNet-v1 guide's --loop 1000 and the tool's one warm-up
    assert perf[4:] == ["--output_dirname", "perf", "--outfmt", "BIN", "--batchsize", "4",
                        "--loop", "1000", "--warmup_count", "1", "--device", "0"]
    for line in bench_lines:
        assert "npuzoo.ascend run --cwd build/mobilenetv1/Ascend310P3/cann-work" in line
    assert calls(tmp_path) == []  # -n runs nothing but the makefile plumbing


@pytest.mark.parametrize("model", config.model_names())
def test_make_n_perf_defaults_come_from_model_yaml(tmp_path, shared_data, model):
    loop = config.perf_defaults(config.load(model)).get("loop")
    if loop is None:
        pytest.skip(f"{model}: model.yaml sets no perf.loop")
    data = shared_data / "imagenet-val-10"
    common = [model, "BS=1", "SOC=Ascend310P3", f"DATA={data}", "WEIGHTS=random"]
    perf = [line for line in make_n(tmp_path, *common) if "--output_dirname perf" in line]
    assert len(perf) == 1 and f"--loop {loop} --warmup_count 1 " in perf[0]
    perf = [line for line in make_n(tmp_path, *common, "LOOP=3", "WARMUP=0")
            if "--output_dirname perf" in line]
    assert len(perf) == 1 and "--loop 3 --warmup_count 0 " in perf[0]


def test_loop_and_warmup_unset_take_model_yaml_perf_defaults():
    from npuzoo import run as driver

    npu = {"NPUZOO_SOC": "Ascend310P3"}
    assert driver.read_values(npu, "dpn131")["LOOP"] == "1000"
    assert driver.read_values(npu, "inceptionv4")["LOOP"] == "100"
    values = driver.read_values(npu, "tresnet")
    assert (values["LOOP"], values["WARMUP"]) == ("20", "1")
    settings = driver.Settings({**driver.read_values(dict(npu, NPUZOO_DATA="/d"), "vovnet39")})
    assert (settings.loop, settings.warmup) == (20, 1)
    # set, even to a bad value, the user's value is what counts, checked as before
    values = driver.read_values(dict(npu, NPUZOO_LOOP="7", NPUZOO_WARMUP="0"), "dpn131")
    assert (values["LOOP"], values["WARMUP"]) == ("7", "0")
    with pytest.raises(UserError, match=r"^LOOP=: expected a positive number"):
        driver.Settings(driver.read_values(dict(npu, NPUZOO_LOOP=""), "dpn131"))
    # no model, or the CPU (where 1000 loops of DPN131 take minutes): the driver's defaults
    assert driver.read_values({})["LOOP"] == driver.DEFAULTS["LOOP"]
    assert driver.read_values({}, "dpn131")["LOOP"] == driver.DEFAULTS["LOOP"]


def test_make_n_device_selects_the_npu(tmp_path, shared_data):
    lines = make_n(tmp_path, "mobilenetv1", "BS=1", "SOC=Ascend310P3",
                   f"DATA={shared_data / 'imagenet-val-10'}", "WEIGHTS=random", "DEVICE=1")
    bench = [line for line in lines if " -m ais_bench " in line]
    assert len(bench) == 2
    for line in bench:
        assert "--soc Ascend310P3" in line and "--device 1 --" in line
        assert line.split(" | ")[0].endswith("--device 1")


def test_make_n_explicit_soc_never_runs_npu_smi(tmp_path, shared_data):
    """Any documented name is taken as given (Ascend910B4-1 was refused by the old closed list),
    and with an explicit SOC a failing npu-smi is not even asked."""
    lines = make_n(tmp_path, "mobilenetv1", "BS=1", "SOC=Ascend910B4-1",
                   f"DATA={shared_data / 'imagenet-val-10'}", "WEIGHTS=random",
                   NPUZOO_STANDIN_NPU_SMI_FAIL="npu-smi: Permission denied")
    assert any("--soc_version=Ascend910B4-1" in line for line in lines)
    assert calls(tmp_path, "npu-smi") == []


# -- end to end, with the stand-ins and the real front end, on a copy of the repository -----------

def make_with_standins(workspace, tmp_path, *args, frontend="2023", umask=-1, **extra):
    """`make ARGS` in `workspace` with the stand-ins and `frontend`, under `umask` if given."""
    env = standin_env(tmp_path, frontend=frontend, **extra)
    env["PYTHONPATH"] = env["PYTHONPATH"].replace(str(REPO), str(workspace))
    env["PATH"] = env["PATH"].replace(STANDINS, str(workspace / "tests" / "standins"))
    return run(["make", "--no-print-directory", "-o", ".venv/.installed", *args], env,
               cwd=workspace, umask=umask)


MODELS = {m: config.load(m).input.shape[1] for m in config.model_names()}  # input side
N = 6  # with BS 4: one full batch and one padded with its first file


# The CPU side of the comparison runs ONNX Runtime, as the aclruntime stand-in does, also for a
# model whose own CPU engine is another (DPN131: OpenVINO): `BACKEND=onnxruntime` is then a
# variant with its own folders.
def cpu_engine_args(model):
    from npuzoo import config

    return ["BACKEND=onnxruntime"] if config.load(model).backend != "onnxruntime" \
        else []


def cpu_variant(model):
    return "_onnxruntime" if cpu_engine_args(model) else ""


def run_dirs(workspace, model, chip, suffix="", sizes=(1, 4)):
    build = workspace / "build" / model / chip / "random"
    extra = cpu_variant(model) if chip == "cpu" else ""
    return {bs: next((build / f"bs{bs}{suffix}{extra}").glob("imagenet-val-1300-*"))
            for bs in sizes}


def report_path(workspace, model, chip, bs, aipp=False):
    variant = ("_aipp" if aipp else "") + (cpu_variant(model) if chip == "cpu" else "")
    return workspace / "reports" / model / variant.strip("_").replace("_", "-") / \
        f"{chip}_bs{bs}.json"


def check_same_as_cpu(workspace, model, aipp=False, sizes=(1, 4), frontend="2023", cpu=None):
    """The accuracy JSON and every result file of the Ascend run equal the CPU run's (in the
    workspace `cpu`, else the same one); the report names the front end and aclruntime."""
    suffix = "_aipp" if aipp else ""
    cpu = cpu or workspace
    ascend_runs = run_dirs(workspace, model, "Ascend310P3", suffix, sizes)
    cpu_runs = run_dirs(cpu, model, "cpu", suffix, sizes)
    for bs, path in ascend_runs.items():
        accuracy = (path / "accuracy.json").read_bytes()
        assert accuracy == (cpu_runs[bs] / "accuracy.json").read_bytes(), (model, bs, aipp)
        assert json.loads(accuracy)["value"][0]["value"] == str(N)
        names = sorted(os.listdir(path / "results"))
        assert names == sorted(os.listdir(cpu_runs[bs] / "results")) and len(names) == N
        for name in names:
            assert (path / "results" / name).read_bytes() == \
                (cpu_runs[bs] / "results" / name).read_bytes(), (model, bs, name)
        reports = {"Ascend310P3": json.loads(report_path(workspace, model, "Ascend310P3", bs,
                                                         aipp).read_text()),
                   "cpu": json.loads(report_path(cpu, model, "cpu", bs, aipp).read_text())}
        made_by = {"placement", "timings"}  # a sweep task's report, or a `make <model>` run's
        assert set(reports["Ascend310P3"]) - made_by == set(reports["cpu"]) - made_by
        assert reports["Ascend310P3"]["accuracy"] == reports["cpu"]["accuracy"]
        report = reports["Ascend310P3"]
        assert report["soc"] == "Ascend310P3" and report["backend"]["name"] == "ais_bench"
        assert report["environment"]["ais_bench"] == LABELS[frontend]
        assert report["backend"]["frontend"] == LABELS[frontend]
        assert report["environment"]["aclruntime"] == STANDIN_ACLRUNTIME
        assert report["environment"]["driver"] == "23.0.0"
        assert report["perf"]["samples"] == 2 and report["perf"]["throughput"] > 0


def assert_paths_checked_as_ait(tmp_path, frontend):
    """Every ais_bench run had its paths checked by the ait front end's own code: itself, or
    under the 2023 front end the aclruntime stand-in running those checks."""
    assert_real_frontend(tmp_path, frontend)
    if frontend == "2023":
        assert calls(tmp_path, "ait-checks") == calls(tmp_path, "ais_bench")


# Each model's pipeline on one front end under one umask (a full matrix costs too much time);
# MobileNetV1 has the full matrix below.
E2E_CASES = {"dpn131": ("ait", 0o002), "inceptionv4": ("2023", 0o002),
             "tresnet": ("ait", 0o022), "vovnet39": ("2023", 0o022)}


@pytest.mark.slow
@needs_frontend
@pytest.mark.parametrize("model", sorted(E2E_CASES))
def test_e2e_every_model_through_the_real_front_end(scratch, tmp_path, shared_data, model):
    """Each model's commands, dataset and perf modes, BS 1 and 4 and AIPP at BS 4, through
    `python3 -m ais_bench` (an unmodified front end) on the aclruntime stand-in: the same
    result files and accuracy JSON as the CPU path (npuzoo.bench)."""
    hw = MODELS[model]
    frontend, mask = E2E_CASES[model]
    data = shared_data / "imagenet-val-1300"
    common = [model, f"DATA={data}", f"N={N}", "WEIGHTS=random", "LOOP=2", "WARMUP=1"]
    proc = make_with_standins(scratch, tmp_path, *common, "BS=1 4", "SOC=Ascend310P3",
                              frontend=frontend,
                umask=mask)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert calls(tmp_path, "atc") == [expected_atc(model, "Ascend310P3", bs, hw) for bs in (1, 4)]
    assert_paths_checked_as_ait(tmp_path, frontend)
    runs = log_entries(tmp_path, "ais_bench")
    assert len(runs) == 4  # dataset mode and perf mode, per batch size
    work = scratch / "build" / model / "Ascend310P3" / "cann-work"
    for entry, (bs, mode) in zip(runs, [(1, "infer"), (1, "perf"), (4, "infer"), (4, "perf")],
                                 strict=False):
        argv, om = entry["argv"], f"build/{model}/Ascend310P3/random/{model}_bs{bs}.om"
        assert entry["cwd"] == str(work)
        assert argv[:2] == ["--model", om]
        if mode == "infer":
            assert argv[2] == "--input" and argv[3].startswith("build/prep/")
            assert argv[6:] == ["--output_dirname", "results", "--outfmt", "TXT",
                                "--batchsize", str(bs), "--device", "0"]
        else:
            assert "--input" not in argv
            assert argv[4:] == ["--output_dirname", "perf", "--outfmt", "BIN", "--batchsize",
                                str(bs), "--loop", "2", "--warmup_count", "1", "--device", "0"]
    assert (work / "kernel_meta").is_dir() and (work / "fusion_result.json").is_file()
    assert not (scratch / "kernel_meta").exists()
    assert not (scratch / "fusion_result.json").exists()

    proc = make_with_standins(scratch, tmp_path, *common, "BS=1 4", "SOC=cpu",
                              *cpu_engine_args(model))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_same_as_cpu(scratch, model, frontend=frontend)

    (tmp_path / "standin.log").unlink()
    for chip in ("Ascend310P3", "cpu"):
        proc = make_with_standins(scratch, tmp_path, *common, "BS=4", "AIPP=1", f"SOC={chip}",
                    *(cpu_engine_args(model) if chip == "cpu" else []), frontend=frontend,
                    umask=mask)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert calls(tmp_path, "atc") == [expected_atc(model, "Ascend310P3", 4, hw, aipp=True)]
    assert_paths_checked_as_ait(tmp_path, frontend)
    check_same_as_cpu(scratch, model, aipp=True, sizes=(4,), frontend=frontend)
    om = scratch / "build" / model / "Ascend310P3" / "random"
    assert (om / f"{model}_bs4.om").is_file() and (om / f"{model}_bs4_aipp.om").is_file()


def e2e_args(shared_data):
    return ["mobilenetv1", "BS=4", f"DATA={shared_data / 'imagenet-val-1300'}", f"N={N}",
            "WEIGHTS=random", "LOOP=2", "WARMUP=1"]


@pytest.fixture(scope="module")
def cpu_reference(tmp_path_factory, shared_data):
    """MobileNetV1 on the CPU, plain and AIPP, BS 4: what every Ascend run must reproduce."""
    root = scratch_repository(tmp_path_factory.mktemp("ascend-cpu") / "repo")
    for aipp in ([], ["AIPP=1"]):
        proc = make_with_standins(root, root.parent, *e2e_args(shared_data), "SOC=cpu", *aipp)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root


# model.yaml's atc.extra_args, set in the matrix's copies: they reach atc after the guide's flags.
ATC_EXTRAS = ["--precision_mode=allow_fp32_to_fp16", "--op_select_implmode=high_precision",
              "--optypelist_for_implmode=Gelu,Sigmoid"]
MATRIX = [(frontend, mask) for frontend in sorted(FRONTENDS) for mask in (0o022, 0o002)]


@pytest.mark.slow
@needs_frontend
@pytest.mark.parametrize("frontend, mask", MATRIX, ids=[f"{f}-umask{m:03o}" for f, m in MATRIX])
def test_e2e_mobilenetv1_on_both_front_ends_under_both_umasks(tmp_path_factory, tmp_path,
                                                             shared_data, cpu_reference,
                                                             frontend, mask):
    """`make mobilenetv1 BS=4 SOC=Ascend310P3` and its AIPP run, from a fresh copy under the
    umask, on each front end: the ait one refuses any path against its rules (an output
    folder beyond 0750, a model or input group-writable) and the 2023 one has them checked by
    the stand-in; the printed summary, the CPU path's results and accuracy, a throughput."""
    root = scratch_repository(tmp_path_factory.mktemp("ascend-matrix") / "repo")
    model_yaml = root / "models" / "mobilenetv1" / "model.yaml"
    written = model_yaml.stat()
    model_yaml.write_text(model_yaml.read_text().replace(
        "atc: {extra_args: []}",
        "atc: {extra_args: [" + ", ".join(f"'{e}'" for e in ATC_EXTRAS) + "]}"))
    # The reference's export (never handed to ais_bench) is reused, so that each case does
    # not export again: its file and weights record copied, model.yaml's time kept.
    os.utime(model_yaml, ns=(written.st_atime_ns, written.st_mtime_ns))
    for part in ("onnx", "weights"):
        shutil.copytree(cpu_reference / "build" / "mobilenetv1" / part,
                        root / "build" / "mobilenetv1" / part)
    for aipp in ([], ["AIPP=1"]):
        proc = make_with_standins(root, tmp_path, *e2e_args(shared_data), "SOC=Ascend310P3", *aipp,
                    frontend=frontend, umask=mask)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.stdout.count("throughput 1000*batchsize.mean(4)/NPU_compute_time.mean(") == 2
    assert calls(tmp_path, "atc") == [expected_atc("mobilenetv1", "Ascend310P3", 4, 224, aipp=aipp)
                                      + ATC_EXTRAS for aipp in (False, True)]
    assert len(calls(tmp_path, "ais_bench")) == 4
    assert_paths_checked_as_ait(tmp_path, frontend)
    for aipp in (False, True):
        check_same_as_cpu(root, "mobilenetv1", aipp=aipp, sizes=(4,), frontend=frontend,
                          cpu=cpu_reference)
    # the umask was in force: what the pipeline writes for itself follows it
    out = run_dirs(root, "mobilenetv1", "Ascend310P3", sizes=(4,))[4]
    assert stat.S_IMODE((out / "accuracy.json").stat().st_mode) == 0o666 & ~mask

    # `make sweep SHARDS=2`: each shard's folder handed to the tool, then the merged results
    shutil.rmtree(out)
    (tmp_path / "standin.log").unlink()
    proc = sweep_on_one_node(root, tmp_path, [*e2e_args(shared_data)[1:], "SOC=Ascend310P3",
                                              "MODELS=mobilenetv1", "SHARDS=2"], frontend, mask)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    shard_inputs = [argv[argv.index("--input") + 1] for argv in calls(tmp_path, "ais_bench")]
    assert sorted(shard_inputs) == [f"{out.relative_to(root)}/shards2/{i}/input" for i in (0, 1)]
    assert_paths_checked_as_ait(tmp_path, frontend)
    check_same_as_cpu(root, "mobilenetv1", sizes=(4,), frontend=frontend, cpu=cpu_reference)


def sweep_on_one_node(root, tmp_path, args, frontend, mask):
    """`make sweep ARGS` in `root` on a Ray node of two NPUs of its own (loopback only, in a
    namespace: tests/test_sweep.py), started under `mask` as its tasks then run."""
    env = {k: v for k, v in standin_env(tmp_path, frontend=frontend).items()
           if not k.startswith("RAY_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CI")}
    env["PYTHONPATH"] = env["PYTHONPATH"].replace(str(REPO), str(root))
    env["PATH"] = env["PATH"].replace(STANDINS, str(root / "tests" / "standins"))
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    temp = tempfile.mkdtemp(prefix="rz", dir="/tmp")  # short: Ray's socket paths
    namespace = Namespace()
    try:
        start = run(namespace.argv([os.path.join(VENV_BIN, "ray"), "start", "--head",
                                    "--node-ip-address=127.0.0.1", "--port=6379",
                                    "--include-dashboard=false", '--resources={"NPU": 2}',
                                    "--num-cpus=2", "--disable-usage-stats",
                                    f"--temp-dir={temp}"], root), env, root, umask=mask)
        assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
        return run(namespace.argv(["make", "--no-print-directory", "-o", ".venv/.installed",
                                   "sweep", *args], root),
                   dict(env, RAY_ADDRESS="127.0.0.1:6379"), root, umask=mask)
    finally:
        namespace.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@needs_frontend
def test_e2e_mobilenetv1_reruns_auto_and_moved_om(scratch, tmp_path, shared_data):
    data = shared_data / "imagenet-val-1300"
    common = ["mobilenetv1", "BS=4", f"DATA={data}", f"N={N}", "WEIGHTS=random", "LOOP=2",
              "WARMUP=1"]
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend310P3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Recompiling BS 4 removes only its own .om: the AIPP .om of BS 4 stays.
    folder = scratch / "build" / "mobilenetv1" / "Ascend310P3" / "random"
    (folder / "mobilenetv1_bs4_aipp.om").write_bytes(b"the AIPP artefact")
    (folder / "mobilenetv1_bs4_aipp.om.sha256").write_text(  # sealed, as its step seals it
        hashlib.sha256(b"the AIPP artefact").hexdigest() + "\n")
    os.utime(folder / "mobilenetv1_bs4.om", (0, 0))  # older than the ONNX: atc runs again
    (tmp_path / "standin.log").unlink(missing_ok=True)
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend310P3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(calls(tmp_path, "atc")) == 1
    assert (folder / "mobilenetv1_bs4_aipp.om").read_bytes() == b"the AIPP artefact"
    (folder / "mobilenetv1_bs4_aipp.om").unlink()

    # SOC=auto reads npu-smi, resolves Ascend310P3, and finds everything done.
    (tmp_path / "standin.log").unlink()
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=auto")
    assert proc.returncode == 0, proc.stderr
    assert "== mobilenetv1: BS=4 SOC=Ascend310P3 " in proc.stdout
    assert calls(tmp_path, "npu-smi")[0] == ["info"]
    assert calls(tmp_path, "atc") == [] and calls(tmp_path, "ais_bench") == []

    # An explicit SOC on a host where npu-smi fails (needs root): a warning, and the run goes on.
    (tmp_path / "standin.log").unlink()
    os.utime(folder / "mobilenetv1_bs4.om", (0, 0))
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend310P3",
                NPUZOO_STANDIN_NPU_SMI_FAIL="npu-smi: Permission denied, run as root")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings and all("not checking that DEVICE=0 is an Ascend310P3" in w
                            and "Permission denied" in w for w in warnings)
    assert len(calls(tmp_path, "ais_bench")) == 2

    # An .om moved by hand into another chip's folder is refused before ais_bench runs.
    dst = scratch / "build" / "mobilenetv1" / "Ascend910B3" / "random"
    dst.mkdir(parents=True)
    for name in ("mobilenetv1_bs4.om", "mobilenetv1_bs4.om.json", "mobilenetv1_bs4.om.sha256"):
        shutil.copy(folder / name, dst / name)
    (tmp_path / "standin.log").unlink()
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend910B3",
                              NPUZOO_STANDIN_CHIP="910B3")
    one_error_line(proc, "built for Ascend310P3, not SOC=Ascend910B3", status=None, alone=False)
    assert calls(tmp_path, "ais_bench") == []


@pytest.mark.slow
@needs_frontend
def test_e2e_make_errors(scratch, tmp_path, shared_data):
    data = shared_data / "imagenet-val-10"
    common = ["mobilenetv1", "BS=1", f"DATA={data}", "N=2", "WEIGHTS=random", "LOOP=1",
              "WARMUP=0"]
    # Warm the shared steps (export, preprocessing) so that each case below fails at its step.
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend310P3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # No toolkit: atc not on PATH and no set_env.sh to source.
    env = standin_env(tmp_path, standins=False)
    env["PYTHONPATH"] = str(scratch)
    proc = run(["make", "--no-print-directory", "-o", ".venv/.installed", *common,
                "SOC=Ascend310"], env, cwd=scratch)
    one_error_line(proc, "CANN environment is not set", status=None, alone=False)
    assert not (scratch / "build" / "mobilenetv1" / "Ascend310" / "random"
                / "mobilenetv1_bs1.om").exists()

    # A chip the toolkit's atc does not know.
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend910B3",
                NPUZOO_STANDIN_ATC_SOCS="Ascend310P3,Ascend310")
    one_error_line(proc, "atc failed for SOC=Ascend910B3", status=None, alone=False)
    # A name no Ascend chip has.
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend999")
    one_error_line(proc, "SOC=Ascend999", "unknown chip", status=None, alone=False)
    # Compiled for Ascend310, but the NPU is an Ascend310P3.
    proc = make_with_standins(scratch, tmp_path, *common, "SOC=Ascend310")
    one_error_line(proc, "DEVICE=0 is an Ascend310P3", "SOC=Ascend310", status=None, alone=False)
    assert (scratch / "build" / "mobilenetv1" / "Ascend310" / "random"
            / "mobilenetv1_bs1.om.json").is_file()
    # The real front end's own failure (here: DEVICE=1 on a one-NPU host, where npu-smi's check
    # only warns) ends with one error line after its messages.
    proc = make_with_standins(scratch, tmp_path, *[a for a in common if a != "LOOP=1"], "LOOP=3",
                "SOC=Ascend310P3", "DEVICE=1")  # a new LOOP: the perf step runs again
    assert proc.returncode != 0 and "aclrtSetDevice(1) failed" in proc.stderr
    assert "warning: not checking that DEVICE=1 is an Ascend310P3" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "-m ais_bench failed for SOC=Ascend310P3" in errors[0], proc.stderr
