"""The accuracy gate and run-over-run comparison, through the command lines the pipeline uses:
`python -m npuzoo.report write|publish|compare` and `make compare`."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from npuzoo import readme

from helpers import REPO, accuracy_json, built_report, one_error_line, run_report

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
    assert "| 1.00 | 2.00 |" in row
    # random weights: said once, above the table
    assert ("random weights (so top-1 and top-5 mean nothing)" in text) == (weights == "random")


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
    assert "throughput  300.0     285.0  -5.0%" in out \
        and out.splitlines()[-1].startswith("0 flagged")
    # the same run judged against a 3% threshold, by flag and by environment
    assert "drop > 3%" in run_report("compare", "--reports", reports_dir,
                                     "--throughput-drop", "3%").stdout
    env = {"NPUZOO_THROUGHPUT_DROP": "0.03"}
    assert "drop > 3%" in run_report("compare", "--reports", reports_dir, env=env).stdout
    bad = run_report("compare", "--reports", reports_dir, "--throughput-drop", "lots")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --throughput-drop=lots")


def test_threshold_at_publish_time_comes_from_the_environment(tmp_path):
    _, dest, _printed = publish_twice(tmp_path, 300.0, 240.0, env={"NPUZOO_THROUGHPUT_DROP": "25%"})
    comparison = json.loads(dest.read_text())["comparison"]
    assert comparison["threshold"] == 0.25 and comparison["changes"] == []


def test_an_accuracy_change_is_flagged(tmp_path):
    reports_dir, _dest, printed = publish_twice(tmp_path, 300.0, 300.5, top1=1.5)
    assert "ACCURACY: top1 1.00 -> 1.50 (+0.50 pts)" in printed
    out = run_report("compare", "--reports", reports_dir).stdout
    assert "top1        1.00      1.50   +0.50 pts  accuracy" in out


def test_compare_with_nothing_recorded(tmp_path):
    proc = run_report("compare", "--reports", tmp_path)
    assert proc.returncode == 0 and "no run-over-run changes recorded" in proc.stdout


# -- the run is whole: images selected, preprocessed, inferred and scored (issue 10) ---------

def run_pieces(tmp_path, selected=4, scored=None, results=None, prep=None, rows=None):
    """The pieces `report write` reads, plus a results folder of `results` `<stem>_0.txt`
    files (logits from `rows`, one per file) and a prep folder of `prep` .bin files."""
    run = tmp_path / "pieces"
    (run / "perf").mkdir(parents=True)
    scored = selected if scored is None else scored
    (run / "dataset.json").write_text(json.dumps({
        "name": "imagenet-val-1300", "images": selected, "labelled_images": 1300,
        "subset": True, "full_validation_set": False, "labels_sha256": "sha"}))
    (run / "weights.json").write_text(json.dumps({"source": "random"}))
    (run / "accuracy.json").write_text(accuracy_json(1.0, 2.0, scored))
    (run / "perf_summary.json").write_text(json.dumps({"throughput": 100.0,
                                                       "npu_compute_time_list": [1.0, 2.0]}))
    args = ["write", "--model", "mobilenetv1", "--soc", "cpu", "--bs", 1,
            "--dataset", run / "dataset.json", "--weights", run / "weights.json",
            "--accuracy", run / "accuracy.json", "--perf-dir", run, "--perf-dirname", "perf",
            "--loop", 2, "--warmup", 1, "--out", run / "report.json"]
    if results is not None:
        (run / "results").mkdir()
        for i in range(results):
            row = (rows or {}).get(i, [0.1, 0.5, 0.2, i / 10])
            (run / "results" / f"img{i}_0.txt").write_text(
                " ".join(f"{v:f}" for v in row) + " \n")
        args += ["--results-dir", run / "results"]
    if prep is not None:
        (run / "prep").mkdir()
        for i in range(prep):
            (run / "prep" / f"img{i}.bin").write_bytes(b"\0" * 12)
        (run / "prep" / ".img9.bin.123.tmp").write_bytes(b"\0")  # a killed run's leftover
        args += ["--prep-dir", run / "prep"]
    return run, args


def test_write_refuses_a_bmp_lost_between_dataset_and_accuracy(tmp_path):
    """The issue's case: 17 images selected, 16 scored (the .bmp was not preprocessed)."""
    run, args = run_pieces(tmp_path, selected=17, scored=16)
    line = one_error_line(run_report(*args))
    assert "image counts differ" in line
    assert "17 selected images (dataset.json images" in line
    assert "16 images scored (accuracy.json" in line
    assert not (run / "report.json").exists()


@pytest.mark.parametrize("results, prep", [(3, 4), (4, 3), (5, 4)])
def test_write_checks_the_result_and_preprocessed_counts(tmp_path, results, prep):
    run, args = run_pieces(tmp_path, selected=4, results=results, prep=prep)
    line = one_error_line(run_report(*args))
    assert "4 selected images" in line and f"{prep} preprocessed .bin files in" in line
    assert f"{results} result files (<stem>_0.txt) in {run / 'results'}" in line
    assert "4 images scored" in line
    assert not (run / "report.json").exists()


def test_write_with_whole_counts_records_a_clean_output_check(tmp_path):
    run, args = run_pieces(tmp_path, selected=4, results=4, prep=4)
    proc = run_report(*args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    check = json.loads((run / "report.json").read_text())["output_check"]
    assert check == {"result_files": 4, "nan_images": 0, "constant_images": 0,
                     "first_nan": None, "first_constant": None, "preprocessed_files": 4}


def test_old_callers_without_the_new_options_get_the_old_report(tmp_path):
    run, args = run_pieces(tmp_path, selected=4)
    proc = run_report(*args)
    assert proc.returncode == 0, proc.stderr
    assert "output_check" not in json.loads((run / "report.json").read_text())


def test_nan_and_constant_logits_are_recorded_with_one_warning(tmp_path):
    nan, inf, flat = float("nan"), float("inf"), [0.25] * 4
    rows = {1: [0.1, nan, 0.3, 0.2], 2: [nan] * 4, 3: [inf, 0.0, 0.0, 0.0], 4: flat, 5: flat}
    run, args = run_pieces(tmp_path, selected=7, results=7, prep=7, rows=rows)
    proc = run_report(*args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {run / 'results'}: "), proc.stderr
    assert "3 of 7 images have NaN or infinite logits (first: img1_0.txt)" in lines[0]
    assert "2 of 7 images have all logits equal (first: img4_0.txt)" in lines[0]
    check = json.loads((run / "report.json").read_text())["output_check"]
    assert (check["nan_images"], check["constant_images"]) == (3, 2)
    assert (check["first_nan"], check["first_constant"]) == ("img1_0.txt", "img4_0.txt")


def test_unreadable_results_are_one_line(tmp_path):
    run, args = run_pieces(tmp_path, selected=2, results=2)
    (run / "results" / "img1_0.txt").write_text("0.1 oops\n")
    line = one_error_line(run_report(*args))
    assert str(run / "results" / "img1_0.txt") in line
    missing = [str(a) if str(a) != str(run / "results") else str(tmp_path / "none")
               for a in args]
    assert "no such folder" in one_error_line(run_report(*missing))


# -- unwritable output folders: one line, nothing half-written ---------------------------------

def test_write_and_publish_into_an_unwritable_place_are_one_line(tmp_path):
    built = built_report(tmp_path, top1=1.0, top5=2.0, images=300, weights="random")
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the reports folder should be\n")
    dest = blocker / "mobilenetv1" / "cpu_bs4.json"
    line = one_error_line(run_report("publish", built, dest))
    assert line.startswith(f"error: {blocker}/") and ": cannot write (" in line
    _run, args = run_pieces(tmp_path / "w")
    args[args.index("--out") + 1] = blocker / "report.json"
    line = one_error_line(run_report(*args))
    assert line.startswith(f"error: {blocker / 'report.json'}: cannot write (")
    assert blocker.read_text().startswith("a file where")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_publish_into_a_read_only_folder_is_one_line(tmp_path):
    built = built_report(tmp_path, top1=1.0, top5=2.0, images=300, weights="random")
    folder = tmp_path / "reports" / "mobilenetv1"
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        line = one_error_line(run_report("publish", built, folder / "cpu_bs4.json"))
        assert "Permission denied" in line and "not writable" in line
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


# -- readers accept anything ---------------------------------------------------------------------

def malformed_reports(reports_dir, good):
    """A good report, then the same with a string batch_size, with keys missing, and files that
    are not reports at all."""
    folder = reports_dir / "mobilenetv1"
    data = json.loads(good.read_text())
    (folder / "cpu_bs8.json").write_text(json.dumps(dict(data, batch_size="8")))
    (folder / "cpu_bs16.json").write_text(json.dumps(
        {k: v for k, v in data.items() if k not in ("soc", "batch_size", "gate", "perf")}))
    (folder / "cpu_bs32.json").write_text(json.dumps(dict(
        data, batch_size=32, perf={"throughput": "fast", "latency_ms": [1, 2]},
        accuracy="high", comparison={"previous": 7, "changes": [3, {"what": "top1"}]})))
    (folder / "cpu_bs64.json").write_text("{ not json")
    (folder / "cpu_bs128.json").write_text("[1, 2, 3]")
    (folder / "oddname.json").write_text(json.dumps(dict(data, batch_size="eight")))
    return folder


def test_compare_and_readme_read_malformed_reports_with_one_warning_each(tmp_path):
    reports_dir, dest, _ = publish_twice(tmp_path, 300.0, 240.0)
    folder = malformed_reports(reports_dir, dest)
    proc = run_report("compare", "--reports", reports_dir)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    warnings = proc.stderr.strip().splitlines()
    assert all(line.startswith("warning: ") for line in warnings), proc.stderr
    for name in ("cpu_bs8.json", "cpu_bs16.json", "cpu_bs32.json", "cpu_bs64.json",
                 "cpu_bs128.json", "oddname.json"):
        assert len([ln for ln in warnings if ln.startswith(f"warning: {folder / name}: ")]) == 1, \
            (name, warnings)
    assert len(warnings) == 6
    assert any('batch_size "8" read as 8' in ln for ln in warnings)
    assert any(str(folder / "oddname.json") in ln and ln.endswith("skipped") for ln in warnings)
    rows = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("mobilenetv1")]
    # bs 16 lost its perf (no throughput row); bs 32 lost its comparison (not an object)
    assert [r[2] for r in rows] == ["4", "8"], proc.stdout
    # the README renderer, in another process, says the same once per file and renders
    code = ("import sys; from npuzoo import readme; "
            f"text = readme.render_model('mobilenetv1', reports_dir={str(reports_dir)!r}); "
            "readme.render_top(reports_dir=" + repr(str(reports_dir)) + "); "
            "print('\\n'.join(l for l in text.splitlines() if l.startswith('| ')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(proc.stderr.strip().splitlines()) == sorted(warnings)
    for bs in ("4", "8", "16", "32"):
        assert [ln for ln in proc.stdout.splitlines() if ln.startswith(f"| {bs} |")
                or ln.startswith(f"| **{bs}** ★ |")], bs


def test_publish_replaces_a_malformed_report_with_a_warning(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    dest.parent.mkdir(parents=True)
    dest.write_text("{ truncated")
    built = built_report(tmp_path, top1=1.0, top5=2.0, images=300, weights="random")
    proc = run_report("publish", built, dest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"warning: {dest}: not a readable JSON report (Expecting property name enclosed in "
        "double quotes: line 1 column 3 (char 2)); skipped",
        f"warning: {dest}: replaced without a run-over-run comparison"]
    assert json.loads(dest.read_text())["comparison"] is None
