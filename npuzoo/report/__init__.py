"""Results files, `reports/<model>/<SOC>_bs<BS>.json`: a run's pieces read and checked (pieces,
agreement), its report (build), reports read as user input (read), run-over-run changes
(compare), recording and placing a run (publish); `python3 -m npuzoo.report` (cli).
"""
