"""`--seed N` replays one simulation; `--seeds N` sets how many a run covers."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the simulation (pass `tests/simulation` on the command line to use them)."""
    group = parser.getgroup("simulation")
    group.addoption("--seed", type=int, default=None, help="replay this one simulation seed")
    group.addoption("--seeds", type=int, default=None, help="seeds per run (default 2000)")
