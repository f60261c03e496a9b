"""The outbox relay: publish what a committed decision wrote, then mark it sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import anyio

from app._crash import crash_point
from app.observability import Telemetry, get_logger
from app.ports import Clock, OutboxRecord, OutboxStore, Transport

log = get_logger(__name__)

SWEEP_BATCH = 500


class Relay:
    """Publishes outbox rows; whatever fails stays unsent for the sweeper to retry."""

    def __init__(
        self, store: OutboxStore, transport: Transport, *, telemetry: Telemetry | None = None
    ) -> None:
        self._store = store
        self._transport = transport
        self._telemetry = telemetry or Telemetry.off("orchestrator")

    async def publish(self, records: Sequence[OutboxRecord]) -> int:
        """Publish rows (one batch per channel) and mark the published ones; how many."""
        if not records:
            return 0
        crash_point("after_commit_before_publish")
        sent: list[int] = []
        for channel, batch in _by_channel(records).items():
            # Each row's span joins the trace of the decision that wrote it.
            traceparents = [r.message.headers.get("traceparent") for r in batch]
            try:
                with self._telemetry.outbox_publish(channel, traceparents):
                    await self._transport.publish(channel, [r.message for r in batch])
            except Exception:
                # Not fatal: the rows stay unsent and the sweeper publishes them later.
                self._telemetry.metrics.broker_error(self._transport.name, "publish")
                log.exception("publishing outbox rows failed", rows=len(batch), channel=channel)
                continue
            sent.extend(r.id for r in batch)
        if sent:
            crash_point("after_publish_before_mark_sent")
            try:
                await self._store.mark_sent(sent)
            except Exception:
                # They were published; the sweeper will publish them again (at least once).
                log.exception("marking outbox rows sent failed", rows=len(sent))
        return len(sent)

    async def sweep(self, clock: Clock, stale_seconds: float) -> int:
        """Publish every row left unsent for longer than `stale_seconds`; how many."""
        total = 0
        while True:
            older_than = clock.now() - timedelta(seconds=stale_seconds)
            records = await self._store.claim_unsent(older_than, SWEEP_BATCH)
            published = await self.publish(records)
            total += published
            if len(records) < SWEEP_BATCH or published == 0:
                return total

    async def sweep_forever(self, clock: Clock, interval: float, stale_seconds: float) -> None:
        """Sweep every `interval` seconds until cancelled; errors are logged, not raised."""
        while True:
            try:
                swept = await self.sweep(clock, stale_seconds)
            except Exception:
                log.exception("the outbox sweep failed; trying again", in_seconds=interval)
            else:
                if swept:
                    log.warning("the sweeper published outbox rows left unsent", rows=swept)
            await anyio.sleep(interval)


def _by_channel(records: Sequence[OutboxRecord]) -> dict[str, list[OutboxRecord]]:
    groups: dict[str, list[OutboxRecord]] = {}
    for record in records:
        groups.setdefault(record.channel, []).append(record)
    return groups
