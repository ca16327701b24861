"""The ais_bench-compatible runner on the CPU (`python3 -m npuzoo.bench`, `npuzoo-bench`): the
2023 `python3 -m ais_bench` ("T23") on ONNX Runtime or OpenVINO, as
docs/ais_bench_compatibility.md describes it, plus npuzoo's flags. Modules: options (the command
line), inputs (files, shapes, batches), outputs (result files, summary), load (the machine's
load while timed), runner (sessions, the timed loop; run() returns the summary dict).
"""

from npuzoo.bench.runner import main, run

__all__ = ["main", "run"]
