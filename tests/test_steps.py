"""Per-step timings (npuzoo/steps.py): logged per run, summed in pipeline order, tabled."""

import json
import sys

from npuzoo import steps


def test_run_logs_the_wall_time_and_passes_the_exit_status_on(tmp_path, monkeypatch):
    log = tmp_path / "steps.jsonl"
    monkeypatch.setenv(steps.RUN_ENV, "r1")
    assert steps.run_step(str(log), "export", [sys.executable, "-c", "pass"]) == 0
    assert steps.run_step(str(log), "inference", [sys.executable, "-c", "raise SystemExit(3)"],
                          bs=4) == 3
    monkeypatch.setenv(steps.RUN_ENV, "r2")
    steps.record(str(log), "perf", 9.0, bs=4)
    found = steps.entries(str(log), "r1")
    assert [(e["step"], e["bs"], e["status"]) for e in found] == [("export", None, 0),
                                                                   ("inference", 4, 3)]
    assert all(e["seconds"] >= 0 for e in found)


def test_totals_keep_the_pipeline_order_and_each_batch_size_its_own(tmp_path):
    found = [{"step": "perf", "bs": 4, "seconds": 2.0},
             {"step": "export", "bs": None, "seconds": 5.0},
             {"step": "perf", "bs": 1, "seconds": 1.0},
             {"step": "data", "bs": None, "seconds": 0.5},
             {"step": "perf", "bs": 4, "seconds": 1.0}]
    assert list(steps.totals(found)) == ["data", "export", "perf"]
    assert steps.totals(found, 4) == {"data": 0.5, "export": 5.0, "perf": 3.0}
    text = steps.table(found)
    assert text.splitlines()[0] == "steps of this run (wall time, s):"
    assert text.splitlines()[-1].split() == ["total", "9.5"]
    assert "up to date" in steps.table([])


def test_cli_runs_the_step_and_a_line_that_is_not_json_is_skipped(tmp_path, monkeypatch):
    import pytest

    log = tmp_path / "steps.jsonl"
    log.write_text("not json\n")
    monkeypatch.setenv(steps.RUN_ENV, "x")
    with pytest.raises(SystemExit) as stopped:
        steps.main(["run", str(log), "export", "--bs", "4", "--", sys.executable, "-c",
                    "raise SystemExit(4)"])
    assert stopped.value.code == 4
    [entry] = steps.entries(str(log), "x")
    assert (entry["step"], entry["bs"], entry["status"]) == ("export", 4, 4)


def test_the_table_names_the_steps_an_earlier_run_did_and_this_one_reused(tmp_path, monkeypatch):
    log = str(tmp_path / "steps.jsonl")
    monkeypatch.setenv(steps.RUN_ENV, "first")
    for step in ("data", "export", "quantize", "compile", "inference"):
        steps.record(log, step, 1.0)
    steps.record(log, "perf", 1.0, status=2)                # failed: nothing to reuse
    monkeypatch.setenv(steps.RUN_ENV, "second")
    steps.record(log, "inference", 1.0, bs=4)
    found, earlier = steps.entries(log, "second"), steps.entries(log, "second", other=True)
    assert [e["run"] for e in earlier] == ["first"] * 6
    assert steps.reused(found, earlier) == ["data", "export", "quantize", "compile"]
    text = steps.table(found, earlier)
    assert text.splitlines()[-1] == "  reused from an earlier run: data, export, quantize, compile"
    assert steps.table([], found + earlier).endswith("; reused from an earlier run: data, export, "
                                                     "quantize, compile, inference")
    assert "reused" not in steps.table(found)


def test_a_step_killed_by_a_signal_says_so_in_one_line(tmp_path, capsys):
    """A segfaulting engine leaves no message of its own: the step names the signal and what
    to try, and exits as a shell would (128 + the signal)."""
    log = tmp_path / "steps.jsonl"
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    assert steps.run_step(str(log), "inference", crash) == 128 + 11
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the inference step died of SIGSEGV: the engine crashed")
    assert "\n" not in err and "BACKEND" in err
    assert json.loads(log.read_text())["status"] == 139
    realtime = [sys.executable, "-c", "import os; os.kill(os.getpid(), 40)"]
    assert steps.run_step(str(log), "perf", realtime) == 128 + 40
    assert capsys.readouterr().err.strip() == "error: the perf step died of signal 40"
