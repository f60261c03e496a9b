"""Serving one process: the HTTP listener every process has, readiness, and the drain on
SIGTERM. What the process is made of is wired in `treadle.wiring`."""
