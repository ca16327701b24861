"""Stand-in for the `ais_bench` package (ais_bench_contract.md §1-§5); see tests/standins/_standin.py."""
