"""`publish`: record a built report, place it as history.py says, restore a missing current one."""

import os
import re

from npuzoo import history
from npuzoo.files import atomic_write
from npuzoo.report.build import dumps, load
from npuzoo.report.compare import compare, rounded, throughput, throughput_drop
from npuzoo.report.read import Json, read_report, warn

Past = list[tuple[str, Json]]


def same_run(a: Json, b: Json) -> bool:
    """Two reports describe the same run when they differ only in when they were written."""
    return {**a, "timestamp": None, "comparison": None} == \
        {**b, "timestamp": None, "comparison": None}


def label(report: Json) -> str:
    return f"{report.get('model')} {report.get('soc')} bs{report.get('batch_size')}"


def _what(report: Json) -> str:
    weights = (report.get("weights") or {}).get("source") or "unrecorded"
    return f"{history.scope(report)[1]}, {weights} weights, {history.owner_words(report)}"


def _current(path: str) -> Json | None:
    """The report at `path`, or None (absent, or unreadable: one warning line)."""
    if not os.path.isfile(path):
        return None
    if (found := read_report(path)) is None:
        warn(f"warning: {path}: replaced without a run-over-run comparison")
    return found


def _best_of_owner(report: Json, past: Past) -> tuple[str | None, Json | None]:
    """(path, run) of the most complete, then latest, recorded run of `report`'s owner."""
    own = [(path, r) for path, r in past if history.same_owner(r, report)]
    return max(own, default=(None, None), key=lambda item: (
        history.completeness(item[1]), str(item[1].get("timestamp") or "")))


def _owner_file(dest: str, report: Json) -> str:
    """The file beside `dest` that holds a run of `report`'s owner already, else a new name."""
    folder, stem = os.path.split(os.path.splitext(dest)[0])
    paths = [os.path.join(folder, name) for name in sorted(
        os.listdir(folder or ".") if os.path.isdir(folder or ".") else ())
        if re.fullmatch(re.escape(stem) + r"\.[0-9a-f]+\.json", name)]
    return next((path for path in paths if (there := read_report(path)) is not None
                 and history.same_owner(there, report)), history.own_path(dest, report))


def _promote(report: Json, dest: str, committed: Json | None) -> None:
    """FORCE=1: `report` becomes `dest`; the run it displaces stays its own owner's report."""
    if committed is not None and not history.same_owner(committed, report):
        displaced = _owner_file(dest, committed)
        there = _current(displaced)
        if there is None or history.completeness(committed) >= history.completeness(there):
            atomic_write(displaced, dumps(committed))
        print(f"report: {dest}: the run it held ({history.owner_words(committed)}) stays "
              f"that machine and configuration's current report, {displaced}")
    atomic_write(dest, dumps(report))
    mine = _owner_file(dest, report)
    if os.path.exists(mine):
        os.unlink(mine)  # the owner's current report is `dest` now


def _republish(report: Json, dest: str, own: str, committed: Json | None, current: Json | None,
               past: Past, force: bool) -> tuple[Json, list[Json]]:
    """A run recorded before (a rerun of make, or a publish killed between its two writes)."""
    recorded = next(((p, r) for p, r in past if same_run(r, report)), (None, None))
    if recorded[1] is not None:
        report["comparison"] = recorded[1].get("comparison")
    if force and not (committed is not None and same_run(committed, report)):
        _promote(report, dest, committed)
        print(f"report: {dest}: the recorded run of {report.get('timestamp')} ({_what(report)}) "
              "is the current report now (FORCE=1)")
    elif current is None:
        path, best = _best_of_owner(report, past)
        atomic_write(own, dumps(best or report))
        print(f"report: {own}: was missing; restored from "
              f"{os.path.relpath(path) if path else 'this run'}")
    elif same_run(current, report):
        print(f"report: {label(report)}: this run is already recorded and is the current "
              f"report ({own})" + (f"; FORCE=1 makes it {dest}" if own != dest else ""))
    else:
        print(f"report: {label(report)}: this run is already recorded"
              f"{f' ({os.path.relpath(recorded[0])})' if recorded[0] else ''}; {own} holds a "
              f"more complete run ({_what(current)}); FORCE=1 makes this run {dest}")
    return report, (report.get("comparison") or {}).get("changes") or []


def _judge(report: Json, previous: Json | None, drop: float | None) -> list[Json]:
    """Set report["comparison"] against `previous`, say what changed, return what is flagged."""
    if previous is None:
        report["comparison"] = None
        print(f"report: {label(report)}: no earlier run with the same machine, images, weights "
              f"and configuration ({history.owner_words(report)}); nothing to compare with")
        return []
    report["comparison"] = compare(previous, report, throughput_drop() if drop is None else drop)
    old_tp, new_tp = throughput(previous), throughput(report)
    if old_tp and new_tp is not None:
        print(f"report: {label(report)}: throughput {old_tp:.1f} -> {new_tp:.1f} images/s "
              f"({(new_tp / old_tp - 1) * 100:+.1f}%) since the like-for-like run of "
              f"{previous.get('timestamp')}")
    if report["comparison"].get("contended"):
        print(f"report: {label(report)}: throughput not judged: other processes took the CPU "
              "during this run's perf loop or the earlier run's (STRICT=1 fails such a run)")
    flagged: list[Json] = report["comparison"]["changes"]
    for change in flagged:
        digits = 1 if change["what"] == "throughput" else 2
        print(f"report: {label(report)}: {change['flag'].upper()}: {change['what']} "
              f"{rounded(change['old'], digits)} -> {rounded(change['new'], digits)} "
              f"({change['change']})")
    return flagged


def _place(report: Json, dest: str, own: str, committed: Json | None, current: Json | None,
           force: bool, kept: str, restored_from: str | None) -> None:
    acc = report.get("accuracy") or {}
    figures = (f"top1 {rounded(acc.get('top1'), 2)} top5 {rounded(acc.get('top5'), 2)} "
               f"throughput {throughput(report) or 0:.1f} images/s")
    numbers = f"{figures}; gate {report['gate']['verdict']} ({report['gate']['reason']})"
    if force:
        _promote(report, dest, committed)
        print(f"report: {dest}: {numbers} (FORCE=1)")
    elif current is None or history.completeness(report) >= history.completeness(current):
        atomic_write(own, dumps(report))
        if own == dest:
            print(f"report: {dest}: {numbers}")
        else:
            assert committed is not None  # (own != dest: dest holds another owner's run)
            print(f"report: {dest} kept (the run of {history.owner_words(committed)}); this run "
                  f"({history.owner_words(report)}; {figures}) is the current report of its "
                  f"machine and configuration, {own}; FORCE=1 makes it {dest}")
    else:
        if not os.path.isfile(own):
            atomic_write(own, dumps(current))
            print(f"report: {own}: was missing; restored from "
                  f"{os.path.relpath(str(restored_from))}")
        print(f"report: {own} kept: it holds a more complete run ({_what(current)}); this run "
              f"({_what(report)}; {figures}) is recorded in {kept}; FORCE=1 makes it {dest}")


def publish(built_path: str, dest: str, drop: float | None = None, force: bool = False
            ) -> tuple[Json, list[Json]]:
    """Record a built report and place it; returns (report, flagged changes)."""
    report = load(built_path)
    committed = _current(dest)
    own = dest if committed is None or history.same_owner(committed, report) \
        else _owner_file(dest, report)
    current = committed if own == dest else _current(own)
    past = history.entries(dest, read_report)
    runs = [r for _, r in past] + [c for c in (committed, current) if c is not None]
    if any(same_run(r, report) for r in runs):
        return _republish(report, dest, own, committed, current, past, force)
    flagged = _judge(report, history.latest_like(report, runs), drop)
    kept = os.path.relpath(history.record(report, dest))
    restored_from = None
    if current is None:  # missing (or never written): the owner's best recorded run
        restored_from, current = _best_of_owner(report, past)
    _place(report, dest, own, committed, current, force, kept, restored_from)
    return report, flagged
