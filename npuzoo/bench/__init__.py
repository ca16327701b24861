"""The ais_bench-compatible runner on the CPU (`python3 -m npuzoo.bench`, `npuzoo-bench`): the
2023 `python3 -m ais_bench` ("T23") on ONNX Runtime or OpenVINO, plus npuzoo's flags
(docs/ais_bench_compatibility.md). run() returns the summary dict."""

from npuzoo.bench.runner import main, run

__all__ = ["main", "run"]
