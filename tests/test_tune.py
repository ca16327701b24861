"""Issue 23: the engine and streams tuned per machine and graph (npuzoo/tune.py), a perf figure
judged in windows, slowdowns from outside the machine, and `compare` within the spread."""

import itertools
import json
import os
import time

import numpy as np
import pytest

from npuzoo import engines, history, run, tune
from npuzoo.bench import load
from npuzoo.errors import UserError
from npuzoo.report import compare, pieces

from helpers import W, built_report, classifier, images, make_report, run_api, run_report

LAYOUTS = [{"engine": "openvino", "streams": 1, "threads_per_stream": 2, "hint": None},
           {"engine": "onnxruntime", "streams": 2, "threads_per_stream": 1, "hint": None},
           {"engine": "openvino", "streams": 2, "threads_per_stream": 1, "hint": "THROUGHPUT"}]


def timed(rates):
    """A measure(layout) that returns LAYOUTS[i]'s rates in turn, one per call (a number: every
    call; an exception: raised), and records the calls."""
    calls = []

    def measure(layout):
        calls.append(layout)
        index = LAYOUTS.index(layout)
        rate = rates[index]
        if isinstance(rate, list):
            rate = rate[sum(1 for c in calls if c == layout) - 1]
        if isinstance(rate, Exception):
            raise rate
        return rate
    return measure, calls


def test_the_choice_is_cached_and_reused(tmp_path, capsys):
    measure, calls = timed([100.0, 150.0, 140.0])
    first = tune.choose(str(tmp_path), "k1", {"x": 1}, LAYOUTS, measure, " m.onnx")
    assert first["cache"] == "new" and first["chosen"] == LAYOUTS[1]
    assert len(calls) == 3 * tune.ROUNDS
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("tuning m.onnx: timing 3 engine/stream")
    assert f"{tune.ROUNDS} interleaved rounds" in line and "TUNE=0 skips it" in line \
        and "ONNX Runtime 2 stream(s) x 1 thread(s) (150 images/s, median)" in line
    stored = json.loads((tmp_path / "k1.json").read_text())
    assert [c["images_per_s"] for c in stored["candidates"]] == [100.0, 150.0, 140.0]
    again = tune.choose(str(tmp_path), "k1", {"x": 1}, LAYOUTS, measure)
    assert again["cache"] == "reused" and again["chosen"] == LAYOUTS[1]
    assert len(calls) == 3 * tune.ROUNDS                        # nothing timed again
    assert capsys.readouterr().out == ""                       # nothing said
    other = tune.choose(str(tmp_path), "k2", {"x": 2}, LAYOUTS, measure)
    assert other["cache"] == "new" and len(calls) == 6 * tune.ROUNDS   # another key


def test_a_layout_that_wins_one_round_only_does_not_replace_the_fallback(tmp_path):
    """One lucky sample (+30% once, then 20% behind: out) or one round won of three: noise, the
    fallback stays, though the best median is not the fallback's."""
    assert tune.ROUNDS == 3 and tune.MAJORITY == 2
    measure, _ = timed([[100.0, 100.0, 100.0], [130.0, 80.0, 99.0], [103.0, 99.0, 99.5]])
    record = tune.choose(str(tmp_path), "noisy", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[0]
    assert record["candidates"][2]["samples"] == [103.0, 99.0, 99.5]   # lost once: timed on
    assert record["candidates"][2]["ratios_to_fallback"] == [1.03, 0.99, 0.995]
    assert record["candidates"][1]["samples"] == [130.0, 80.0]   # 20% behind in round 2: out
    # faster in every round but by less than MARGIN in the median: a tie, the fallback stays
    measure, _ = timed([100.0, [100.5, 100.8, 100.5], 90.0])
    assert tune.choose(str(tmp_path), "tie", {}, LAYOUTS, measure)["chosen"] == LAYOUTS[0]
    # two rounds of three won, by 4-6%: a real difference on a noisy machine, it replaces it
    measure, _ = timed([100.0, 90.0, [104.0, 106.0, 99.0]])
    assert tune.choose(str(tmp_path), "most", {}, LAYOUTS, measure)["chosen"] == LAYOUTS[2]
    # 10% behind in one round (a burst of load), ahead by 5-6% in the others: it stays in and wins
    measure, _ = timed([100.0, [90.0, 105.0, 106.0], 95.0])
    assert tune.choose(str(tmp_path), "burst", {}, LAYOUTS, measure)["chosen"] == LAYOUTS[1]
    # two rounds lost of three: it cannot win most, and is not timed a third time
    measure, _ = timed([100.0, [99.0, 98.0, 120.0], 90.0])
    record = tune.choose(str(tmp_path), "lost", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[0] and record["candidates"][1]["samples"] == [99.0, 98.0]


def test_a_consistent_winner_replaces_the_fallback_and_the_record_says_what_was_measured(
        tmp_path):
    measure, _ = timed([[100.0, 90.0, 110.0], [105.0, 94.5, 115.5], [110.0, 99.0, 121.0]])
    record = tune.choose(str(tmp_path), "win", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[2]                      # the higher median ratio (1.10)
    stored = json.loads((tmp_path / "win.json").read_text())
    assert stored["chosen"] == LAYOUTS[2]
    assert stored["measured"] == {"rounds": tune.ROUNDS, "seconds_per_sample": tune.SECONDS,
                                  "calls_per_stream": tune.CALLS, "margin": tune.MARGIN,
                                  "majority": tune.MAJORITY, "behind": tune.BEHIND}
    assert [c["samples"] for c in stored["candidates"]] == [
        [100.0, 90.0, 110.0], [105.0, 94.5, 115.5], [110.0, 99.0, 121.0]]
    assert stored["candidates"][0]["images_per_s"] == 100.0    # the median
    assert "ratios_to_fallback" not in stored["candidates"][0]
    assert stored["candidates"][1]["ratios_to_fallback"] == [1.05] * 3
    assert stored["candidates"][2]["ratios_to_fallback"] == [1.1] * 3


def test_the_rounds_are_interleaved_and_bounded_and_a_clearly_slower_layout_ends(tmp_path):
    measure, calls = timed([100.0, 50.0, 120.0])
    record = tune.choose(str(tmp_path), "bound", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[2]
    assert len(calls) <= tune.ROUNDS * len(LAYOUTS)
    assert calls[:3] == LAYOUTS                                 # round 1: every layout
    assert calls[3:5] == [LAYOUTS[2], LAYOUTS[0]]               # round 2, its order rotated
    assert calls[5:] == [LAYOUTS[0], LAYOUTS[2]] and len(calls) == 7
    assert record["candidates"][1]["samples"] == [50.0]         # far behind in round 1: out
    # the fallback is never dropped, however slow: it is what the others are judged against
    measure, calls = timed([10.0, 100.0, 90.0])
    record = tune.choose(str(tmp_path), "slowfallback", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[1] and calls.count(LAYOUTS[0]) == tune.ROUNDS


def test_the_fallback_keeps_its_place_on_a_near_tie_and_a_failing_layout_is_skipped(tmp_path):
    measure, _ = timed([100.0, 100.5, UserError("OpenVINO cannot read it")])
    record = tune.choose(str(tmp_path), "tie", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[0]                      # +0.5% < MARGIN: noise
    assert record["candidates"][2]["error"] == "OpenVINO cannot read it"
    # a layout that fails in a later round is not chosen, however fast it was before
    measure, _ = timed([100.0, [150.0, UserError("crashed"), 150.0], 90.0])
    record = tune.choose(str(tmp_path), "later", {}, LAYOUTS, measure)
    assert record["chosen"] == LAYOUTS[0] and record["candidates"][1]["error"] == "crashed"
    measure, _ = timed([UserError("no"), 90.0, 80.0])          # the fallback failed: best wins
    assert tune.choose(str(tmp_path), "nofallback", {}, LAYOUTS, measure)["chosen"] == LAYOUTS[1]
    measure, _ = timed([UserError("a"), UserError("b"), UserError("c")])
    with pytest.raises(UserError, match=r"no layout ran.*TUNE=0"):
        tune.choose(str(tmp_path), "none", {}, LAYOUTS, measure)
    assert not (tmp_path / "none.json").exists()


def test_an_unreadable_cache_entry_is_timed_again(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    measure, calls = timed([100.0, 90.0, 80.0])
    assert tune.choose(str(tmp_path), "bad", {}, LAYOUTS, measure)["cache"] == "new"
    assert calls and json.loads((tmp_path / "bad.json").read_text())["key"] == "bad"


def test_the_key_changes_with_the_graph_and_the_machine(tmp_path, monkeypatch):
    model = classifier(tmp_path / "a.onnx", 2)
    key, fields = tune.cache_key(model, "fp32", 2, 2)
    assert tune.cache_key(model, "fp32", 2, 2)[0] == key
    assert fields["machine"] == history.fingerprint("cpu", tune.cpu_description(),
                                                    tune.cpu_isa())["id"]
    assert tune.cache_key(model, "int8", 2, 2)[0] != key
    assert tune.cache_key(model, "fp32", 2, 1)[0] != key
    with open(model, "ab") as handle:                           # other bytes: another graph
        handle.write(b"\0")
    assert tune.cache_key(model, "fp32", 2, 2)[0] != key
    changed = tune.cache_key(model, "fp32", 2, 2)[0]
    monkeypatch.setattr(tune, "cpu_description", lambda: "Other CPU (2 cores)")
    assert tune.cache_key(model, "fp32", 2, 2)[0] != changed


def test_layouts_list_the_fallback_first_and_the_throughput_hint():
    found = tune.layouts("onnxruntime", 2)
    assert found[0] == {"engine": "onnxruntime", "streams": 1, "threads_per_stream": 2,
                        "hint": None}
    assert {"engine": "onnxruntime", "streams": 2, "threads_per_stream": 1, "hint": None} in found
    if engines.backend_version("openvino"):   # OpenVINO's streams: its THROUGHPUT hint only
        assert found[1:] == [{"engine": "onnxruntime", "streams": 2, "threads_per_stream": 1,
                              "hint": None},
                             {"engine": "openvino", "streams": 1, "threads_per_stream": 2,
                              "hint": None},
                             {"engine": "openvino", "streams": 2, "threads_per_stream": 1,
                              "hint": "THROUGHPUT"}]
    assert tune.layouts("openvino", 1)[0]["engine"] == "openvino"


def test_the_runner_tunes_once_and_reuses_the_choice(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tune, "SECONDS", 0.01)
    model = classifier(tmp_path / "m.onnx", 2)
    cache = tmp_path / "tuning"
    argv = ["-m", model, "--loop", "3", "--tune", cache, "--backend", "onnxruntime"]
    first, out = run_api(argv, capsys, threads=2)
    assert "tuning m.onnx: timing" in out
    tuning = first["tuning"]
    assert tuning["cache"] == "new" and sorted(p.name for p in cache.glob("*.json")) == sorted(
        [f"{tuning['key']}.json", f"reference-{tune.machine_id()}.json"])
    chosen = tuning["chosen"]
    assert (first["backend"], first["streams"], first["threads_per_stream"]) == (
        chosen["engine"], chosen["streams"], chosen["threads_per_stream"])
    assert len(tuning["candidates"]) == len(tune.layouts("onnxruntime", 2))
    second, out = run_api(argv, capsys, threads=2)
    assert "tuning m.onnx" not in out and "reused" in out
    assert second["tuning"]["cache"] == "reused" and second["tuning"]["chosen"] == chosen
    with pytest.raises(UserError, match="--tune or --streams"):
        run_api(argv + ["--streams", "2"], capsys)
    with pytest.raises(UserError, match=r"model file not found: .*absent.onnx"):
        run_api(["-m", tmp_path / "absent.onnx", "--tune", cache], capsys)


def test_tune_0_backend_or_streams_fix_the_layout():
    def plan(**values):
        return run.plan_of("mobilenetv1",
                           run.Settings({**run.DEFAULTS, "DATA": "/d", **values}), "cpu")

    assert plan().tuned \
        and "--tune build/tuning" in plan().make_variables()["BENCH_FLAGS"]
    assert plan().streams == 0 \
        and plan().make_variables()["PERF_FLAGS"] == "--loop_seconds 3"
    for values in ({"TUNE": "0"}, {"BACKEND": "openvino"}, {"STREAMS": "1"}):
        assert not plan(**values).tuned
        assert "--tune" not in plan(**values).make_variables()["BENCH_FLAGS"]
    assert plan(TUNE="0").streams == len(os.sched_getaffinity(0))
    assert not run.plan_of("mobilenetv1", run.Settings({**run.DEFAULTS, "DATA": "/d"}),
                           "Ascend310P3").tuned
    with pytest.raises(UserError, match="TUNE=2: unknown value; use TUNE=0"):
        run.Settings({**run.DEFAULTS, "DATA": "/d", "TUNE": "2"})


# -- the report's identity: a tuned run is one configuration whatever it picked -----------------

def tuned_report(engine, streams):
    return {"soc": "cpu", "device": "CPU X (2 cores)", "batch_size": 4, "dataset": {},
            "weights": {"source": "random"}, "backend": {"name": engine, "precision": "fp32"},
            "perf": {"streams": streams, "loop": 20, "warmup": 2,
                     "tuning": {"chosen": {"engine": engine, "streams": streams}}}}


def test_a_tuned_run_keeps_its_owner_and_row_whatever_engine_it_picked():
    ort, ov = tuned_report("onnxruntime", 1), tuned_report("openvino", 2)
    assert history.same_owner(ort, ov)
    assert history.own_path("r/cpu_bs4.json", ort) == history.own_path("r/cpu_bs4.json", ov)
    assert history.setup(ort) == history.setup(ov) == "tuned"
    assert history.like_key(ort) == history.like_key(ov)
    fixed = dict(ov, perf={"streams": 2, "loop": 20, "warmup": 2})
    assert not history.same_owner(fixed, ov) and history.setup(fixed) == "2 streams"
    assert "engine and streams tuned" in history.owner_words(ov)


# -- a steadier figure: windows, a reference kernel, compare within the spread ------------------

def test_windows_show_a_slowdown_within_the_loop():
    steady = load.window_throughputs([0.1 * k for k in range(1, 11)], 0.0, 4)
    assert steady == pytest.approx([40.0] * 5)
    assert load.spread(steady)["throughput_spread"] == pytest.approx(0.0)
    # the last four calls took twice as long: the last windows are slower
    ends = [0.1 * k for k in range(1, 7)] + [0.6 + 0.2 * k for k in range(1, 5)]
    found = load.spread(load.window_throughputs(ends, 0.0, 4))
    assert found["throughput_windows"] == pytest.approx([40.0, 40.0, 40.0, 20.0, 20.0])
    assert found["throughput_median"] == pytest.approx(40.0)
    assert found["throughput_spread"] == pytest.approx(0.5)
    assert load.window_throughputs([0.5], 0.0, 1) == [] and \
        load.spread([])["throughput_spread"] is None


def _monitor(tmp_path, figures, best_path=None):
    """A LoadMonitor on a quiet one-CPU /proc/stat whose reference product gives `figures`."""
    stat = tmp_path / "stat"
    stat.write_text("cpu 100 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0 0 0\n")
    figures, clock = iter(figures), iter([0.0, 5.0])
    monitor = load.LoadMonitor(str(stat), clock=lambda: next(clock),
                               reference=lambda: next(figures), best_path=best_path)
    monitor.cpus, monitor.tick = [0], 100
    monitor._own = lambda: 0.0
    return monitor


@pytest.mark.parametrize("before, after", [(100.0, 95.0), (100.0, 60.0), (60.0, 100.0)])
def test_the_reference_product_without_a_machine_best_only_recorded(tmp_path, before, after):
    result = _monitor(tmp_path, [before, after]).start().stop()
    assert result["reference_gflops"] == [before, after]
    assert result["reference_change"] == pytest.approx(after / before - 1)
    assert result["reference_best_gflops"] is None and result["reference_below_best"] is None
    assert result["other_cpu_s"] == 0 and result["contended"] is False
    assert "reference matrix product" in result["contended_rule"]


def test_a_machine_slower_than_its_best_is_contended(tmp_path):
    """A steady slowdown from outside (before = after) shows against the machine's best figure,
    which each run raises when it beats it; an unreadable record starts afresh."""
    best = tmp_path / "tuning" / "reference-m.json"
    first = _monitor(tmp_path, [100.0, 98.0], str(best)).start().stop()
    assert first["reference_best_gflops"] is None and first["contended"] is False
    assert json.loads(best.read_text())["best_gflops"] == 100.0
    slow = _monitor(tmp_path, [97.0, 90.0], str(best)).start().stop()   # worse side: 10% below
    assert slow["reference_best_gflops"] == 100.0 and slow["contended"] is True
    assert slow["reference_below_best"] == pytest.approx(0.10)
    dip = _monitor(tmp_path, [60.0, 99.0], str(best)).start().stop()   # before the loop only
    assert dip["contended"] is True and dip["reference_below_best"] == pytest.approx(0.40)
    near = _monitor(tmp_path, [97.0, 96.0], str(best)).start().stop()
    assert near["contended"] is False and near["reference_below_best"] == pytest.approx(0.04)
    faster = _monitor(tmp_path, [110.0, 108.0], str(best)).start().stop()
    assert faster["reference_below_best"] == 0.0 and faster["contended"] is False
    assert json.loads(best.read_text())["best_gflops"] == 110.0
    for bad in ("{not json", '{"best_gflops": Infinity}', '{"best_gflops": -3}'):
        best.write_text(bad)
        again = _monitor(tmp_path, [50.0, 50.0], str(best)).start().stop()
        assert again["reference_best_gflops"] is None and again["contended"] is False
        assert json.loads(best.read_text())["best_gflops"] == 50.0


def test_the_reference_product_is_a_positive_figure():
    assert load.reference_gflops(repeats=2) > 0


def test_the_reference_product_leaves_no_thread_busy():
    """OpenBLAS's own threads spin about 0.1 s of CPU after a product: CPU the timed loop right
    after the reference would lose. The product holds the BLAS to one thread per CPU of ours."""
    from threadpoolctl import threadpool_info

    threads = [pool["num_threads"] for pool in threadpool_info()]
    load.reference_gflops(repeats=4)
    time.sleep(0.05)   # our threads are joined; anything still burning CPU is the BLAS's
    before = sum(os.times()[:2])
    time.sleep(0.3)
    assert sum(os.times()[:2]) - before < 0.03
    assert [pool["num_threads"] for pool in threadpool_info()] == threads   # held, then given back


def test_a_machine_best_of_another_product_starts_afresh(tmp_path):
    best = tmp_path / "reference-m.json"
    best.write_text(json.dumps({"best_gflops": 500.0, "reference_n": load.REFERENCE_N}))
    found = _monitor(tmp_path, [100.0, 100.0], str(best)).start().stop()
    assert found["reference_best_gflops"] is None and found["contended"] is False
    assert json.loads(best.read_text()) == {"best_gflops": 100.0, "reference_n": load.REFERENCE_N,
                                            "method": load.REFERENCE_METHOD}
    again = _monitor(tmp_path, [90.0, 99.0], str(best)).start().stop()
    assert again["reference_best_gflops"] == 100.0 and again["contended"] is True


def test_the_report_records_the_spread_and_the_tuning():
    summary = {"throughput": 100.0, "npu_compute_time_list": [10.0] * 5, "streams": 1,
               "throughput_windows": [90.0, 100.0, 110.0], "throughput_median": 100.0,
               "throughput_spread": 0.2,
               "tuning": {"cache": "new", "chosen": {"engine": "openvino"}},
               "contended": False, "reference_gflops": [100.0, 110.0], "reference_change": 0.1}
    perf = pieces.perf_from_summary(summary, 20, 2)
    assert perf["spread"]["spread"] == 0.2 and perf["spread"]["median"] == 100.0
    assert perf["tuning"]["chosen"]["engine"] == "openvino"
    assert perf["load"]["reference_change"] == 0.1


def with_spread(report_path, spread):
    data = json.loads(report_path.read_text())
    data["perf"]["spread"] = {"windows": [1, 1], "median": 1, "spread": spread}
    report_path.write_text(json.dumps(data))
    return report_path


def test_compare_never_flags_a_drop_within_the_measured_spread(tmp_path):
    base = {"perf": {"throughput": 300.0}, "dataset": {}, "accuracy": None}
    noisy = {"perf": {"throughput": 240.0, "spread": {"spread": 0.25}}, "dataset": {},
             "accuracy": None}
    result = compare.compare(base, noisy)
    assert result["changes"] == [] and result["spread"] == 0.25
    steady = {"perf": {"throughput": 240.0, "spread": {"spread": 0.05}}, "dataset": {},
              "accuracy": None}
    assert compare.compare(base, steady)["changes"][0]["flag"] == "drop"
    # published runs, and `make compare` reading them back
    dest = tmp_path / "reports" / "mobilenetv1" / "cpu_bs4.json"
    first = with_spread(built_report(tmp_path, 69.5, 89.0, throughput=300.0, tag="a"), 0.04)
    assert run_report("publish", first, dest).returncode == 0
    second = with_spread(built_report(tmp_path, 69.5, 89.0, throughput=240.0, tag="b"), 0.3)
    assert run_report("publish", second, dest).returncode == 0
    out = run_report("compare", "--reports", tmp_path / "reports").stdout
    assert "-20.0%  within the runs' spread (30%)" in out \
        and out.splitlines()[-1].startswith("0 flagged")
    third = with_spread(built_report(tmp_path, 69.5, 89.0, throughput=120.0, tag="c"), 0.3)
    assert run_report("publish", third, dest).returncode == 0
    out = run_report("compare", "--reports", tmp_path / "reports").stdout
    assert "drop > 10%" in out and out.splitlines()[-1].startswith("1 flagged")


# -- int8: the run's logits against the fp32 export's on the same images -------------------------

def test_int8_agreement_compares_the_run_logits_with_the_fp32_model(tmp_path):
    from npuzoo.report import agreement

    model = classifier(tmp_path / "fp32.onnx", "batch")
    prep, results = tmp_path / "prep", tmp_path / "results"
    prep.mkdir()
    results.mkdir()
    arrays = images(11)
    logits = arrays.reshape(11, 48) @ W
    for k, (array, row) in enumerate(zip(arrays, logits, strict=False)):
        array.tofile(prep / f"img{k:02d}.bin")
        if k == 3:                                   # another top class, still in the top 5
            order = np.argsort(-row)
            row = row.copy()
            row[order[1]] = row[order[0]] + 1.0
        if k == 5:                                   # the fp32 top class last
            row = -row
        np.savetxt(results / f"img{k:02d}_0.txt", row[None], fmt="%f")
    names = sorted(os.listdir(results))
    found = agreement.agreement(str(model), str(prep), str(results), names)
    assert found["images"] == 11
    assert found["top1"] == pytest.approx(100 * 9 / 11, abs=0.01)
    assert found["top5"] == pytest.approx(100 * 10 / 11, abs=0.01)
    assert found["max_abs_logit_error"] == pytest.approx(np.abs(2 * logits[5]).max(), rel=1e-4)
    assert 0 < found["mean_abs_logit_error"] < found["max_abs_logit_error"]
    assert agreement.agreement(str(model), str(prep), str(results), names, limit=3)["images"] == 3
    (prep / "img00.bin").write_bytes(b"\0" * 8)
    with pytest.raises(UserError, match=r"img00.bin: not a float32"):
        agreement.agreement(str(model), str(prep), str(results), names)


def test_an_int8_report_gives_its_speed_up_over_the_fp32_report_of_the_same_run(tmp_path):
    """`write` of an int8 run reads reports/ for the fp32 run of its machine, images, weights,
    setup and batch size; with none, the field says so and what to run, and `write` succeeds."""
    reports = tmp_path / "reports"
    fp32 = built_report(tmp_path, 0.3, 1.0, images=300, weights="random", throughput=100.0,
                        tag="fp32")
    dest = reports / "mobilenetv1" / "cpu_bs4.json"
    assert run_report("publish", fp32, dest).returncode == 0
    kwargs = dict(images=300, weights="random", throughput=250.0, precision="int8",
                  reports=reports)
    int8 = json.loads(built_report(tmp_path, 0.3, 1.0, tag="int8", **kwargs).read_text())
    assert int8["fp32_speedup"] == {"ratio": 2.5, "fp32": {
        "path": str(dest), "throughput": 100.0, "engine": "onnxruntime",
        "timestamp": json.loads(dest.read_text())["timestamp"]}}

    alone = json.loads(built_report(tmp_path, 0.3, 1.0, tag="bs1", bs=1, **kwargs).read_text())
    assert alone["fp32_speedup"] == {
        "ratio": None, "fp32": None,
        "reason": f"no fp32 report in {reports / 'mobilenetv1'}/ of this machine, images, "
                  "weights, setup and batch size",
        "run": "make mobilenetv1 DATA=<this run's DATA> BS=1 N=300 WEIGHTS=random STREAMS=1 "
               "LOOP=5"}
    assert "fp32_speedup" not in json.loads(fp32.read_text())  # an fp32 run has none


def test_the_speed_up_never_compares_another_machine_batch_size_weights_or_setup(tmp_path):
    from npuzoo.report.agreement import fp32_speedup

    folder = tmp_path / "mobilenetv1"
    folder.mkdir()
    int8 = dict(make_report("mobilenetv1", "cpu", 4, 300.0), variant="int8",
                backend={"name": "openvino", "version": "1", "precision": "int8"})
    others = {"machine": dict(device="AMD EPYC (2 cores)",
                              machine=history.fingerprint("cpu", "AMD EPYC (2 cores)")),
              "bs": dict(batch_size=16), "weights": dict(weights={"source": "published",
                                                                 "sha256": "ab" * 32}),
              "images": dict(dataset=dict(int8["dataset"], images=100)),
              "setup": dict(perf=dict(int8["perf"], streams=2)),
              "aipp": dict(variant="aipp", backend={"name": "onnxruntime", "aipp": True}),
              "int8": dict(variant="int8-onnxruntime", backend=dict(int8["backend"],
                                                                   name="onnxruntime"))}
    for name, change in others.items():
        fp32 = {**make_report("mobilenetv1", "cpu", 4, 100.0), **change}
        (folder / f"cpu_bs4.{name}.json").write_text(json.dumps(fp32))
    found = fp32_speedup(int8, str(tmp_path))
    assert found["fp32"] is None and found["run"].startswith(
        "make mobilenetv1 DATA=<this run's DATA> BS=4 N=300 WEIGHTS=random STREAMS=1")

    (folder / "cpu_bs4.json").write_text(json.dumps(make_report("mobilenetv1", "cpu", 4, 120.0)))
    found = fp32_speedup(int8, str(tmp_path))  # on ONNX Runtime: the only fp32 run there is
    assert (found["ratio"], found["fp32"]["engine"]) == (2.5, "onnxruntime")
    assert found["fp32"]["path"] == str(folder / "cpu_bs4.json")


def test_an_openvino_error_says_what_failed_not_where():
    err = RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nException from "
                       "src/inference/src/dev/plugin.cpp:54:\nCheck '!implementations.empty()' "
                       "failed at src/x.hpp:117:\nNo suitable implementations.\n\n")
    assert engines._openvino_reason(err) == "No suitable implementations."
    assert engines._openvino_reason(RuntimeError("Exception from a.cpp:1:")) \
        == "Exception from a.cpp:1:"


def test_a_layout_runs_in_a_process_of_its_own_and_a_crash_costs_only_that_layout():
    counting = tune.Isolated(itertools.count, 7)               # kept between samples
    assert [counting.next(), counting.next(), counting.next()] == [7, 8, 9]
    counting.close()
    assert not counting.process.is_alive()
    failing = tune.Isolated(engines.check_backend, "x")
    with pytest.raises(UserError, match="backend 'x': expected one of"):
        failing.next()
    failing.close()
    crashing = tune.Isolated(os.abort)
    with pytest.raises(UserError, match=r"the engine's process stopped \(signal 6\)"):
        crashing.next()
    crashing.close()
