"""The accuracy gate and run-over-run comparison, through the command lines the pipeline uses:
`python -m npuzoo.report write|publish|compare` and `make compare`."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from npuzoo import readme, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def accuracy_json(top1, top5, images):
    values = [("Number of images", str(images)), ("Number of classes", "1000")]
    values += [(f"Top{k} accuracy", f"{top1 if k == 1 else top5}%") for k in range(1, 6)]
    return json.dumps({"title": "Overall statistical evaluation",
                       "value": [{"key": k, "value": v} for k, v in values]})


def run_report(*args, env=None):
    return subprocess.run([sys.executable, "-m", "npuzoo.report", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))


def built_report(tmp_path, top1, top5, images=50000, weights="published", throughput=300.0,
                 tag="run", model="mobilenetv1", bs=4):
    """A report built by `npuzoo.report write` from the pieces the pipeline makes."""
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
    out = run / "report.json"
    proc = run_report("write", "--model", model, "--soc", "cpu", "--bs", bs,
                      "--dataset", run / "dataset.json", "--weights", run / "weights.json",
                      "--accuracy", run / "accuracy.json", "--perf-dir", run,
                      "--perf-dirname", "perf", "--loop", 5, "--warmup", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


# -- the accuracy gate ---------------------------------------------------------------------

def test_full_set_below_reference_fails_publish_after_writing(tmp_path):
    built = built_report(tmp_path, top1=67.0, top5=88.9)  # reference 69.52/89.05, tolerance 1
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    proc = run_report("publish", built, dest)
    assert proc.returncode == 1
    assert dest.is_file(), "the report is written before the gate fails the run"
    published = json.loads(dest.read_text())
    assert published["gate"]["verdict"] == "fail"
    assert "top1 67.00 < 68.52" in published["gate"]["reason"]
    assert proc.stderr.strip().splitlines() == [
        f"error: accuracy gate failed for {dest}: {published['gate']['reason']}"]
    assert "gate fail" in proc.stdout


def test_full_set_top5_below_reference_fails(tmp_path):
    built = built_report(tmp_path, top1=69.6, top5=87.5)
    proc = run_report("publish", built, tmp_path / "cpu_bs4.json")
    assert proc.returncode == 1 and "top5 87.50 < 88.05" in proc.stderr


def test_full_set_within_tolerance_passes(tmp_path):
    built = built_report(tmp_path, top1=68.9, top5=88.4)
    proc = run_report("publish", built, tmp_path / "cpu_bs4.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "cpu_bs4.json").read_text())["gate"]["verdict"] == "pass"


@pytest.mark.parametrize("images, weights, reason", [
    (300, "published", "300 images, not the full 50,000-image validation set"),
    (50000, "random", "random weights, not the published ones"),
    (50000, "custom", "custom weights, not the published ones"),
])
def test_subset_or_other_weights_are_not_applicable_and_say_so(tmp_path, images, weights, reason):
    built = built_report(tmp_path, top1=1.0, top5=2.0, images=images, weights=weights)
    reports_dir = tmp_path / "reports"
    dest = reports_dir / "mobilenetv1" / "cpu_bs4.json"
    proc = run_report("publish", built, dest)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(dest.read_text())["gate"] == {"verdict": "not applicable", "reason": reason}
    text = readme.render_model("mobilenetv1", reports_dir=str(reports_dir))
    [row] = [line for line in text.splitlines() if line.startswith("| **4** ★ |")]
    assert f"not applicable: {reason}" in row
    if weights == "random":
        assert "1.00 (random weights: not meaningful)" in row


def test_no_gate_flag_keeps_the_exit_status_zero(tmp_path):
    built = built_report(tmp_path, top1=50.0, top5=60.0)
    proc = run_report("publish", built, tmp_path / "cpu_bs4.json", "--no-gate")
    assert proc.returncode == 0


# -- run over run --------------------------------------------------------------------------

def publish_twice(tmp_path, first, second, env=None, **second_kwargs):
    reports_dir = tmp_path / "reports"
    dest = reports_dir / "mobilenetv1" / "cpu_bs4.json"
    kwargs = dict(top1=1.0, top5=2.0, images=300, weights="random")
    proc = run_report("publish", built_report(tmp_path, throughput=first, tag="a", **kwargs), dest)
    assert proc.returncode == 0, proc.stderr
    kwargs.update(second_kwargs)
    proc = run_report("publish", built_report(tmp_path, throughput=second, tag="b", **kwargs),
                      dest, env=env)
    assert proc.returncode == 0, proc.stderr
    return reports_dir, dest, proc.stdout


def test_a_throughput_drop_is_printed_recorded_and_compared(tmp_path):
    reports_dir, dest, printed = publish_twice(tmp_path, 300.0, 240.0)
    assert "throughput 300.0 -> 240.0 images/s (-20.0%)" in printed
    assert "DROP: throughput 300.0 -> 240.0 (-20.0%)" in printed
    comparison = json.loads(dest.read_text())["comparison"]
    assert [c["what"] for c in comparison["changes"]] == ["throughput"]
    assert comparison["previous"]["throughput"] == 300.0 and comparison["threshold"] == 0.1

    proc = run_report("compare", "--reports", reports_dir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    [row] = [line for line in lines if line.startswith("mobilenetv1")]
    assert row.split()[:8] == ["mobilenetv1", "cpu", "4", "throughput", "300.0", "240.0",
                               "-20.0%", "drop"]
    assert lines[-1].startswith("1 flagged change(s)")
    assert run_report("compare", "--reports", reports_dir, "--strict").returncode == 1


def test_make_compare_shows_the_change(tmp_path):
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    reports_dir, _, _ = publish_twice(tmp_path, 300.0, 200.0)
    env = dict(os.environ, NPUZOO_REPORTS_DIR=str(reports_dir), MAKEFLAGS="",
               PY=sys.executable)
    # -o: never (re)build the virtual environment from a test
    proc = subprocess.run(["make", "--no-print-directory", "-o", "venv", "-o", ".venv/.installed",
                           "compare", f"PY={sys.executable}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mobilenetv1  cpu   4   throughput  300.0     200.0  -33.3%  drop > 10%" in proc.stdout


def test_small_changes_are_shown_but_not_flagged_and_the_threshold_is_configurable(tmp_path):
    reports_dir, dest, printed = publish_twice(tmp_path, 300.0, 285.0)
    assert json.loads(dest.read_text())["comparison"]["changes"] == []
    assert "DROP" not in printed
    out = run_report("compare", "--reports", reports_dir).stdout
    assert "throughput  300.0     285.0  -5.0%" in out and out.splitlines()[-1].startswith("0 flagged")
    # the same run judged against a 3% threshold, by flag and by environment
    assert "drop > 3%" in run_report("compare", "--reports", reports_dir,
                                     "--throughput-drop", "3%").stdout
    env = {"NPUZOO_THROUGHPUT_DROP": "0.03"}
    assert "drop > 3%" in run_report("compare", "--reports", reports_dir, env=env).stdout
    bad = run_report("compare", "--reports", reports_dir, "--throughput-drop", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --throughput-drop=lots")


def test_threshold_at_publish_time_comes_from_the_environment(tmp_path):
    _, dest, printed = publish_twice(tmp_path, 300.0, 240.0, env={"NPUZOO_THROUGHPUT_DROP": "25%"})
    comparison = json.loads(dest.read_text())["comparison"]
    assert comparison["threshold"] == 0.25 and comparison["changes"] == []


def test_an_accuracy_change_is_flagged(tmp_path):
    reports_dir, dest, printed = publish_twice(tmp_path, 300.0, 300.5, top1=1.5)
    assert "ACCURACY: top1 1.0 -> 1.5 (+0.50 pts)" in printed
    out = run_report("compare", "--reports", reports_dir).stdout
    assert "top1        1.00      1.50   +0.50 pts  accuracy" in out


def test_compare_with_nothing_recorded(tmp_path):
    proc = run_report("compare", "--reports", tmp_path)
    assert proc.returncode == 0 and "no run-over-run changes recorded" in proc.stdout


def test_compare_reads_comparisons_recorded_without_a_snapshot(tmp_path):
    old = {"model": "m", "soc": "cpu", "batch_size": 1, "timestamp": "2025-01-02T00:00:00Z",
           "comparison": {"against": "2025-01-01T00:00:00Z", "changes": [
               {"what": "throughput", "old": 10.0, "new": 5.0, "change": "-50.0%",
                "flag": "drop"}]}}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "cpu_bs1.json").write_text(json.dumps(old))
    text, flagged = report.compare_table(str(tmp_path))
    assert flagged == 1 and "-50.0%" in text
