"""Where a run's time goes: every pipeline step timed, the table printed at the end of
`make <model>` and recorded in each report.

    python3 -m npuzoo.steps run LOG STEP -- COMMAND...   run COMMAND, append its wall time
    python3 -m npuzoo.steps table LOG RUN                print RUN's steps as a table

mk/pipeline.mk prefixes each step's command with `run` (the `$(call STEP,<name>)` macro); the
log is build/<model>/steps.jsonl, one JSON line per command: the run id (NPUZOO_RUN_ID, set by
npuzoo/run.py for one `make <model>`), the step, the batch size, seconds and exit status.
Appends take a lock, so concurrent batch sizes or models never interleave a line. A step that
Make finds up to date is not run, so it is not in the table: the table shows what this run did,
and a last line names the steps an earlier run of the model did that this one reused (their
output, identified by content, was there already).
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time

from npuzoo.errors import cli

RUN_ENV = "NPUZOO_RUN_ID"
# The order of the table: the pipeline's.
ORDER = ("data", "weights", "source", "preprocess", "export", "quantize", "compile", "inference",
         "perf", "postprocess", "report")


def append(log, entry):
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry) + "\n")


def record(log, step, seconds, status=0, bs=None):
    append(log, {"run": os.environ.get(RUN_ENV, ""), "step": step, "bs": bs,
                 "seconds": round(seconds, 3), "status": status,
                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def run_step(log, step, command, bs=None):
    start = time.perf_counter()
    try:
        status = subprocess.call(command)
    except KeyboardInterrupt:
        status = 130
    record(log, step, time.perf_counter() - start, status, bs)
    return status


def entries(log, run, other=False):
    """The log's entries of `run` (`other`: of every other run instead)."""
    if not run or not os.path.isfile(log):
        return []
    found = []
    with open(log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (entry.get("run") == run) != other:
                found.append(entry)
    return found


def totals(found, bs=None):
    """{step: seconds} in pipeline order: every shared step, and `bs`'s own (all when None)."""
    sums = {}
    for entry in found:
        if bs is not None and entry.get("bs") not in (None, bs):
            continue
        sums[entry["step"]] = sums.get(entry["step"], 0.0) + float(entry.get("seconds") or 0)
    ordered = [s for s in ORDER if s in sums] + sorted(s for s in sums if s not in ORDER)
    return {step: round(sums[step], 2) for step in ordered}


def reused(found, earlier):
    """The steps that earlier runs did (successfully) and this run's `found` did not."""
    done = {e.get("step") for e in found}
    names = {e.get("step") for e in earlier if e.get("status") == 0} - done - {None}
    return [s for s in ORDER if s in names] + sorted(s for s in names if s not in ORDER)


def table(found, earlier=()):
    again = reused(found, earlier)
    kept = f"reused from an earlier run: {', '.join(again)}" if again else ""
    if not found:
        return "steps: nothing to do (every step was up to date)" + (f"; {kept}" if kept else "")
    sums = totals(found)
    width = max(len(step) for step in sums)
    lines = ["steps of this run (wall time, s):"]
    lines += [f"  {step.ljust(width)}  {seconds:8.1f}" for step, seconds in sums.items()]
    lines.append(f"  {'total'.ljust(width)}  {sum(sums.values()):8.1f}")
    return "\n".join(lines + ([f"  {kept}"] if kept else []))


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(options, command) of `... -- COMMAND...` (the command after the first `--`)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    split = argv.index("--")
    return argv[:split], argv[split + 1:]


@cli
def main(argv=None):
    argv, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.steps",
                                     description="Time the pipeline's steps.")
    sub = parser.add_subparsers(dest="action", required=True)
    timed = sub.add_parser("run", help="run a step's command and log its wall time")
    timed.add_argument("log")
    timed.add_argument("step")
    timed.add_argument("--bs", type=int, help="the batch size, for a per-batch-size step")
    shown = sub.add_parser("table", help="print one run's steps")
    shown.add_argument("log")
    shown.add_argument("run")
    args = parser.parse_args(argv)
    if args.action == "table":
        print(table(entries(args.log, args.run), entries(args.log, args.run, other=True)))
        return
    sys.exit(run_step(args.log, args.step, command, args.bs))


if __name__ == "__main__":
    main()
