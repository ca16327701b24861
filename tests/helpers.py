"""Plain helpers shared by the test modules (the fixtures are in conftest.py).

Nothing here imports an optional package (onnx, onnxruntime, openvino, torch, ray,
matplotlib) at module level: the fast suite collects without them.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NPUZOO_SHARED_DATA", REPO.parent / "shared" / "data"))
STANDINS = str(REPO / "tests" / "standins")
VENV_BIN = os.path.dirname(sys.executable)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
THIRD_PARTY = Path(os.environ.get("NPUZOO_SHARED_THIRD_PARTY",
                                  REPO.parent / "shared" / "third_party"))
# The two unmodified ais_bench front ends (test oracles).
FRONTENDS = {"2023": THIRD_PARTY / "ais_bench-9d6da90",
             "ait": THIRD_PARTY / "ais_bench-ait-3baadae7"}
FRONTEND = FRONTENDS["2023"]
HAS_FRONTEND = all((f / "ais_bench" / "infer" / "__main__.py").is_file()
                   for f in FRONTENDS.values())


# -- processes --------------------------------------------------------------------------------

def python(*args: object, cwd: Path | str = REPO, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python ARGS` with this interpreter, output captured as text."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def make(root: Path | str, *args: object, env: dict[str, str] | None = None,
         timeout: float = 900, **options: Any) -> subprocess.CompletedProcess[str]:
    """`make ARGS` in `root` as a user's shell runs it (no parent Make state, not under CI);
    `options` go to subprocess.run (input, umask)."""
    return subprocess.run(["make", "--no-print-directory", *map(str, args)], cwd=root,
                          env=env or dict(os.environ, MAKEFLAGS="", CI=""),
                          capture_output=True, text=True, timeout=timeout, **options)


def one_error_line(proc: subprocess.CompletedProcess[str], *fragments: str, status: int | None = 2,
                   alone: bool = True) -> str:
    """The single `error: ...` line of a refused run, holding every fragment: exit `status`
    (None: any non-zero), no traceback, and (`alone`) nothing else on stderr."""
    assert proc.returncode != 0 if status is None else proc.returncode == status, \
        (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines() if alone else \
        [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- the repository ---------------------------------------------------------------------------

def load_model_script(model: str, name: str) -> ModuleType:
    """Import models/<model>/<name>.py by path, as a user runs it (the folders are no package)."""
    path = REPO / "models" / model / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_test_{model}_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scratch_repository(root: Path | str) -> Path:
    """A copy of the repository in `root` (tracked and new files, not build/ nor reports/
    contents) with .venv linked, so that a test's `make` never touches the real results."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, Path(root) / name
        if name.startswith("reports/") or "__pycache__" in name or not src.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)  # keep mtimes: the venv stamp stays newer than requirements
    os.symlink(REPO / ".venv", Path(root) / ".venv")
    return Path(root)


def plan_args(root: Path | str, **fields: Any) -> str:
    """`PLAN=<file>` of a plan (npuzoo/plan.py) written under `root`, for a test's own
    `make -f mk/pipeline.mk`: a CPU run of mobilenetv1 at BS 4 with random weights unless
    `fields` say otherwise."""
    from npuzoo import plan

    values: dict[str, Any] = dict(
        model="mobilenetv1", soc="cpu", bs=4, runner="local", device="0", loop=20, warmup=2,
        limit=None, aipp=False, precision="fp32", engine="onnxruntime", own_engine="onnxruntime",
        quantizer="", tuned=False, streams=0, perf_seconds=0, force=False, strict=False,
        data_id="data-0123456789ab-nall", prep_key="", prep_bytes=0, export_key="",
        weights_id="random", weights_path="random", has_upstream=False)
    return "PLAN=" + plan.RunPlan(**{**values, **fields}).write(str(root))


def frontend_env(root: Path | str, frontend: str = "2023") -> dict[str, str]:
    """PYTHONPATH and settings that put `frontend` and the aclruntime stand-in of the checkout
    `root` in place, as `pip install` of the two wheels would."""
    standins = os.path.join(root, "tests", "standins")
    return {"PYTHONPATH": os.pathsep.join([
                str(FRONTENDS[frontend]),
                os.path.join(standins, "frontends", FRONTENDS[frontend].name),
                os.path.join(standins, "acl"), str(root)]),
            "NPUZOO_STANDIN_AIT": str(FRONTENDS["ait"]),
            "PYTHONDONTWRITEBYTECODE": "1"}  # nothing written into ../shared/third_party


class Namespace:
    """A network + PID namespace (unshare) holding a sleeping first process; commands enter it
    with nsenter. Killing the first process ends everything inside."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--pid", "--mount", "--fork", "--mount-proc", "--kill-child",
             "--", "bash", "-c", "ip link set lo up && exec sleep 1800"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        self.pid = None
        while time.time() < deadline and self.pid is None:
            children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children")
            text = children.read_text().split() if children.exists() else []
            if text and "sleep" in Path(f"/proc/{text[0]}/cmdline").read_text():
                self.pid = int(text[0])
            elif self.holder.poll() is not None:
                break
            time.sleep(0.1)
        if self.pid is None:
            self.close()
            pytest.skip("cannot make a network and PID namespace here (unshare)")

    def argv(self, argv: list[str], cwd: Path | str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", "-p", "-m", f"--wd={cwd}", "--", *argv]

    def run(self, argv: list[str], env: dict[str, str], cwd: Path | str,
            timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv, cwd), env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, argv: list[str], env: dict[str, str], cwd: Path | str,
              out: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(argv, cwd), env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.holder.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait(timeout=10)


# -- data -------------------------------------------------------------------------------------

def synthetic_dataset(root: Path, count: int = 12, broken: str | None = None) -> Path:
    """Small JPEGs of assorted sizes with labels, optionally one undecodable file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "val").mkdir(parents=True)
    lines = []
    for index in range(count):
        name = f"ILSVRC2012_val_{index + 1:08d}.JPEG"
        size = (int(rng.integers(200, 400)), int(rng.integers(200, 400)))
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "val" / name, quality=90)
        lines.append(f"{name} {int(rng.integers(0, 1000))}\n")
    if broken:
        (root / "val" / broken).write_bytes(b"\xff\xd8 this is not a jpeg")
        lines.append(f"{broken} 1\n")
    (root / "val_label.txt").write_text("".join(lines))
    return root


# -- the runner (npuzoo.bench) on a tiny model --------------------------------------------------

W = ((np.arange(48 * 10, dtype=np.float32).reshape(48, 10) % 7) - 3) / 4


def save_onnx(graph: Any, path: Path | str, opset: int = 13) -> str:
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def classifier(path: Path | str, batch: int | str) -> str:
    """image [batch,3,4,4] -> class = reshape(N,48) @ W (N,10), and batchsum (N,1): the sum of
    the whole batch, broadcast to every row (shows what padding went in)."""
    onnx = pytest.importorskip("onnx")
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["class"]),
        helper.make_node("ReduceSum", ["flat", "ax1"], ["rows"], keepdims=1),
        helper.make_node("ReduceSum", ["rows", "ax0"], ["total"], keepdims=1),
        helper.make_node("Mul", ["rows", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "total"], ["batchsum"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 48], np.int64), "shape"),
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
    ]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 4, 4])],
        [helper.make_tensor_value_info("class", TensorProto.FLOAT, [batch, 10]),
         helper.make_tensor_value_info("batchsum", TensorProto.FLOAT, [batch, 1])],
        inits)
    return save_onnx(graph, path)


def images(n: int, seed: int = 0) -> np.ndarray:
    """n random inputs of the tiny classifier."""
    return np.random.default_rng(seed).normal(size=(n, 3, 4, 4)).astype(np.float32)


def write_bins(folder: Path | str, arrays: Any, names: list[str] | None = None) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, array in enumerate(arrays):
        path = os.path.join(str(folder), names[i] if names else f"img_{i:03d}.bin")
        array.tofile(path)
        paths.append(path)
    return paths


def run_api(argv: list[Any], capsys: Any = None, threads: int = 1) -> tuple[Any, str]:
    """npuzoo.bench.run in this process: (summary, what it printed)."""
    from npuzoo import bench

    summary = bench.run([str(a) for a in argv], threads=threads)
    out = capsys.readouterr().out if capsys is not None else ""
    return summary, out


FLOAT = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf)"
THROUGHPUT_RE = re.compile(r"^\[INFO\] throughput 1000\*batchsize\.mean\((\d+(?:\.\d+)?)\)/"
                           rf"NPU_compute_time\.mean\(({FLOAT})\): ({FLOAT})$")
# The keys of ais_bench's (T23) summary JSON, in its order.
T23_KEYS = ["filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency", "throughput",
            "npu_compute_time_list", "pid"]


def stats_re(name: str) -> re.Pattern[str]:
    """A printed `[INFO] NAME (ms): min = ..., percentile(99%) = ...` line."""
    return re.compile(rf"^\[INFO\] {name} \(ms\): min = ({FLOAT}), max = ({FLOAT}), mean = "
                      rf"({FLOAT}), median = ({FLOAT}), "
                      rf"percentile\(99%\) = ({FLOAT})$")


def summary_block(out: str) -> list[str]:
    """The lines between the rules of the printed "Performance Summary" block."""
    lines = out.splitlines()
    start = lines.index("[INFO] -----------------Performance Summary------------------")
    end = lines.index("[INFO] ------------------------------------------------------", start)
    return lines[start + 1:end]


# -- reports ----------------------------------------------------------------------------------

def accuracy_json(top1: float, top5: float, images: int) -> str:
    values = [("Number of images", str(images)), ("Number of classes", "1000")]
    values += [(f"Top{k} accuracy", f"{top1 if k == 1 else top5}%") for k in range(1, 6)]
    return json.dumps({"title": "Overall statistical evaluation",
                       "value": [{"key": k, "value": v} for k, v in values]})


def run_report(*args: object,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return python("-m", "npuzoo.report", *args, env=dict(os.environ, **(env or {})))


def built_report(tmp_path: Path, top1: float, top5: float, images: int = 50000,
                 weights: str = "published", throughput: float = 300.0, tag: str = "run",
                 model: str = "mobilenetv1", bs: int = 4, precision: str = "fp32",
                 reports: Path | None = None) -> Path:
    """A report built by `npuzoo.report write` from the pieces the pipeline makes (an int8
    run's `fp32_speedup` from the reports in `reports`)."""
    run = tmp_path / tag
    (run / "perf").mkdir(parents=True)
    full = images == 50000
    (run / "dataset.json").write_text(json.dumps({
        "name": "imagenet" if full else "imagenet-val-1300", "images": images,
        "labelled_images": 50000 if full else 1300, "subset": not full,
        "full_validation_set": full, "labels_sha256": f"sha-{images}"}))
    (run / "weights.json").write_text(json.dumps({"source": weights, "md5": None}))
    (run / "accuracy.json").write_text(accuracy_json(top1, top5, images))
    times = [1000.0 * bs / throughput] * 5
    (run / "perf_summary.json").write_text(json.dumps({
        "throughput": throughput, "npu_compute_time_list": times,
        "NPU_compute_time": {"count": 5}}))
    (run / "extra.json").write_text(json.dumps({"backend": {
        "name": "onnxruntime", "version": "1", **({"precision": precision} if precision != "fp32"
                                                  else {})}}))
    out = run / "report.json"
    proc = run_report("write", "--model", model, "--soc", "cpu", "--bs", bs,
                      "--dataset", run / "dataset.json", "--weights", run / "weights.json",
                      "--accuracy", run / "accuracy.json", "--perf-dir", run,
                      "--perf-dirname", "perf", "--loop", 5, "--warmup", 1, "--out", out,
                      *(["--extra", run / "extra.json"] if precision != "fp32" else []),
                      env={"NPUZOO_REPORTS_DIR": str(reports)} if reports else None)
    assert proc.returncode == 0, proc.stderr
    return out


FULL_SET = 50000


def make_report(model: str, soc: str, bs: int, throughput: float, top1: float = 0.33,
                top5: float = 1.0, images: int = 300, weights: str = "random",
                reference: Any = None, timestamp: str = "2025-11-22T03:00:00Z",
                commit: str = "0123456789ab") -> dict[str, Any]:
    """A report as `npuzoo.report write` lays it out, with the gate judged by report.gate."""
    from npuzoo import config
    from npuzoo.report import build

    full = images == FULL_SET
    dataset = {"name": "imagenet" if full else "imagenet-val-1300", "images": images,
               "labelled_images": images if full else 1300, "subset": not full,
               "full_validation_set": full, "labels_sha256": f"labels-{images}"}
    accuracy = {"top1": top1, "top2": top1, "top3": top1, "top4": top1, "top5": top5,
                "images": images, "classes": 1000, "meaningful": weights != "random"}
    weights_info = {"source": weights}
    latency = 1000.0 * bs / throughput
    return {
        "schema": 1, "model": model, "soc": soc, "device": "Test CPU (2 cores)",
        "batch_size": bs, "backend": {"name": "onnxruntime", "version": "1.31.1"},
        "commit": commit, "timestamp": timestamp, "weights": weights_info, "dataset": dataset,
        "accuracy": accuracy,
        "gate": build.gate(reference or config.load("mobilenetv1").reference, accuracy,
                           dataset, weights_info),
        "perf": {"throughput": throughput,
                 "latency_ms": {"mean": latency, "p50": latency, "p90": latency * 1.05,
                                "p99": latency * 1.1, "min": latency, "max": latency * 1.2},
                 "samples": 20, "loop": 20, "warmup": 2},
        "environment": {"python": "3.11.2", "torch": "2.14.1", "onnxruntime": "1.31.1"},
    }
