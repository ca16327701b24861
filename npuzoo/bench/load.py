"""What else ran on this process's CPUs while the loop was timed, and how steady the loop was.
LoadMonitor brackets the timed section: other processes' CPU time (steal included) is
/proc/stat's busy time of our CPUs minus our own; RULE says when that is contention. A slowdown
from outside a guest that reports no steal (another tenant of the host) shows in a reference
matrix product timed before and after the loop, against the best this machine ever gave it.
The 1-minute load average is recorded, not judged (it counts this runner's own threads)."""

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from npuzoo.files import atomic_write

CONTENDED_SHARE = 0.10   # other processes' share of the CPUs above which a figure is contended
# The worse of the reference product's figures, before and after the loop, this far below the
# machine's best marks the figure contended. It errs that way: the product runs on every CPU, and
# any one of them taken for a moment lowers it, so it also falls in runs whose figure held.
REFERENCE_BELOW = 0.05
MIN_TICKS = 100          # of CPU capacity (cpus x wall time) below which no verdict is given
WINDOWS = 5              # the timed loop is judged in this many consecutive windows
REFERENCE_N = 256        # the reference product: float32 N x N, about 0.2 ms on one core
# How the product is run (reference_gflops): a machine's best recorded another way is not compared.
REFERENCE_METHOD = "one thread per CPU, BLAS on one thread, summed"
RULE = (f"other_cpu_s > {CONTENDED_SHARE:g} * cpus * wall_s (other processes' CPU time on this "
        "process's CPUs, from /proc/stat minus its own), or the worse of a reference matrix "
        f"product's GFLOP/s before and after the loop is more than {REFERENCE_BELOW:.0%} below "
        f"the best this machine gave it (with --tune); null when cpus * wall_s is under "
        f"{MIN_TICKS} clock ticks (too short to judge) or /proc/stat is absent")


def reference_gflops(repeats: int = 40) -> float:
    """GFLOP/s of a small float32 matrix product on each of this process's CPUs at once, one
    thread per CPU with the BLAS held to one thread, summed over the CPUs (each the best of
    `repeats`: what the host gives the model's kernels now; the best ignores a passing blip).
    Not the BLAS's own threads: OpenBLAS's spin for about 0.1 s after a call, CPU time the timed
    loop that follows would lose (1-2% of a 2 s loop on 2 cores)."""
    from threadpoolctl import threadpool_limits

    count = len(os.sched_getaffinity(0))
    bests = [float("inf")] * count
    start = threading.Barrier(count)

    def product(slot: int) -> None:
        a = np.ones((REFERENCE_N, REFERENCE_N), dtype=np.float32)
        out = np.empty_like(a)
        start.wait()   # all CPUs busy together, as the model's kernels keep them
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(4):
                np.matmul(a, a, out=out)   # releases the GIL
            bests[slot] = min(bests[slot], time.perf_counter() - t0)

    with threadpool_limits(limits=1, user_api="blas"):
        threads = [threading.Thread(target=product, args=(slot,)) for slot in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return round(sum(4 * 2 * REFERENCE_N ** 3 / best / 1e9 for best in bests), 2)


def machine_best(path: str | None, now: float) -> float | None:
    """The best reference figure recorded in `path` (JSON) before this run, or None; `now`
    replaces it when better. A file that cannot be read, holds no finite positive figure (an
    infinite one would mark every run contended for good) or another product's starts afresh."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        same = (record["reference_n"], record["method"]) == (REFERENCE_N, REFERENCE_METHOD)
        best = float(record["best_gflops"]) if same else None
    except (OSError, ValueError, KeyError, TypeError):
        best = None
    best = best if best is not None and 0 < best < float("inf") else None
    if best is None or now > best:
        atomic_write(path, json.dumps({"best_gflops": now, "reference_n": REFERENCE_N,
                                       "method": REFERENCE_METHOD}) + "\n")
    return best


class LoadMonitor:
    """start() and stop() bracket the timed section; stop() returns the summary's load keys."""

    def __init__(self, stat_path: str = "/proc/stat",
                 clock: Callable[[], float] = time.perf_counter,
                 reference: Callable[[], float] | None = None,
                 best_path: str | None = None) -> None:
        self.stat_path = stat_path
        self.clock = clock
        self.reference = reference or reference_gflops
        self.best_path = best_path   # this machine's best reference figure (JSON)
        self.cpus = sorted(os.sched_getaffinity(0))
        self.tick = os.sysconf("SC_CLK_TCK")

    def _busy(self) -> tuple[int, int, int] | None:
        """(busy jiffies, steal jiffies, cpus counted) of our CPUs, or None."""
        try:
            with open(self.stat_path) as handle:
                lines = [line.split() for line in handle if line.startswith("cpu")]
        except OSError:
            return None
        per_cpu = {fields[0]: fields[1:] for fields in lines}
        names = [f"cpu{c}" for c in self.cpus]
        if all(name in per_cpu for name in names):
            rows, count = [per_cpu[name] for name in names], len(names)
        elif "cpu" in per_cpu:
            rows, count = [per_cpu["cpu"]], max(1, len(per_cpu) - 1)
        else:
            return None
        # user nice system idle iowait irq softirq steal (guest is inside user)
        values = [[int(v) for v in row] + [0] * 8 for row in rows]
        steal = sum(v[7] for v in values)
        return sum(v[0] + v[1] + v[2] + v[5] + v[6] for v in values) + steal, steal, count

    @staticmethod
    def _own() -> float:
        times = os.times()
        return times.user + times.system

    def start(self) -> "LoadMonitor":
        self.ref0 = self.reference()
        self.load0 = os.getloadavg()[0]
        self.busy0 = self._busy()
        self.own0 = self._own()
        self.t0 = self.clock()
        return self

    def stop(self) -> dict[str, Any]:
        wall = self.clock() - self.t0
        own = self._own() - self.own0
        busy1 = self._busy()
        ref1 = self.reference()
        best = machine_best(self.best_path, max(self.ref0, ref1))
        below = max(0.0, 1 - min(self.ref0, ref1) / best) if best else None
        result: dict[str, Any] = {
            "loadavg_1m_start": self.load0, "loadavg_1m_end": os.getloadavg()[0],
            "cpus": len(self.cpus), "own_cpu_s": round(own, 3), "other_cpu_s": None,
            "steal_s": None, "other_cpu_share": None, "reference_gflops": [self.ref0, ref1],
            "reference_change": ref1 / self.ref0 - 1 if self.ref0 and ref1 else None,
            "reference_best_gflops": best, "reference_below_best": below, "contended": None,
            "contended_rule": RULE}
        if self.busy0 is not None and busy1 is not None:
            cpus = busy1[2]
            other = max(0.0, (busy1[0] - self.busy0[0]) / self.tick - own)
            share = other / (cpus * wall) if wall > 0 else 0.0
            result.update({"cpus": cpus, "other_cpu_s": round(other, 3),
                           "steal_s": round((busy1[1] - self.busy0[1]) / self.tick, 3),
                           "other_cpu_share": round(share, 4),
                           # /proc/stat counts whole clock ticks: too few give no verdict
                           "contended": None if cpus * wall * self.tick < MIN_TICKS
                           else share > CONTENDED_SHARE})
        if below is not None and below > REFERENCE_BELOW:
            result["contended"] = True
        return result


def window_throughputs(ends: list[float], start: float, batchsize: float,
                       windows: int = WINDOWS) -> list[float]:
    """Images/s in `windows` consecutive groups of equally many calls (completion times `ends`,
    timed from `start`): a slowdown during the loop shows as a spread between them."""
    ends, found, previous = sorted(ends), [], start
    count = min(windows, len(ends))
    if count < 2:
        return []
    for j in range(count):
        group = ends[j * len(ends) // count:(j + 1) * len(ends) // count]
        if group[-1] > previous:
            found.append(batchsize * len(group) / (group[-1] - previous))
        previous = group[-1]
    return found


def spread(values: list[float]) -> dict[str, Any]:
    """{throughput_windows, throughput_median, throughput_spread}: the spread is
    (max - min) / median, None with fewer than two windows."""
    if len(values) < 2:
        return {"throughput_windows": values, "throughput_median": None, "throughput_spread": None}
    median = float(np.median(values))
    return {"throughput_windows": [round(v, 3) for v in values], "throughput_median": median,
            "throughput_spread": (max(values) - min(values)) / median if median else None}
