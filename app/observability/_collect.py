"""Gauges read from the store on a schedule: outbox backlog, overdue timers, timer lag.

Counters move where things happen; these two are states of the database, so an
orchestrator polls them. Every orchestrator replica may run the loop: the gauges
report the same shared numbers and a dashboard takes `max` over instances.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import anyio

from treadle.observability._logging import get_logger
from treadle.observability._metrics import Metrics

log = get_logger(__name__)

OVERDUE_CAP = 100_000
"""Overdue timers are counted up to this many, so a huge backlog costs a bounded read."""

DEFAULT_INTERVAL_SECONDS = 15.0
"""Prometheus scrapes every 15-60 s; polling faster only loads the database."""


class BacklogSource(Protocol):
    """The two reads the loop needs (a `StateStore` has both)."""

    async def outbox_backlog(self) -> tuple[int, datetime | None]: ...

    async def next_timer_at(self) -> datetime | None: ...

    async def count_overdue_timers(self, now: datetime, cap: int) -> int: ...


async def collect_store_gauges_once(
    metrics: Metrics, store: BacklogSource, now: Callable[[], datetime]
) -> None:
    """Read the outbox backlog, the overdue timers and the earliest timer; set the gauges."""
    count, oldest = await store.outbox_backlog()
    moment = now()
    metrics.set_outbox_backlog(count, (moment - oldest).total_seconds() if oldest else 0.0)
    next_timer = await store.next_timer_at()
    metrics.set_timer_lag((moment - next_timer).total_seconds() if next_timer else 0.0)
    metrics.set_timers_overdue(await store.count_overdue_timers(moment, OVERDUE_CAP))


async def collect_store_gauges(
    metrics: Metrics,
    store: BacklogSource,
    now: Callable[[], datetime],
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
) -> None:
    """Refresh the store gauges every `interval_seconds` until cancelled; never raises."""
    while True:
        try:
            await collect_store_gauges_once(metrics, store, now)
        except Exception:  # a metrics hiccup must not stop the orchestrator
            log.warning("reading the store gauges failed", exc_info=True)
        await anyio.sleep(interval_seconds)
