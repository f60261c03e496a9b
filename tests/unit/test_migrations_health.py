"""The migrations readiness check asks the database once, then reuses a current answer."""

from __future__ import annotations

from typing import Any, cast

import pytest

from treadle.wiring import MigrationsHealth, SchemaNotCurrent

pytestmark = pytest.mark.anyio


class CountingStore:
    """Answers `schema_is_current` with a fixed value and counts the questions."""

    def __init__(self, current: bool) -> None:
        self.current = current
        self.asked = 0

    async def schema_is_current(self) -> bool:
        self.asked += 1
        return self.current


async def test_a_current_schema_is_checked_once_per_reuse_window() -> None:
    """Repeated readiness probes do not re-run the migration check while it is current."""
    store = CountingStore(current=True)
    health = MigrationsHealth(cast("Any", store))
    for _ in range(5):
        await health.check()
    assert store.asked == 1


async def test_a_stale_schema_is_asked_again_every_time() -> None:
    """A schema that is not current keeps failing and is re-checked on each probe."""
    store = CountingStore(current=False)
    health = MigrationsHealth(cast("Any", store))
    for _ in range(3):
        with pytest.raises(SchemaNotCurrent):
            await health.check()
    assert store.asked == 3
