"""What else ran on this process's CPUs while the loop was timed, and how steady the loop was.
LoadMonitor brackets the timed section: other processes' CPU time (steal included) is
/proc/stat's busy time of our CPUs minus our own; RULE says when that is contention. A slowdown
from outside a guest that reports no steal shows in a reference kernel timed before and after.
The 1-minute load average is recorded, not judged (it counts this runner's own threads)."""

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CONTENDED_SHARE = 0.10   # other processes' share of the CPUs above which a figure is contended
REFERENCE_CHANGE = 0.15  # the reference kernel's time change, before vs after, that is contended
MIN_TICKS = 100          # of CPU capacity (cpus x wall time) below which no verdict is given
WINDOWS = 5              # the timed loop is judged in this many consecutive windows
RULE = (f"other_cpu_s > {CONTENDED_SHARE:g} * cpus * wall_s (other processes' CPU time on this "
        "process's CPUs, from /proc/stat minus its own), or a reference kernel's time before vs "
        f"after the loop changed by more than {REFERENCE_CHANGE:.0%}; null when cpus * wall_s "
        f"is under {MIN_TICKS} clock ticks (too short to judge) or /proc/stat is absent")


def reference_kernel_ms(repeats: int = 7) -> float:
    """The median time (ms) of a fixed single-thread numpy kernel of about 1 ms (a BLAS
    product would wait for its own threads on any busy core)."""
    values = np.linspace(0, 1, 1 << 16, dtype=np.float32)
    out = np.empty_like(values)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(20):
            np.multiply(values, 1.0001, out=out)
            np.add(out, 0.5, out=out)
            np.sqrt(out, out=out)
        times.append((time.perf_counter() - t0) * 1000.0)
    return round(float(np.median(times)), 4)


class LoadMonitor:
    """start() and stop() bracket the timed section; stop() returns the summary's load keys."""

    def __init__(self, stat_path: str = "/proc/stat",
                 clock: Callable[[], float] = time.perf_counter,
                 reference: Callable[[], float] | None = None) -> None:
        self.stat_path = stat_path
        self.clock = clock
        self.reference = reference or reference_kernel_ms
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
        busy = steal = 0
        for row in rows:
            values = [int(v) for v in row] + [0] * 8
            # user nice system idle iowait irq softirq steal (guest is inside user)
            busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
            steal += values[7]
        return busy, steal, count

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
        change = ref1 / self.ref0 - 1 if self.ref0 and ref1 else None
        outside = change is not None and \
            max(ref1 / self.ref0, self.ref0 / ref1) - 1 > REFERENCE_CHANGE
        result: dict[str, Any] = {
            "loadavg_1m_start": self.load0, "loadavg_1m_end": os.getloadavg()[0],
            "cpus": len(self.cpus), "own_cpu_s": round(own, 3), "other_cpu_s": None,
            "steal_s": None, "other_cpu_share": None, "reference_ms": [self.ref0, ref1],
            "reference_change": change, "contended": True if outside else None,
            "contended_rule": RULE}
        if self.busy0 is None or busy1 is None:
            return result
        cpus = busy1[2]
        other = max(0.0, (busy1[0] - self.busy0[0]) / self.tick - own)
        share = other / (cpus * wall) if wall > 0 else 0.0
        result.update({"cpus": cpus, "other_cpu_s": round(other, 3),
                       "steal_s": round((busy1[1] - self.busy0[1]) / self.tick, 3),
                       "other_cpu_share": round(share, 4),
                       "contended": bool(share > CONTENDED_SHARE)})
        if cpus * wall * self.tick < MIN_TICKS:   # /proc/stat counts whole clock ticks
            result["contended"] = None
        if outside:
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
