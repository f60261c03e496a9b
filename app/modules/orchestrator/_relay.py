"""The outbox relay: publish what a committed decision wrote, then mark it sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import anyio

from treadle.observability import Telemetry, get_logger
from treadle.ports import Clock, OutboxRecord, OutboxStore, Transport
from treadle.testing.crash import crash_point

log = get_logger(__name__)

SWEEP_BATCH = 500
PRUNE_BATCH = 1000  # rows per delete, so a large backlog never holds a long lock


class Relay:
    """Publishes outbox rows; whatever fails stays unsent for the sweeper to retry.

    Rows are marked sent by group commit: the publisher that finds no `mark_sent` in
    flight marks its ids, then those published meanwhile, batch after batch, until none
    are left; the others return as soon as they have published (a mark only spares the
    sweeper a second publish, so nobody needs to wait for it). The ids of rows being
    published or waiting for their mark are held in `inflight`, and the sweeper of this
    process leaves them alone.
    """

    def __init__(
        self, store: OutboxStore, transport: Transport, *, telemetry: Telemetry | None = None
    ) -> None:
        self._store = store
        self._transport = transport
        self._telemetry = telemetry or Telemetry.off("orchestrator")
        self.inflight: set[int] = set()
        self._to_mark: list[int] = []
        self._marking = False

    async def publish(self, records: Sequence[OutboxRecord]) -> int:
        """Publish rows (one batch per channel) and have them marked; how many were sent."""
        if not records:
            return 0
        ids = [r.id for r in records]
        self.inflight.update(ids)
        try:
            sent = await self._publish(records)
        except BaseException:
            self.inflight.difference_update(ids)
            raise
        self.inflight.difference_update(set(ids).difference(sent))  # the sweeper's now
        if sent:
            crash_point("after_publish_before_mark_sent")
            await self._mark_sent(sent)
        return len(sent)

    async def _publish(self, records: Sequence[OutboxRecord]) -> list[int]:
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
        return sent

    async def mark_done(self, ids: Sequence[int]) -> None:
        """Mark leased rows sent whose attempts were settled here (eager dispatch)."""
        self.inflight.update(ids)
        await self._mark_sent(list(ids))

    async def renew_leases(self, ids: Sequence[int], seconds: float) -> None:
        """Extend the leases of rows whose attempts still run here (eager dispatch)."""
        await self._store.renew_leases(ids, seconds)

    async def _mark_sent(self, ids: list[int]) -> None:
        """Queue `ids` for marking; mark every queued id if no one else is marking."""
        self._to_mark.extend(ids)
        if self._marking:
            return  # the publisher marking now takes these in its next batch
        self._marking = True
        try:
            while self._to_mark:
                batch, self._to_mark = self._to_mark, []
                try:
                    await self._store.mark_sent(batch)
                except Exception:
                    # They were published; the sweeper will publish them again (at least once).
                    log.exception("marking outbox rows sent failed", rows=len(batch))
                finally:
                    self.inflight.difference_update(batch)
        finally:
            self._marking = False
            # Interrupted (cancelled) with ids still queued: nobody may come to mark them,
            # so they go back to the sweeper, which publishes them again.
            self.inflight.difference_update(self._to_mark)
            self._to_mark = []

    async def sweep(self, clock: Clock, stale_seconds: float) -> int:
        """Publish every row left unsent for longer than `stale_seconds`; how many.

        Rows this process is publishing right now are skipped: they are late, not lost.
        """
        total = 0
        while True:
            older_than = clock.now() - timedelta(seconds=stale_seconds)
            claimed = await self._store.claim_unsent(older_than, SWEEP_BATCH)
            records = [r for r in claimed if r.id not in self.inflight]
            published = await self.publish(records)
            total += published
            if len(claimed) < SWEEP_BATCH or published == 0:
                return total

    async def prune(self, clock: Clock, retention_seconds: float) -> int:
        """Delete the rows sent more than `retention_seconds` ago; how many."""
        sent_before = clock.now() - timedelta(seconds=retention_seconds)
        pruned = await self._store.prune_sent(sent_before, PRUNE_BATCH)
        if pruned:
            self._telemetry.metrics.outbox_pruned(pruned)
            log.debug("pruned published outbox rows", rows=pruned)
        return pruned

    async def sweep_forever(
        self, clock: Clock, interval: float, stale_seconds: float, retention_seconds: float
    ) -> None:
        """Sweep and prune every `interval` seconds until cancelled; errors are logged."""
        while True:
            try:
                swept = await self.sweep(clock, stale_seconds)
            except Exception:
                log.exception("the outbox sweep failed; trying again", in_seconds=interval)
            else:
                if swept:
                    log.warning("the sweeper published outbox rows left unsent", rows=swept)
            try:
                await self.prune(clock, retention_seconds)
            except Exception:
                log.exception("pruning the outbox failed; trying again", in_seconds=interval)
            await anyio.sleep(interval)


def _by_channel(records: Sequence[OutboxRecord]) -> dict[str, list[OutboxRecord]]:
    groups: dict[str, list[OutboxRecord]] = {}
    for record in records:
        groups.setdefault(record.channel, []).append(record)
    return groups
