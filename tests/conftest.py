"""Shared fixtures: async tests run on asyncio and trio unless a folder narrows it."""

from __future__ import annotations

import pytest


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")],
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test on both anyio backends (integration folders override this)."""
    return str(request.param)
