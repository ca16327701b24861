"""Run reports, `reports/<model>/<SOC>_bs<BS>.json`; `python3 -m npuzoo.report` is cli.py."""
