"""`python3 -m ais_bench` runs ais_bench/infer/__main__.py, as the real package does (contract §1)."""

import runpy

runpy.run_module("ais_bench.infer.__main__", run_name="__main__", alter_sys=True)
