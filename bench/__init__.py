"""Treadle's benchmark harness: workloads, peers and machine baselines (never part of the tests).

Run it with `python -m bench` or `just bench`; `--help` lists the options.
"""
