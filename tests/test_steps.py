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
    found = [{"step": "perf", "bs": 4, "seconds": 2.0}, {"step": "export", "bs": None, "seconds": 5.0},
             {"step": "perf", "bs": 1, "seconds": 1.0}, {"step": "data", "bs": None, "seconds": 0.5},
             {"step": "perf", "bs": 4, "seconds": 1.0}]
    assert list(steps.totals(found)) == ["data", "export", "perf"]
    assert steps.totals(found, 4) == {"data": 0.5, "export": 5.0, "perf": 3.0}
    text = steps.table(found)
    assert text.splitlines()[0] == "steps of this run (wall time, s):"
    assert text.splitlines()[-1].split() == ["total", "9.5"]
    assert "up to date" in steps.table([])


def test_cli_table(tmp_path, capsys):
    log = tmp_path / "steps.jsonl"
    log.write_text(json.dumps({"run": "x", "step": "export", "bs": None, "seconds": 1.5}) + "\n"
                   + "not json\n")
    steps.main(["table", str(log), "x"])
    assert "export" in capsys.readouterr().out
