"""The ais_bench-compatible inference runner on the CPU: `python3 -m npuzoo.bench`.

It reproduces the 2023 `python3 -m ais_bench` (Ascend/tools 9d6da90, "T23") on ONNX Runtime or
OpenVINO: its command line, batching, result files, summary JSON and printed block, as
docs/ais_bench_compatibility.md describes them section by section, with npuzoo's own flags
(--streams, --backend, --precision, --tune, --loop_seconds) on top. The package's modules:

    options   the command line (T23's flags and checks, npuzoo's flags)
    inputs    input files, model shapes, batches and their input arrays
    outputs   result files and the summary (JSON and printed block)
    load      what else ran on the CPUs while the loop was timed
    runner    sessions, warm-up, the timed loop, streams, devices; run() and main()

Python API: `npuzoo.bench.run(argv, threads=None)` takes the argument list (no program name)
and returns the summary dict; for a device list {"devices": [...], "throughput": sum}. User
errors raise npuzoo.errors.UserError.
"""

from npuzoo.bench.runner import main, run

__all__ = ["main", "run"]
