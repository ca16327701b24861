"""Where a run's time goes: `python3 -m npuzoo.steps run LOG STEP [--bs BS] -- COMMAND...`
(mk/pipeline.mk's `$(call STEP,<name>)`) times a step into build/<model>/steps.jsonl, one JSON
line per command; `make <model>` ends with their table, and each report records its steps."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from npuzoo.errors import cli
from npuzoo.files import locked

Entry = dict[str, Any]  # one line of the log

RUN_ENV = "NPUZOO_RUN_ID"
# The order of the table: the pipeline's.
ORDER = ("data", "weights", "source", "preprocess", "export", "quantize", "compile", "inference",
         "perf", "postprocess", "report")


def ordered(steps: Iterable[str]) -> list[str]:
    return [s for s in ORDER if s in steps] + sorted(s for s in steps if s not in ORDER)


def record(log: str, step: str, seconds: float, status: int = 0, bs: int | None = None) -> None:
    entry = {"run": os.environ.get(RUN_ENV, ""), "step": step, "bs": bs,
             "seconds": round(seconds, 3), "status": status,
             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with locked(log) as handle:
        handle.write(json.dumps(entry) + "\n")


# Why a step's process may die of a signal, which leaves no message of its own.
SIGNAL_HINTS: dict[int, str] = {
    signal.SIGSEGV: "the engine crashed on this graph: another BACKEND (for int8, another "
                    "QUANTIZER) may run it",
    signal.SIGKILL: "out of memory, or killed"}


def run_step(log: str, step: str, command: list[str], bs: int | None = None) -> int:
    start = time.perf_counter()
    try:
        status = subprocess.call(command)
    except KeyboardInterrupt:
        status = 130
    if status < 0:   # as a shell reports it: 128 + the signal
        # (a real-time signal has no name)
        name = next((s.name for s in signal.Signals if s == -status), f"signal {-status}")
        hint = SIGNAL_HINTS.get(-status)
        print(f"error: the {step} step died of {name}" + (f": {hint}" if hint else ""),
              file=sys.stderr)
        status = 128 - status
    record(log, step, time.perf_counter() - start, status, bs)
    return status


def read(log: str) -> list[Entry]:
    """Every entry of the log that parses (none when it is absent)."""
    if not os.path.isfile(log):
        return []
    found = []
    with open(log, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
    return found


def entries(log: str, run: str, other: bool = False) -> list[Entry]:
    """The log's entries of `run` (`other`: of every other run instead)."""
    return [e for e in read(log) if (e.get("run") == run) != other] if run else []


def totals(found: Iterable[Entry], bs: int | None = None) -> dict[str, float]:
    """{step: seconds} in pipeline order: every shared step, and `bs`'s own (all when None)."""
    sums: dict[str, float] = {}
    for entry in [e for e in found if bs is None or e.get("bs") in (None, bs)]:
        sums[entry["step"]] = sums.get(entry["step"], 0.0) + float(entry.get("seconds") or 0)
    return {step: round(sums[step], 2) for step in ordered(sums)}


def reused(found: Iterable[Entry], earlier: Iterable[Entry]) -> list[str]:
    """The steps that earlier runs did (successfully) and this run's `found` did not."""
    return ordered({str(e["step"]) for e in earlier if e.get("status") == 0 and e.get("step")}
                   - {str(e.get("step")) for e in found})


def table(found: list[Entry], earlier: Iterable[Entry] = ()) -> str:
    again = reused(found, earlier)
    kept = f"reused from an earlier run: {', '.join(again)}" if again else ""
    if not found:
        return "steps: nothing to do (every step was up to date)" + (f"; {kept}" if kept else "")
    sums = totals(found)
    width = max(len(step) for step in sums)
    lines = ["steps of this run (wall time, s):",
             *(f"  {step.ljust(width)}  {seconds:8.1f}" for step, seconds in sums.items())]
    lines.append(f"  {'total'.ljust(width)}  {sum(sums.values()):8.1f}")
    return "\n".join(lines + ([f"  {kept}"] if kept else []))


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    return argv[:split], argv[split + 1:]


@cli
def main(argv: list[str] | None = None) -> None:
    argv, command = split_command(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python3 -m npuzoo.steps",
                                     description="Run a pipeline step's command, log its time.")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("log")
    parser.add_argument("step")
    parser.add_argument("--bs", type=int, help="the batch size, for a per-batch-size step")
    args = parser.parse_args(argv)
    sys.exit(run_step(args.log, args.step, command, args.bs))


if __name__ == "__main__":
    main()
