"""Parallel speed-up of npuzoo.prep on models/mobilenetv1: --workers 1 against --workers 2.

The work is the folder's own preprocess(), the same computation in every model folder,
so the figures hold for each folder's preprocess.py; MobileNetV1's 224x224 float32 outputs are
the reference case (InceptionV4's are 299x299).

One run preprocesses the same images (default: the first 600 of
../shared/data/imagenet-val-1300/val) as the pipeline's preprocess step runs it
(`python3 -m npuzoo.prep models/mobilenetv1 SRC DST --limit N --workers K`, each into a fresh
temporary folder that is deleted right after), alternating 1 and 2 workers over R rounds and
swapping which goes first each round. One untimed warm-up run comes first (source files into the
page cache).

For each run it records the rate the script prints (images / seconds from listing the images
to the last file written, pool start-up included) and the wall-clock rate of the whole command
(interpreter start-up included). The speed-up of a round is the ratio of its two adjacent runs.

On a machine with two cores, any other process's CPU use comes straight out of the second
worker's share, so the benchmark measures, for every run, how much CPU the rest of the machine
used (from /proc/stat, minus this benchmark's own children). A round is "quiet" when other
processes used less than --quiet-cores in both of its runs. With --wait-quiet S, each round
first waits up to S seconds for the machine to go idle. The verdict (target >= 1.5) is the
median per-round ratio over the quiet rounds: PASS or FAIL, or INCONCLUSIVE when no round was
quiet. The median over all rounds is printed too.

    .venv/bin/python benchmarks/bench_preprocess.py [--src DIR] [--limit 600] [--rounds 7]
        [--wait-quiet 120] [--quiet-cores 0.15]
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO, "models", "mobilenetv1")
DEFAULT_SRC = os.path.join(os.path.dirname(REPO), "shared", "data", "imagenet-val-1300", "val")
TARGET = 1.5
SUMMARY = re.compile(r"preprocessed (\d+) images to .* in ([\d.]+) s \(([\d.]+) images/s\)")
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds():
    """(busy, elapsed) CPU seconds summed over the machine's cores, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / HZ, sum(fields) / HZ


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class OtherLoad:
    """Cores' worth of CPU used by processes other than this benchmark's children."""

    def __enter__(self):
        self.start, self.own = cpu_seconds(), children_cpu()
        self.start_wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        end = cpu_seconds()
        wall = time.perf_counter() - self.start_wall
        if self.start is None or end is None or wall <= 0:
            self.cores = 0.0
        else:
            others = (end[0] - self.start[0]) - (children_cpu() - self.own)
            self.cores = max(0.0, others / wall)
        return False


def wait_quiet(limit, quiet_cores):
    """Wait up to `limit` s until other processes use less than `quiet_cores` over 2 s."""
    deadline = time.monotonic() + limit
    while True:
        with OtherLoad() as load:
            time.sleep(2)
        if load.cores < quiet_cores or time.monotonic() >= deadline:
            return load.cores


def run_once(src, limit, workers, scratch):
    """(script's images/s, wall images/s, count, other cores) of one run; output removed."""
    dst = tempfile.mkdtemp(prefix=f"w{workers}-", dir=scratch)
    command = [sys.executable, "-m", "npuzoo.prep", MODEL_DIR, src, dst, "--limit", str(limit),
               "--workers", str(workers)]
    with OtherLoad() as load:
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
    shutil.rmtree(dst, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{proc.stderr.strip()}")
    match = SUMMARY.search(proc.stdout)
    if not match:
        sys.exit(f"error: no summary line in the output of {' '.join(command)}: {proc.stdout!r}")
    count, seconds = int(match.group(1)), float(match.group(2))
    return count / seconds, count / wall, count, load.cores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=DEFAULT_SRC, help="image folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=600, help="first N images (default 600)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="rounds of (1, 2) workers (default 7)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                        help="before each round, wait up to S s for an idle machine (default 0)")
    parser.add_argument("--quiet-cores", type=float, default=0.15, metavar="C",
                        help="other processes' CPU below which a run counts as quiet "
                             "(default 0.15)")
    parser.add_argument("--scratch", default=None, help="folder for the temporary outputs")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.src):
        sys.exit(f"error: {args.src}: no such folder (give --src a folder of images)")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"npuzoo.prep --workers 1 vs 2: first {args.limit} images of {args.src}, "
          f"{args.rounds} rounds, {cores} usable cores")
    rates, walls = {1: [], 2: []}, {1: [], 2: []}
    ratios, wall_ratios, quiet = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_preprocess-", dir=args.scratch) as scratch:
        run_once(args.src, args.limit, 2, scratch)  # warm-up, untimed
        for round_no in range(args.rounds):
            if args.wait_quiet:
                wait_quiet(args.wait_quiet, args.quiet_cores)
            got = {}
            for workers in ((1, 2) if round_no % 2 == 0 else (2, 1)):
                got[workers] = run_once(args.src, args.limit, workers, scratch)
                rates[workers].append(got[workers][0])
                walls[workers].append(got[workers][1])
            count = got[1][2]
            ratios.append(got[2][0] / got[1][0])
            wall_ratios.append(got[2][1] / got[1][1])
            others = max(got[1][3], got[2][3])
            quiet.append(others < args.quiet_cores)
            print(f"  round {round_no + 1}: 1 worker {got[1][0]:6.1f} images/s, 2 workers "
                  f"{got[2][0]:6.1f} images/s, ratio {ratios[-1]:.2f} (wall-clock "
                  f"{wall_ratios[-1]:.2f}); other processes used up to {others:.2f} cores"
                  + ("" if quiet[-1] else "  [busy]"))

    print(f"images per run: {count}")
    for workers in (1, 2):
        print(f"--workers {workers}: {statistics.median(rates[workers]):6.1f} images/s "
              f"(script's own figure, median of all rounds), "
              f"{statistics.median(walls[workers]):6.1f} images/s wall-clock incl. start-up")
    print(f"speed-up over all {len(ratios)} rounds: {statistics.median(ratios):.2f} "
          f"(wall-clock {statistics.median(wall_ratios):.2f})")
    quiet_ratios = [r for r, q in zip(ratios, quiet, strict=True) if q]
    if not quiet_ratios:
        print(f"speed-up over quiet rounds: none was quiet (other processes above "
              f"{args.quiet_cores} cores in every round); target >= {TARGET}")
        print("INCONCLUSIVE")
        return 2
    ratio = statistics.median(quiet_ratios)
    quiet_walls = [r for r, q in zip(wall_ratios, quiet, strict=True) if q]
    print(f"speed-up over the {len(quiet_ratios)} quiet rounds: {ratio:.2f} (wall-clock "
          f"{statistics.median(quiet_walls):.2f}); target >= {TARGET}")
    print("PASS" if ratio >= TARGET else "FAIL")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
