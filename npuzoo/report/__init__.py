"""Results files, `reports/<model>/<SOC>_bs<BS>.json`: pieces, agreement, build, read, compare,
publish; `python3 -m npuzoo.report` (cli)."""
