"""The Ascend path (issue 5): atc and ais_bench as the ModelZoo guides drive them, chip detection.

No Ascend hardware exists here: the stand-ins in tests/standins (atc, npu-smi, and the
`ais_bench` package for `python3 -m ais_bench`) enforce ais_bench_contract.md §2-§5, §8, §9 and
log their argv, so these tests check the exact commands mk/pipeline.mk issues, that the
stand-ins reject what the real tools reject, and that a missing toolkit, an unknown chip and a
wrong-chip .om each stop with one `error: ...` line.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from npuzoo import ascend, soc
from npuzoo.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDINS = os.path.join(REPO, "tests", "standins")
VENV_BIN = os.path.dirname(sys.executable)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


# -- helpers -----------------------------------------------------------------------------------

def standin_env(tmp_path, standins=True, **extra):
    """An environment with the stand-ins first on PATH/PYTHONPATH (or none of them), no CANN."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPUZOO_STANDIN", "ASCEND_")) and k not in ("PYTHONPATH",)}
    path = [VENV_BIN, SYSTEM_PATH]
    if standins:
        path.insert(0, STANDINS)
        env["PYTHONPATH"] = STANDINS + os.pathsep + REPO
    else:
        env["PYTHONPATH"] = REPO
    env["PATH"] = os.pathsep.join(path)
    env["NPUZOO_ASCEND_ROOT"] = str(tmp_path / "no-ascend-here")
    env["NPUZOO_STANDIN_LOG"] = str(tmp_path / "standin.log")
    env["NPUZOO_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def calls(tmp_path, tool=None):
    path = tmp_path / "standin.log"
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [e["argv"] for e in entries if tool is None or e["tool"] == tool]


def run(argv, env, cwd=REPO):
    return subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def atc(tmp_path, *args, **extra):
    return run([os.path.join(STANDINS, "atc"), *args], standin_env(tmp_path, **extra))


def ais_bench(tmp_path, *args, **extra):
    return run([sys.executable, "-m", "ais_bench", *args], standin_env(tmp_path, **extra))


def assert_one_error_line(proc, *fragments):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


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
    onnx_path, om = compile_tiny(tmp_path, bs=4)
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
    (_replace(ATC_BASE, "soc_version", "Ascend999"), "Value [Ascend999] for parameter [--soc_version]"),
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
    (ATC_BASE + ["--precision_mode=force_fp16", "--precision_mode_v2=fp16"], "cannot be used together"),
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


def test_atc_os_arch_suffix_is_renamed_by_record_om(tmp_path):
    onnx_path, _ = compile_tiny(tmp_path, NPUZOO_STANDIN_ATC_SUFFIX="linux_x86_64")
    base = str(tmp_path / "om" / "tiny_bs2")
    assert os.path.isfile(base + "_linux_x86_64.om") and not os.path.exists(base + ".om")
    record = ascend.record_om(base, "Ascend310P3", onnx_path, 2)
    assert os.path.isfile(base + ".om") and not os.path.exists(base + "_linux_x86_64.om")
    assert record["soc_version"] == "Ascend310P3"
    ascend.check_om(base + ".om", "Ascend310P3")


# -- ais_bench stand-in ----------------------------------------------------------------------------

def test_ais_bench_outputs_in_the_documented_formats(tmp_path):
    onnx_path, om = compile_tiny(tmp_path, bs=2)
    arrays = write_inputs(tmp_path / "prep", 5)
    out = tmp_path / "out"
    proc = ais_bench(tmp_path, "--model", om, "--input", tmp_path / "prep", "--output", out,
                     "--output_dirname", "results", "--outfmt", "TXT", "--batchsize", "2",
                     "--device", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[INFO] -----------------Performance Summary------------------" in proc.stdout
    assert "throughput 1000*batchsize.mean(2)/NPU_compute_time.mean(" in proc.stdout
    assert "H2D_latency" not in proc.stdout
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


def test_ais_bench_perf_loop_and_warmup(tmp_path):
    _, om = compile_tiny(tmp_path, bs=2)
    out = tmp_path / "perf"
    proc = ais_bench(tmp_path, "--model", om, "--output", out, "--output_dirname", "perf",
                     "--outfmt", "BIN", "--batchsize", "2", "--loop", "5", "--warmup_count", "2")
    assert proc.returncode == 0, proc.stderr
    assert "[INFO] warm up 2 done" in proc.stdout
    summary = json.loads((out / "perf_summary.json").read_text())
    assert summary["NPU_compute_time"]["count"] == 5
    assert (out / "perf" / "pure_infer_data_0.bin").stat().st_size == 2 * 10 * 4


@pytest.mark.parametrize("args, fragment", [
    (["--bogus", "1"], "unrecognized arguments"),
    (["--outfmt", "CSV"], "invalid choice"),
    (["--output_dirname", "results"], "--output_dirname can't be used alone"),
    (["--device", "300"], "valid value range is [0, 255]"),
    (["--device", "1"], "aclrtSetDevice(1) failed"),
    (["--loop", "0"], "invalid positive int value"),
])
def test_ais_bench_rejects_what_ais_bench_rejects(tmp_path, args, fragment):
    _, om = compile_tiny(tmp_path)
    proc = ais_bench(tmp_path, "--model", om, *args)
    assert_one_error_line(proc, fragment)


def test_ais_bench_input_size_must_divide_model_input(tmp_path):
    _, om = compile_tiny(tmp_path)
    (tmp_path / "prep").mkdir()
    np.zeros(40, dtype=np.float32).tofile(tmp_path / "prep" / "a.bin")
    proc = ais_bench(tmp_path, "--model", om, "--input", tmp_path / "prep", "--output",
                     tmp_path / "out")
    assert_one_error_line(proc, "tensorsize", "filesize", "not match")


def test_ais_bench_refuses_om_of_another_chip_and_non_om(tmp_path):
    onnx_path, om = compile_tiny(tmp_path, soc_version="Ascend310")
    proc = ais_bench(tmp_path, "--model", om)
    assert_one_error_line(proc, "--soc_version=Ascend310", "Ascend310P3")
    proc = ais_bench(tmp_path, "--model", om, NPUZOO_STANDIN_CHIP="310")
    assert proc.returncode == 0, proc.stderr
    assert_one_error_line(ais_bench(tmp_path, "--model", onnx_path), "not an offline model")


def test_ais_bench_dynamic_batch_om(tmp_path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    base = tmp_path / "dyn"
    proc = atc(tmp_path, "--framework=5", f"--model={onnx_path}", f"--output={base}",
               "--input_shape=image:-1,3,4,4", "--dynamic_batch_size=1,2,4",
               "--soc_version=Ascend310P3")
    assert proc.returncode == 0, proc.stderr
    om = str(base) + ".om"
    assert_one_error_line(ais_bench(tmp_path, "--model", om), "give --dymBatch")
    assert_one_error_line(ais_bench(tmp_path, "--model", om, "--dymBatch", "3"), "not one of")
    proc = ais_bench(tmp_path, "--model", om, "--dymBatch", "4")
    assert proc.returncode == 0, proc.stderr
    assert "batchsize.mean(4)" in proc.stdout


def test_ais_bench_version_is_readable(tmp_path):
    env = standin_env(tmp_path)
    versions = ascend.python_package_versions(sys.executable, ["ais_bench"], env)
    assert versions["ais_bench"].startswith("0.0.2")


# -- npu-smi and SOC=auto ------------------------------------------------------------------------

def test_npu_smi_standin_table_parses(tmp_path):
    proc = run(["npu-smi", "info"], standin_env(tmp_path, NPUZOO_STANDIN_NPUS=2))
    assert proc.returncode == 0
    assert "npu-smi 23.0.0" in proc.stdout and "Version: 23.0.0" in proc.stdout
    assert soc.parse_npu_smi(proc.stdout) == [(0, "Ascend310P3"), (1, "Ascend310P3")]
    assert soc.parse_npu_smi_devices(proc.stdout) == {0: "Ascend310P3", 1: "Ascend310P3"}
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
    assert soc.parse_npu_smi(DUO) == [(1, "Ascend310P3"), (2, "Ascend310")]
    assert soc.parse_npu_smi_devices(DUO) == {0: "Ascend310P3", 1: "Ascend310P3", 2: "Ascend310"}


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
    assert_one_error_line(proc, "DEVICE=3")


# -- npuzoo.ascend: the CANN environment, chip checks, versions -----------------------------------

def ascend_cli(env, *args):
    return run([sys.executable, "-m", "npuzoo.ascend", *args], env)


def fake_toolkit(tmp_path, socs=("Ascend310P3", "Ascend310")):
    """An ascend-toolkit folder whose set_env.sh puts the stand-ins on PATH, as CANN's does atc."""
    home = tmp_path / "Ascend" / "ascend-toolkit" / "latest"
    (home / "x86_64-linux" / "data" / "platform_config").mkdir(parents=True)
    for name in socs:
        (home / "x86_64-linux" / "data" / "platform_config" / f"{name}.ini").write_text("[version]\n")
    (home / "x86_64-linux" / "ascend_toolkit_install.info").write_text(
        "package_name=Ascend-cann-toolkit\nversion=7.0.0\ninnerversion=V100R001C15\n")
    (home.parent / "set_env.sh").write_text(
        f'export ASCEND_TOOLKIT_HOME={home}\nexport ASCEND_HOME_PATH={home}\n'
        f'export PATH={STANDINS}:$PATH\nexport PYTHONPATH={STANDINS}:$PYTHONPATH\n')
    return home


def test_missing_toolkit_stops_with_one_line(tmp_path):
    env = standin_env(tmp_path, standins=False)
    proc = ascend_cli(env, "run", "--soc", "Ascend310P3", "--", "atc", "--framework=5")
    assert_one_error_line(proc, "CANN environment is not set", "set_env.sh")
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


def test_chip_the_toolkit_does_not_know(tmp_path):
    home = fake_toolkit(tmp_path, socs=("Ascend310P3",))
    env = standin_env(tmp_path, standins=False, ASCEND_TOOLKIT_HOME=home)
    proc = ascend_cli(env, "run", "--soc", "Ascend910B3", "--", "atc", "--framework=5")
    assert_one_error_line(proc, "SOC=Ascend910B3", "no platform file", "Ascend310P3")
    assert calls(tmp_path, "atc") == []


def test_failing_atc_ends_with_one_clear_line(tmp_path):
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    env = standin_env(tmp_path, NPUZOO_STANDIN_ATC_SOCS="Ascend310P3")
    proc = ascend_cli(env, "run", "--soc", "Ascend910B3", "--", "atc", "--framework=5",
                      f"--model={onnx_path}", f"--output={tmp_path / 'm'}",
                      "--input_shape=image:1,3,4,4", "--soc_version=Ascend910B3")
    assert "E10001" in proc.stderr
    assert_one_error_line(proc, "atc failed for SOC=Ascend910B3")
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_om_chip_record_is_checked(tmp_path):
    onnx_path, om = compile_tiny(tmp_path)
    env = standin_env(tmp_path)
    args = ["run", "--soc", "Ascend310P3", "--om", om, "--device", "0", "--",
            sys.executable, "-m", "ais_bench", "--model", om]
    assert_one_error_line(ascend_cli(env, *args), "no record of the chip")
    ascend.record_om(om[:-3], "Ascend310", onnx_path, 2)
    assert_one_error_line(ascend_cli(env, *args), "built for Ascend310, not SOC=Ascend310P3")
    ascend.record_om(om[:-3], "Ascend310P3", onnx_path, 2)
    proc = ascend_cli(env, *args)
    assert proc.returncode == 0, proc.stderr


def test_device_chip_must_match_soc(tmp_path):
    onnx_path, om = compile_tiny(tmp_path, soc_version="Ascend310")
    ascend.record_om(om[:-3], "Ascend310", onnx_path, 2)
    proc = ascend_cli(standin_env(tmp_path), "run", "--soc", "Ascend310", "--om", om,
                      "--device", "0", "--", sys.executable, "-m", "ais_bench", "--model", om)
    assert_one_error_line(proc, "DEVICE=0 is an Ascend310P3", "SOC=Ascend310")
    assert calls(tmp_path, "ais_bench") == []


def test_ais_bench_not_installed(tmp_path):
    env = standin_env(tmp_path, standins=False, ASCEND_HOME_PATH=str(tmp_path))
    proc = ascend_cli(env, "run", "--", sys.executable, "-m", "ais_bench", "--model", "x.om")
    assert_one_error_line(proc, "-m ais_bench` is not the ais_bench inference tool", "pip install")


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
    assert data["environment"]["ais_bench"].startswith("0.0.2")
    assert data["device"].startswith("Ascend310P3")


def test_check_om_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such .om"):
        ascend.check_om(str(tmp_path / "x.om"), "Ascend310P3")


# -- make: the commands the guides give ----------------------------------------------------------

def expected_atc(model, soc_version, bs, hw, weights="random"):
    return ["--framework=5", f"--model=build/{model}/onnx/{weights}/{model}.onnx",
            f"--output=build/{model}/{soc_version}/{weights}/{model}_bs{bs}",
            "--input_format=NCHW", f"--input_shape=image:{bs},3,{hw},{hw}", "--log=error",
            f"--soc_version={soc_version}"]


def test_make_n_shows_the_guides_commands(tmp_path, shared_data):
    data = shared_data / "imagenet-val-10"
    proc = run(["make", "-n", "-o", ".venv/.installed", "mobilenetv1", "BS=4",
                "SOC=Ascend310P3", f"DATA={data}", "WEIGHTS=random"], standin_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    atc_line = next(line for line in lines if " atc " in line)
    atc_args = atc_line.split(" atc ", 1)[1].split()
    want = expected_atc("mobilenetv1", "Ascend310P3", 4, 224)
    want[4] = '--input_shape="image:4,3,224,224"'
    assert atc_args == want
    bench = [line.split(" python3 -m ais_bench ", 1)[1].split(" | ")[0].split()
             for line in lines if " python3 -m ais_bench " in line]
    dataset = f"build/mobilenetv1/data/imagenet-val-10-"
    infer, perf = bench
    assert infer[:2] == ["--model", "build/mobilenetv1/Ascend310P3/random/mobilenetv1_bs4.om"]
    assert infer[2] == "--input" and infer[3].startswith(dataset) and infer[3].endswith("/prep")
    assert infer[6:] == ["--output_dirname", "results", "--outfmt", "TXT", "--batchsize", "4",
                         "--device", "0"]
    assert perf[4:] == ["--output_dirname", "perf", "--outfmt", "BIN", "--batchsize", "4",
                        "--loop", "20", "--warmup_count", "2", "--device", "0"]
    assert calls(tmp_path) == []  # -n runs nothing but the makefile plumbing


# -- end to end, with the stand-ins, on a copy of the repository ---------------------------------

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A copy of the working tree (no build/, reports/, .git) sharing the .venv."""
    root = tmp_path_factory.mktemp("ascend-e2e") / "repo"
    shutil.copytree(REPO, root, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", "build", "reports", ".git", "__pycache__", ".pytest_cache"))
    os.symlink(os.path.join(REPO, ".venv"), root / ".venv")
    return root


def make(workspace, tmp_path, *args, **extra):
    env = standin_env(tmp_path, **extra)
    env["PYTHONPATH"] = env["PYTHONPATH"].replace(REPO, str(workspace))
    env["PATH"] = env["PATH"].replace(STANDINS, str(workspace / "tests" / "standins"))
    return run(["make", "--no-print-directory", "-o", ".venv/.installed", *args], env,
               cwd=workspace)


def e2e(workspace, tmp_path, shared_data, model, hw, n):
    data = shared_data / "imagenet-val-1300"
    common = [model, "BS=4", f"DATA={data}", f"N={n}", "WEIGHTS=random", "LOOP=2", "WARMUP=1"]
    proc = make(workspace, tmp_path, *common, "SOC=Ascend310P3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    atc_calls = calls(tmp_path, "atc")
    assert atc_calls == [expected_atc(model, "Ascend310P3", 4, hw)]
    bench_calls = calls(tmp_path, "ais_bench")
    assert len(bench_calls) == 2
    infer, perf = bench_calls
    om = f"build/{model}/Ascend310P3/random/{model}_bs4.om"
    assert infer[:2] == ["--model", om] and infer[6:] == [
        "--output_dirname", "results", "--outfmt", "TXT", "--batchsize", "4", "--device", "0"]
    assert perf[:2] == ["--model", om] and "--input" not in perf
    assert perf[4:] == ["--output_dirname", "perf", "--outfmt", "BIN", "--batchsize", "4",
                        "--loop", "2", "--warmup_count", "1", "--device", "0"]

    proc = make(workspace, tmp_path, *common, "SOC=cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    build = workspace / "build" / model
    runs = {chip: next((build / chip / "random" / "bs4").glob("imagenet-val-1300-*"))
            for chip in ("Ascend310P3", "cpu")}
    accuracy = {chip: (path / "accuracy.json").read_bytes() for chip, path in runs.items()}
    assert accuracy["Ascend310P3"] == accuracy["cpu"]
    assert json.loads(accuracy["cpu"])["value"][0]["value"] == str(n)
    results = {chip: sorted(os.listdir(path / "results")) for chip, path in runs.items()}
    assert results["Ascend310P3"] == results["cpu"] and len(results["cpu"]) == n
    for name in results["cpu"][:8]:
        assert (runs["Ascend310P3"] / "results" / name).read_bytes() == \
            (runs["cpu"] / "results" / name).read_bytes()

    reports = {chip: json.loads((workspace / "reports" / model / f"{chip}_bs4.json").read_text())
               for chip in ("Ascend310P3", "cpu")}
    ascend_report, cpu_report = reports["Ascend310P3"], reports["cpu"]
    assert set(ascend_report) == set(cpu_report)
    assert ascend_report["accuracy"] == cpu_report["accuracy"]
    assert ascend_report["soc"] == "Ascend310P3"
    assert ascend_report["backend"]["name"] == "ais_bench"
    assert ascend_report["environment"]["ais_bench"].startswith("0.0.2")
    assert ascend_report["environment"]["driver"] == "23.0.0"
    assert ascend_report["perf"]["samples"] == 2 and ascend_report["perf"]["throughput"] > 0
    return common


@pytest.mark.slow
def test_e2e_mobilenetv1_on_standins(workspace, tmp_path, shared_data):
    common = e2e(workspace, tmp_path, shared_data, "mobilenetv1", 224, 64)

    # SOC=auto reads npu-smi, resolves Ascend310P3, and finds everything done.
    (tmp_path / "standin.log").unlink()
    proc = make(workspace, tmp_path, *common, "SOC=auto")
    assert proc.returncode == 0, proc.stderr
    assert "reports/mobilenetv1/Ascend310P3_bs4.json is up to date" in proc.stdout
    assert calls(tmp_path, "npu-smi")[0] == ["info"]
    assert calls(tmp_path, "atc") == [] and calls(tmp_path, "ais_bench") == []

    # An .om moved by hand into another chip's folder is refused before ais_bench runs.
    src = workspace / "build" / "mobilenetv1" / "Ascend310P3" / "random"
    dst = workspace / "build" / "mobilenetv1" / "Ascend910B3" / "random"
    dst.mkdir(parents=True)
    for name in ("mobilenetv1_bs4.om", "mobilenetv1_bs4.om.json"):
        shutil.copy(src / name, dst / name)
    (tmp_path / "standin.log").unlink()
    proc = make(workspace, tmp_path, *common, "SOC=Ascend910B3", NPUZOO_STANDIN_CHIP="910B3")
    assert_one_error_line(proc, "built for Ascend310P3, not SOC=Ascend910B3")
    assert calls(tmp_path, "ais_bench") == []


@pytest.mark.slow
def test_e2e_make_errors(workspace, tmp_path, shared_data):
    data = shared_data / "imagenet-val-10"
    common = ["mobilenetv1", "BS=1", f"DATA={data}", "N=2", "WEIGHTS=random", "LOOP=1",
              "WARMUP=0"]
    # Warm the shared steps (export, preprocessing) so that each case below fails at its step.
    proc = make(workspace, tmp_path, *common, "SOC=Ascend310P3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # No toolkit: atc not on PATH and no set_env.sh to source.
    env = standin_env(tmp_path, standins=False)
    env["PYTHONPATH"] = str(workspace)
    proc = run(["make", "--no-print-directory", "-o", ".venv/.installed", *common,
                "SOC=Ascend310"], env, cwd=workspace)
    assert_one_error_line(proc, "CANN environment is not set")
    assert not (workspace / "build" / "mobilenetv1" / "Ascend310" / "random"
                / "mobilenetv1_bs1.om").exists()

    # A chip the toolkit's atc does not know.
    proc = make(workspace, tmp_path, *common, "SOC=Ascend910B3",
                NPUZOO_STANDIN_ATC_SOCS="Ascend310P3,Ascend310")
    assert_one_error_line(proc, "atc failed for SOC=Ascend910B3")
    # A name no Ascend chip has.
    proc = make(workspace, tmp_path, *common, "SOC=Ascend999")
    assert_one_error_line(proc, "SOC=Ascend999", "unknown chip")
    # Compiled for Ascend310, but the NPU is an Ascend310P3.
    proc = make(workspace, tmp_path, *common, "SOC=Ascend310")
    assert_one_error_line(proc, "DEVICE=0 is an Ascend310P3", "SOC=Ascend310")
    assert (workspace / "build" / "mobilenetv1" / "Ascend310" / "random"
            / "mobilenetv1_bs1.om.json").is_file()


PATCHED = [m for m in ("inceptionv4", "dpn131")
           if os.path.isfile(os.path.join(REPO, "models", m, "pth2onnx.py"))]


@pytest.mark.slow
@pytest.mark.skipif(not PATCHED, reason="no patched model (inceptionv4, dpn131) in models/")
def test_e2e_patched_model_on_standins(workspace, tmp_path, shared_data):
    model = PATCHED[0]
    hw = 299 if model == "inceptionv4" else 224
    e2e(workspace, tmp_path, shared_data, model, hw, 16)


def test_make_n_device_selects_the_npu(tmp_path, shared_data):
    proc = run(["make", "-n", "-o", ".venv/.installed", "mobilenetv1", "BS=1", "SOC=Ascend310P3",
                f"DATA={shared_data / 'imagenet-val-10'}", "WEIGHTS=random", "DEVICE=1"],
               standin_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.replace("\\\n", " ")
    bench = [" ".join(line.split()) for line in text.splitlines() if " -m ais_bench " in line]
    assert len(bench) == 2
    for line in bench:
        assert "npuzoo.ascend run --soc Ascend310P3" in line and "--device 1 --" in line
        assert line.split(" | ")[0].endswith("--device 1")
