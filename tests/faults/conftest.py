"""Fixtures of the fault suite: a cluster on a fresh database, torn down after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """PostgreSQL (a fresh database) + RabbitMQ (a private namespace); nothing started yet."""
    made = Cluster(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def memory_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """SQLite + the in-process transport: every role in one process."""
    made = Cluster(tmp_path, memory=True)
    try:
        yield made
    finally:
        made.close()
