"""The outbox relay's reads and writes, and durable timers claimed under a lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from msgspec.structs import replace

from tests.integration.store.factories import at, make_run, message, timer, unchanged
from tests.stores import apply, create_run
from treadle.domain.events import CancelTimer, TimerKind
from treadle.messages import delivered_once_more, earlier_deliveries
from treadle.ports import Changes, DueTimer
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio


async def test_outbox_claim_mark_and_backlog(store: SqlStore) -> None:
    """Unsent rows are claimable oldest first until marked sent; the backlog follows."""
    assert await store.outbox_backlog() == (0, None)
    before = datetime.now(UTC) - timedelta(seconds=1)
    run = make_run()
    applied, _ = await create_run(
        store, run, lambda s: Changes(state=s, outbox=[message(s.id, str(i)) for i in range(3)])
    )
    after = datetime.now(UTC) + timedelta(seconds=1)
    ids = [r.id for r in applied.outbox]
    assert ids == sorted(ids)
    assert await store.claim_unsent(before, 10) == []
    claimed = await store.claim_unsent(after, 2)
    assert claimed == applied.outbox[:2]
    assert claimed[0].message.headers == {"event_type": "x"}
    count, oldest = await store.outbox_backlog()
    assert count == 3
    assert oldest is not None
    assert before < oldest < after
    await store.mark_sent(ids[:2])
    await store.mark_sent([])
    assert await store.claim_unsent(after, 10) == applied.outbox[2:]
    assert (await store.outbox_backlog())[0] == 1


async def test_a_leased_row_is_left_to_its_worker_until_the_lease_runs_out(
    store: SqlStore,
) -> None:
    """A row written leased (eager dispatch) is not claimed while its lease lasts; a renewal
    extends it; once it runs out the sweeper may claim it like any unsent row."""
    leased = replace(message("r", "eager"), lease_seconds=0.5)
    applied, _ = await create_run(
        store, make_run(), lambda s: Changes(state=s, outbox=[leased, message(s.id, "plain")])
    )
    later = datetime.now(UTC) + timedelta(seconds=60)
    eager, plain = applied.outbox

    assert (eager.leased, plain.leased) == (True, False)
    assert await store.claim_unsent(later, 10) == [plain]
    await anyio.sleep(0.3)
    await store.renew_leases([eager.id], 0.5)
    await anyio.sleep(0.3)
    assert await store.claim_unsent(later, 10) == [plain]  # renewed: still its worker's
    await anyio.sleep(0.4)
    # Claimed by a sweeper, it is nobody's eager dispatch any more, and its attempt ran once
    # in the process that held it.
    lost = replace(eager, leased=False, message=delivered_once_more(eager.message))
    assert await store.claim_unsent(later, 10) == [lost, plain]
    assert earlier_deliveries(lost.message) == 1
    assert (await store.outbox_backlog())[0] == 2


async def test_recovery_claims_a_row_under_a_live_lease(store: SqlStore) -> None:
    """Start-up recovery (`leased=True`) takes a leased row at once: no process is left that
    holds its lease. Marked as delivered once, like a row whose lease ran out."""
    leased = replace(message("r", "eager"), lease_seconds=600)
    applied, _ = await create_run(store, make_run(), lambda s: Changes(state=s, outbox=[leased]))
    later = datetime.now(UTC) + timedelta(seconds=60)
    [eager] = applied.outbox

    assert await store.claim_unsent(later, 10) == []
    [claimed] = await store.claim_unsent(later, 10, leased=True)
    assert (claimed.id, claimed.leased) == (eager.id, False)
    assert earlier_deliveries(claimed.message) == 1
    assert claimed.message.body == eager.message.body


async def _run_with_timers(store: SqlStore, *fire_seconds: float) -> str:
    run = make_run()
    starts = [timer(run.id, s, task_id=None, attempt=i) for i, s in enumerate(fire_seconds)]
    await create_run(store, run, lambda s: Changes(state=s, start_timers=starts))
    return run.id


async def test_due_timers_are_leased_to_one_claimer(store: SqlStore) -> None:
    """A claimed timer is hidden from other claims until its lease runs out."""
    run_id = await _run_with_timers(store, 10, 20, 30)
    assert await store.next_timer_at() == at(10)
    claimed = await store.claim_due_timers(at(25), 10, lease_seconds=60)
    assert claimed == [
        DueTimer(run_id=run_id, kind=TimerKind.RETRY, task_id=None, attempt=0, fire_at=at(10)),
        DueTimer(run_id=run_id, kind=TimerKind.RETRY, task_id=None, attempt=1, fire_at=at(20)),
    ]
    assert await store.claim_due_timers(at(26), 10, lease_seconds=60) == []
    assert await store.next_timer_at() == at(10)  # leased timers still count
    again = await store.claim_due_timers(at(86), 10, lease_seconds=60)
    assert [t.fire_at for t in again] == [at(10), at(20), at(30)]


async def test_overdue_timers_are_counted_up_to_a_cap(store: SqlStore) -> None:
    """Timers due at `now` are counted (leased or not), never more than the cap."""
    await _run_with_timers(store, 10, 20, 30)
    assert await store.count_overdue_timers(at(5), 100) == 0
    assert await store.count_overdue_timers(at(25), 100) == 2
    await store.claim_due_timers(at(25), 10, lease_seconds=60)
    assert await store.count_overdue_timers(at(25), 100) == 2  # leased, still not fired
    assert await store.count_overdue_timers(at(35), 2) == 2


async def test_claim_respects_the_limit_oldest_first(store: SqlStore) -> None:
    """With more due timers than the limit, the earliest are claimed first."""
    await _run_with_timers(store, 3, 1, 2)
    first = await store.claim_due_timers(at(5), 2, lease_seconds=60)
    second = await store.claim_due_timers(at(5), 2, lease_seconds=60)
    assert [t.fire_at for t in first] == [at(1), at(2)]
    assert [t.fire_at for t in second] == [at(3)]


async def test_starting_a_timer_again_replaces_it_and_cancel_removes_it(store: SqlStore) -> None:
    """StartTimer on an existing identity moves fire_at and drops the lease; cancel deletes."""
    run = make_run()
    await create_run(store, run, lambda s: Changes(state=s, start_timers=[timer(s.id, 10)]))
    assert len(await store.claim_due_timers(at(10), 10, lease_seconds=600)) == 1
    await apply(store, run.id, lambda s: Changes(state=s, start_timers=[timer(s.id, 40)]))
    assert await store.claim_due_timers(at(39), 10, lease_seconds=600) == []
    (moved,) = await store.claim_due_timers(at(40), 10, lease_seconds=600)
    assert (moved.task_id, moved.attempt, moved.fire_at) == ("first", 1, at(40))
    cancel = CancelTimer(run_id=run.id, kind=TimerKind.RETRY, task_id="first", attempt=1)
    await apply(store, run.id, lambda s: Changes(state=s, cancel_timers=[cancel]))
    assert await store.next_timer_at() is None


TRACE_A = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_B = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_timer_keeps_the_trace_context_of_the_decision_that_started_it(
    store: SqlStore,
) -> None:
    """The claimer gets the starting decision's traceparent; starting it again replaces it."""
    run = make_run()
    first = timer(run.id, 10)
    await create_run(
        store, run, lambda s: Changes(state=s, start_timers=[first], traceparent=TRACE_A)
    )
    (claimed,) = await store.claim_due_timers(at(10), 10, lease_seconds=1)
    assert claimed.traceparent == TRACE_A
    await apply(
        store,
        run.id,
        lambda s: Changes(state=s, start_timers=[timer(s.id, 40)], traceparent=TRACE_B),
    )
    untraced = timer(run.id, 40, task_id="second")
    await apply(store, run.id, lambda s: Changes(state=s, start_timers=[untraced]))
    due = await store.claim_due_timers(at(40), 10, lease_seconds=1)
    assert {(t.task_id, t.traceparent) for t in due} == {("first", TRACE_B), ("second", None)}


async def test_concurrent_claimers_never_share_a_timer(store: SqlStore, twin: SqlStore) -> None:
    """Claimers racing (on two stores) split the due timers without any overlap."""
    run = make_run()
    starts = [timer(run.id, i % 7, task_id=f"t{i}") for i in range(60)]
    await create_run(store, run, lambda s: Changes(state=s, start_timers=starts))
    claimed: list[DueTimer] = []

    async def claim(on: SqlStore) -> None:
        while batch := await on.claim_due_timers(at(10), 7, lease_seconds=300):
            claimed.extend(batch)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(claim, store if i % 2 else twin)
    assert len(claimed) == 60
    assert len({t.task_id for t in claimed}) == 60


async def test_timers_go_with_their_run_only(store: SqlStore) -> None:
    """No timers means no next time, and a run without timers claims nothing."""
    await create_run(store, make_run(), unchanged)
    assert await store.next_timer_at() is None
    assert await store.claim_due_timers(at(10**6), 10, lease_seconds=1) == []
