"""Every run kept; a trial never replaces a curated run; like compared with like (issue 13)."""

import json
import os
from pathlib import Path

from npuzoo import history
from npuzoo.report import compare, read

from helpers import built_report, run_report


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
    assert "no earlier run with the same machine, images, weights and configuration" in proc.stdout
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
    text, flagged = compare.compare_table(str(tmp_path / "reports"))
    assert flagged == 1 and "300.0" in text and "150.0" in text


def test_keys_of_older_reports_are_derived():
    old = {"soc": "cpu", "device": "AMD EPYC (2 cores)", "batch_size": 4,
           "dataset": {"name": "x", "images": 300, "labels_sha256": "abc"},
           "weights": {"source": "random"}, "backend": {"name": "onnxruntime"}}
    assert history.machine(old) == history.fingerprint("cpu", "AMD EPYC (2 cores)")
    assert history.like_key(old)[-1] == 4 and history.variant(old) == ""
    assert history.variant(dict(old, variant="aipp")) == "aipp"  # as its plan recorded it


def test_a_drop_measured_under_contention_is_no_regression():
    base = {"perf": {"throughput": 300.0}, "dataset": {}, "accuracy": None}
    busy = {"perf": {"throughput": 100.0, "load": {"contended": True}}, "dataset": {},
            "accuracy": None}
    result = compare.compare(base, busy)
    assert result["changes"] == [] and result["contended"] is True
    quiet = {"perf": {"throughput": 100.0, "load": {"contended": False}}, "dataset": {},
             "accuracy": None}
    assert compare.compare(base, quiet)["changes"][0]["flag"] == "drop"


# -- each machine and configuration its own current report (issue 21 items 1-4, 19 item 12) --

def as_run_of(built, committed, **perf):
    """`built` rewritten as a run of the machine, configuration and images of the report
    `committed` (perf fields given override theirs): the committed run, measured again."""
    data, twin = json.loads(built.read_text()), json.loads(committed.read_text())
    data["device"], data["machine"] = twin["device"], twin["machine"]
    data["backend"], data["dataset"] = twin["backend"], twin["dataset"]
    data["perf"].update({k: twin["perf"].get(k) for k in ("loop", "warmup", "streams")}, **perf)
    data["perf"] = {k: v for k, v in data["perf"].items() if v is not None}
    built.write_text(json.dumps(data))
    return built


def committed_copy(tmp_path, repo):
    """reports/mobilenetv1 as committed, copied, with {relative path: bytes} of every file;
    without the other owners' current reports (`cpu_bs1.<tag>.json`): the committed ones may
    include this very machine's, which these tests would take for the run's own."""
    import shutil

    folder = tmp_path / "reports" / "mobilenetv1"
    shutil.copytree(repo / "reports" / "mobilenetv1", folder,
                    ignore=shutil.ignore_patterns("*_bs*.*.json"))
    return folder, {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def unchanged(folder, before):
    return {p: folder.joinpath(p).read_bytes() for p in before} == before


def test_another_machines_runs_leave_the_committed_reports_as_committed(tmp_path, repo):
    folder, before = committed_copy(tmp_path, repo)
    dest = folder / "cpu_bs1.json"
    kwargs = dict(top1=0.0, top5=0.3, images=300, weights="random", bs=1)
    runs = [other_machine(built_report(tmp_path, throughput=33.6, tag="epyc", **kwargs),
                          "Some Other CPU (96 cores)"),
            # the committed machine, another configuration (one stream, 20 calls)
            as_run_of(built_report(tmp_path, throughput=16.6, tag="one", **kwargs), dest,
                      streams=None, loop_seconds=0.0)]
    owns = []
    for built in runs:
        proc = run_report("publish", built, dest)
        assert proc.returncode == 0, proc.stderr
        assert unchanged(folder, before), "a committed report changed"
        # one line says the committed report was kept, where this run went, how to promote it
        [line] = [text for text in proc.stdout.splitlines() if "kept" in text]
        [own] = set(folder.glob("cpu_bs1.*.json")) - set(owns)
        assert f"is the current report of its machine and configuration, {own}" in line
        assert f"FORCE=1 makes it {dest}" in line
        assert json.loads(own.read_text())["perf"]["throughput"] in (33.6, 16.6)
        owns.append(own)
    # Readers see three rows: the committed one and each owner's.
    found = {os.path.basename(p) for p, _ in
             read.model_reports(str(tmp_path / "reports"), "mobilenetv1")}
    assert {"cpu_bs1.json", owns[0].name, owns[1].name} <= found
    # Following the hint: FORCE=1 makes the other machine's run the committed report, and the
    # run it displaces stays the committed machine's current report, byte for byte as read.
    proc = run_report("publish", runs[0], dest, "--force")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(dest.read_text())["perf"]["throughput"] == 33.6 and not owns[0].exists()
    displaced = [p for p in folder.glob("cpu_bs1.*.json") if p not in owns]
    assert [json.loads(p.read_text()) for p in displaced] == \
        [json.loads(before[Path("cpu_bs1.json")])]
    # The committed machine measures again (its perf time now recorded): the run joins its
    # owner's file, no third one.
    files = set(folder.glob("cpu_bs1.*.json"))
    again = as_run_of(built_report(tmp_path, throughput=250.0, tag="again", **kwargs),
                      displaced[0], loop_seconds=3.0)
    assert run_report("publish", again, dest).returncode == 0
    assert set(folder.glob("cpu_bs1.*.json")) == files
    assert json.loads(displaced[0].read_text())["perf"]["throughput"] == 250.0


def test_the_same_machine_and_configuration_replaces_its_report_when_as_complete(tmp_path, repo):
    folder, _ = committed_copy(tmp_path, repo)
    dest = folder / "cpu_bs1.json"
    built = as_run_of(built_report(tmp_path, throughput=250.0, top1=0.0, top5=0.3, images=300,
                                   weights="random", bs=1), dest, loop_seconds=3.0)
    proc = run_report("publish", built, dest)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(dest.read_text())["perf"]["throughput"] == 250.0
    assert "throughput 255.7 -> 250.0" in proc.stdout  # compared with the committed run
    assert not list(folder.glob("cpu_bs1.*.json"))


def test_force_after_kept_promotes_the_recorded_run(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    assert run_report("publish", built_report(tmp_path, 1.0, 2.0, images=300, weights="random",
                                              tag="full"), dest).returncode == 0
    trial = built_report(tmp_path, 1.0, 2.0, images=32, weights="random", tag="trial")
    proc = run_report("publish", trial, dest)
    assert f"FORCE=1 makes it {dest}" in proc.stdout
    again = run_report("publish", trial, dest)  # a rerun without FORCE repeats the hint
    assert "already recorded" in again.stdout and f"FORCE=1 makes this run {dest}" in again.stdout
    forced = run_report("publish", trial, dest, "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(dest.read_text())["dataset"]["images"] == 32
    assert "is the current report now (FORCE=1)" in forced.stdout


def test_a_current_report_lost_between_the_two_writes_is_restored(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    built = built_report(tmp_path, 1.0, 2.0, images=300, weights="random", tag="full")
    assert run_report("publish", built, dest).returncode == 0
    written = json.loads(dest.read_text())
    dest.unlink()  # kill -9 after the history's write, before the current report's
    proc = run_report("publish", built, dest)
    assert proc.returncode == 0 and "was missing; restored from" in proc.stdout
    assert json.loads(dest.read_text()) == written
    # A new, less complete run on the next try restores the better one too.
    dest.unlink()
    trial = built_report(tmp_path, 1.0, 2.0, images=16, weights="random", tag="trial")
    proc = run_report("publish", trial, dest)
    assert "was missing; restored from" in proc.stdout
    assert json.loads(dest.read_text())["dataset"]["images"] == 300


def contended(built):
    data = json.loads(built.read_text())
    data["perf"]["load"] = {"contended": True}
    built.write_text(json.dumps(data))
    return built


def test_strict_never_passes_a_contended_run_silently(tmp_path):
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    kwargs = dict(top1=1.0, top5=2.0, images=300, weights="random")
    assert run_report("publish", built_report(tmp_path, throughput=300.0, tag="a", **kwargs),
                      dest, "--strict").returncode == 0
    busy = contended(built_report(tmp_path, throughput=290.0, tag="b", **kwargs))
    proc = run_report("publish", busy, dest, "--strict", "--throughput-drop", "0.001")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: ") and "could not judge" in line
    # without STRICT=1 the run is recorded as before, and one line says it was not judged
    again = contended(built_report(tmp_path, throughput=280.0, tag="c", **kwargs))
    proc = run_report("publish", again, dest)
    assert proc.returncode == 0 and "throughput not judged" in proc.stdout
