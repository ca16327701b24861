"""End-to-end: `make mobilenetv1 ...` on SOC=cpu, in a scratch copy of the repository.

Each test copies the tracked files (not build/, not reports/ contents) into a temporary
folder and links the real .venv, so the committed reports are never touched.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import make, synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def snapshot(folder):
    """mtimes of the files under `folder`, but the run lock's (each run rewrites its holder),
    the step log's (each run logs its checksum step) and the stat cache's (a file hashed just
    after it was written is cached only by the next run: npuzoo.checksums.RACY_NS)."""
    return {str(p): p.stat().st_mtime_ns for p in Path(folder).rglob("*")
            if p.is_file() and p.name not in (".lock", "steps.jsonl", ".hashes.json")}


def test_full_pipeline_sweep_and_no_rework(scratch, shared_data):
    data = shared_data / "imagenet-val-1300"
    args = ["mobilenetv1", f"DATA={data}", "N=40", "BS=1 16", "WEIGHTS=random", "LOOP=5"]
    first = make(scratch, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for bs in (1, 16):
        report = json.loads((scratch / f"reports/mobilenetv1/cpu_bs{bs}.json").read_text())
        assert report["model"] == "mobilenetv1" and report["soc"] == "cpu"
        assert report["batch_size"] == bs
        assert report["dataset"]["images"] == 40 and report["dataset"]["subset"] is True
        assert report["weights"]["source"] == "random"
        assert report["accuracy"]["images"] == 40 and report["accuracy"]["meaningful"] is False
        assert report["gate"]["verdict"] == "not applicable"
        assert report["perf"]["throughput"] > 0 and report["perf"]["loop"] == 5
        assert report["perf"]["samples"] == 5
        for key in ("mean", "p50", "p90", "p99"):
            assert report["perf"]["latency_ms"][key] > 0
        assert report["backend"]["name"] == "onnxruntime"
        assert report["timings"]["steps"]["inference"] > 0 \
            and "export" in report["timings"]["steps"]
        assert set(report["environment"]) >= {"python", "torch", "onnx", "onnxruntime"}
    assert "steps of this run (wall time, s):" in first.stdout
    # One export and one preprocessing serve both batch sizes.
    assert len(list((scratch / "build/mobilenetv1/onnx").rglob("*.onnx"))) == 1
    assert len(list((scratch / "build/prep").glob("*/*.bin"))) == 40

    before = snapshot(scratch / "build") | snapshot(scratch / "reports")
    second = make(scratch, *args)
    assert second.returncode == 0, second.stderr
    assert snapshot(scratch / "build") | snapshot(scratch / "reports") == before
    assert second.stdout.count("this run is already recorded") == 2

    # An interrupted run resumes: only the missing steps are redone.
    accuracy = next((scratch / "build/mobilenetv1/cpu").rglob("bs16/*/accuracy.json"))
    infer_stamp = accuracy.parent / "infer.done"
    stamp_time = infer_stamp.stat().st_mtime_ns
    accuracy.unlink()
    third = make(scratch, *args)
    assert third.returncode == 0, third.stderr
    assert accuracy.exists() and infer_stamp.stat().st_mtime_ns == stamp_time
    assert "npuzoo.bench" not in third.stdout and "postprocess.py" in third.stdout
    reused = [line for line in third.stdout.splitlines() if "reused from an earlier run" in line]
    assert len(reused) == 1 and "export, compile, inference, perf" in reused[0]


def test_pipeline_on_generated_images(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    result = make(scratch, "mobilenetv1", f"DATA={data}", "BS=4", "WEIGHTS=random", "LOOP=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((scratch / "reports/mobilenetv1/cpu_bs4.json").read_text())
    assert report["accuracy"]["images"] == 12 and report["dataset"]["subset"] is False


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("variables, fragment", [
    (["DATA=/nonexistent/imagenet"], "DATA=/nonexistent/imagenet: no such folder"),
    (["SOC=Ascend999"], "SOC=Ascend999: unknown chip"),
    (["BS=abc"], "BS=abc: expected positive batch sizes"),
    (["N=0"], "N=0: expected a positive number"),
    (["N=500"], "N=500: DATA="),
    (["WEIGHTS=/nonexistent/w.pth"], "WEIGHTS=/nonexistent/w.pth: no such file"),
    (["RUNNER=podman"], "RUNNER=podman"),
    (["BS="], "BS is empty"),
    (["LOOP=10 20"], "LOOP=10 20: expected a positive number"),
    (["WARMUP=2 ~"], "WARMUP=2 ~"),
    (["SOC=Ascend310P3"], "the CANN environment is not set: atc is not on PATH"),
    (["FORCE=yes"], "FORCE=yes"),
    (["TUNE=off"], "TUNE=off: unknown value; use TUNE=0"),
])
def test_bad_make_variables(scratch, tmp_path, variables, fragment):
    data = synthetic_dataset(tmp_path / "data")
    defaults = {"DATA": str(data), "WEIGHTS": "random"}
    defaults.update(v.split("=", 1) for v in variables)
    result = make(scratch, "mobilenetv1", *[f"{k}={v}" for k, v in defaults.items()])
    assert result.returncode != 0
    errors = error_lines(result)
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_dataset_without_labels(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    (data / "val_label.txt").unlink()
    result = make(scratch, "mobilenetv1", f"DATA={data}", "WEIGHTS=random")
    errors = error_lines(result)
    assert result.returncode != 0 and len(errors) == 1 and "val_label.txt: missing" in errors[0]


def test_undecodable_image_stops_preprocessing(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data", broken="ILSVRC2012_val_00000099.JPEG")
    result = make(scratch, "mobilenetv1", f"DATA={data}", "WEIGHTS=random")
    errors = error_lines(result)
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "ILSVRC2012_val_00000099.JPEG" in errors[0] and "cannot decode" in errors[0]
    [run_folder] = [d for d in (scratch / "build/data").iterdir() if d.is_dir() and
                    json.loads((d / "dataset.json").read_text())["path"] == str(data)]
    [prep] = [p for p in (scratch / "build/prep").glob(run_folder.name + "-f32-*") if p.is_dir()]
    assert not (prep / ".done").exists()
    # Images before the broken one were written whole; none is half-written.
    for written in prep.glob("*.bin"):
        assert written.stat().st_size == 602112


def test_weights_with_wrong_keys(scratch, tmp_path):
    import torch

    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"module.conv.weight": torch.zeros(1)}}, bad)
    data = synthetic_dataset(tmp_path / "data")
    result = make(scratch, "mobilenetv1", f"DATA={data}", f"WEIGHTS={bad}")
    errors = error_lines(result)
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "model.0.0.weight" in errors[0] and "conv.weight" in errors[0]


def test_published_weights_offline_say_how_to_pass_a_path(scratch, tmp_path):
    data = synthetic_dataset(tmp_path / "data")
    env_proxy = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = subprocess.run(["make", "--no-print-directory", "mobilenetv1", f"DATA={data}"],
                            cwd=scratch, env=dict(os.environ, MAKEFLAGS="", **env_proxy),
                            capture_output=True, text=True, timeout=300)
    errors = error_lines(result)
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "cannot download" in errors[0] and "WEIGHTS=/path/to/it" in errors[0]
    assert not list((scratch / "build/mobilenetv1/weights").glob("*.tar*"))
