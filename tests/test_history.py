"""Every run kept; a trial never replaces a curated run; like compared with like (issue 13)."""

import json

from npuzoo import history, report
from tests.test_report_gate import built_report, run_report


def other_machine(path, description="AMD EPYC 7B13 (64 cores)"):
    data = json.loads(path.read_text())
    data["device"] = description
    data["machine"] = history.fingerprint(data["soc"], description)
    path.write_text(json.dumps(data))
    return path


def test_a_trial_run_never_replaces_a_full_published_run(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    full = built_report(tmp_path, top1=69.5, top5=89.0, tag="full")
    assert run_report("publish", full, dest).returncode == 0
    curated = dest.read_text()
    trial = built_report(tmp_path, top1=0.1, top5=0.5, images=16, weights="random", tag="trial")
    proc = run_report("publish", trial, dest)
    assert proc.returncode == 0, proc.stderr
    assert dest.read_text() == curated
    assert "kept: it holds a more complete run" in proc.stdout and "FORCE=1" in proc.stdout
    recorded = sorted((dest.parent / "history" / "cpu_bs4").glob("*.json"))
    assert len(recorded) == 2
    assert {json.loads(p.read_text())["dataset"]["images"] for p in recorded} == {50000, 16}
    # FORCE=1 (--force) makes the trial current; the curated run is still in the history.
    forced = built_report(tmp_path, top1=0.2, top5=0.6, images=16, weights="random", tag="forced")
    assert run_report("publish", forced, dest, "--force").returncode == 0
    assert json.loads(dest.read_text())["dataset"]["images"] == 16
    assert len(list((dest.parent / "history" / "cpu_bs4").glob("*.json"))) == 3


def test_a_more_complete_run_replaces_a_trial(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    trial = built_report(tmp_path, top1=0.1, top5=0.5, images=16, weights="random", tag="t")
    assert run_report("publish", trial, dest).returncode == 0
    more = built_report(tmp_path, top1=0.1, top5=0.5, images=300, weights="random", tag="m")
    assert run_report("publish", more, dest).returncode == 0
    assert json.loads(dest.read_text())["dataset"]["images"] == 300


def test_comparison_only_against_the_same_machine_images_and_weights(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    kwargs = dict(top1=1.0, top5=2.0, images=300, weights="random")
    fast = other_machine(built_report(tmp_path, throughput=900.0, tag="epyc", **kwargs))
    assert run_report("publish", fast, dest).returncode == 0
    here = built_report(tmp_path, throughput=100.0, tag="here", **kwargs)
    proc = run_report("publish", here, dest)
    assert proc.returncode == 0 and "DROP" not in proc.stdout
    assert "no earlier run on this machine with the same images and weights" in proc.stdout
    other_images = built_report(tmp_path, throughput=50.0, tag="fewer",
                                **dict(kwargs, images=200))
    proc = run_report("publish", other_images, dest)
    assert "DROP" not in proc.stdout
    # The same machine, images and weights again: now there is something to compare with.
    again = built_report(tmp_path, throughput=60.0, tag="again", **kwargs)
    proc = run_report("publish", again, dest, "--strict")
    assert "DROP: throughput 100.0 -> 60.0 (-40.0%)" in proc.stdout
    assert proc.returncode == 1 and "STRICT=1" in proc.stderr
    # make compare shows the like-for-like drop, and --strict fails on it.
    table = run_report("compare", "--reports", tmp_path / "reports")
    assert "100.0" in table.stdout and "60.0" in table.stdout and "900.0" not in table.stdout
    assert run_report("compare", "--reports", tmp_path / "reports", "--strict").returncode == 1


def test_the_drop_stays_visible_after_another_run_elsewhere(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    kwargs = dict(top1=1.0, top5=2.0, images=300, weights="random")
    for tag, fps in (("a", 300.0), ("b", 150.0)):
        assert run_report("publish", built_report(tmp_path, throughput=fps, tag=tag, **kwargs),
                          dest).returncode == 0
    elsewhere = other_machine(built_report(tmp_path, throughput=10.0, tag="c", **kwargs))
    assert run_report("publish", elsewhere, dest).returncode == 0
    text, flagged = report.compare_table(str(tmp_path / "reports"))
    assert flagged == 1 and "300.0" in text and "150.0" in text


def test_keys_of_older_reports_are_derived():
    old = {"soc": "cpu", "device": "AMD EPYC (2 cores)", "batch_size": 4,
           "dataset": {"name": "x", "images": 300, "labels_sha256": "abc"},
           "weights": {"source": "random"}, "backend": {"name": "onnxruntime"}}
    assert history.machine(old) == history.fingerprint("cpu", "AMD EPYC (2 cores)")
    assert history.like_key(old)[-1] == 4 and history.variant(old) == ""
    assert history.variant(dict(old, backend={"aipp": True})) == "aipp"


def test_a_drop_measured_under_contention_is_no_regression():
    base = {"perf": {"throughput": 300.0}, "dataset": {}, "accuracy": None}
    busy = {"perf": {"throughput": 100.0, "load": {"contended": True}}, "dataset": {},
            "accuracy": None}
    result = report.compare(base, busy)
    assert result["changes"] == [] and result["contended"] is True
    quiet = {"perf": {"throughput": 100.0, "load": {"contended": False}}, "dataset": {},
             "accuracy": None}
    assert report.compare(base, quiet)["changes"][0]["flag"] == "drop"
