"""Eager dispatch: a dispatch decided in a process that runs a worker for its queue is
run by that worker without the broker round trip, its outbox row leased until the
attempt is settled; what the worker cannot take (a handler not registered here, a sync
handler) goes to the broker as before."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from tests.integration.engine import handlers
from tests.integration.engine.conftest import SettingsFactory
from tests.integration.engine.test_engine import entered, finished, one_task_workflow, running
from treadle.domain.state import RunStatus
from treadle.messages import Message
from treadle.wiring import Process, build

CHAIN: dict[str, Any] = {
    "name": "chain3",
    "tasks": {
        "a": {"handler": "t.echo"},
        "b": {"handler": "t.echo", "after": ["a"]},
        "c": {"handler": "t.echo", "after": ["b"]},
    },
}


def _count_publishes(engine: Process) -> Counter[str]:
    """Messages published per channel by the engine's transport from now on."""
    counts: Counter[str] = Counter()
    publish = engine.transport.publish

    async def counted(channel: str, messages: Sequence[Message]) -> None:
        counts[channel] += len(messages)
        await publish(channel, messages)

    engine.transport.publish = counted  # type: ignore[method-assign]
    return counts


async def _settled_outbox(engine: Process) -> int:
    """The unsent rows once the relay's marks (after the run's end) have landed."""
    for _ in range(100):
        unsent, _oldest = await engine.store.outbox_backlog()
        if not unsent:
            break
        await anyio.sleep(0.05)
    return unsent


@pytest.mark.anyio
async def test_a_dispatch_decided_here_runs_here_without_the_broker(
    make_settings: SettingsFactory,
) -> None:
    engine = build(make_settings())
    counts = _count_publishes(engine)
    async with running(engine):
        await engine.run_service.register_workflow(CHAIN)
        run, _ = await engine.run_service.start_run("chain3", None, {"n": 1})
        done = await finished(engine, run.id)
        unsent = await _settled_outbox(engine)

    assert done.status is RunStatus.COMPLETED
    assert done.tasks["c"].output == {"task": "c"}
    assert counts["tasks.default"] == 0
    assert unsent == 0  # each leased row was marked sent once its attempt settled


@pytest.mark.anyio
async def test_with_eager_off_every_dispatch_crosses_the_broker(
    make_settings: SettingsFactory,
) -> None:
    engine = build(make_settings(eager=False))
    counts = _count_publishes(engine)
    async with running(engine):
        await engine.run_service.register_workflow(CHAIN)
        run, _ = await engine.run_service.start_run("chain3", None, {})
        done = await finished(engine, run.id)

    assert done.status is RunStatus.COMPLETED
    assert counts["tasks.default"] == 3


@pytest.mark.anyio
async def test_what_the_worker_here_cannot_take_goes_to_the_broker(
    make_settings: SettingsFactory,
) -> None:
    """A sync handler (it needs a thread of the worker's pool) and a handler registered
    nowhere here are published; the sync one still runs, from the broker."""
    engine = build(make_settings())
    counts = _count_publishes(engine)
    async with running(engine):
        await one_task_workflow(engine, "sync", {"handler": "t.add", "input": {"a": 1, "b": 2}})
        await one_task_workflow(engine, "elsewhere", {"handler": "t.not_here"})
        run, _ = await engine.run_service.start_run("sync", None, {})
        await engine.run_service.start_run("elsewhere", None, {})
        done = await finished(engine, run.id)

    assert done.status is RunStatus.COMPLETED
    assert done.tasks["only"].output == 3
    assert counts["tasks.default"] == 2


@pytest.mark.anyio
@pytest.mark.usefixtures("durable_store")
async def test_an_eager_attempt_left_by_a_stopped_process_goes_out_after_its_lease(
    make_settings: SettingsFactory,
) -> None:
    """The process stops with an eager attempt running: its row stays unsent, and no
    sweeper may take it until the lease (no longer renewed) has run out; then one does,
    and the run completes on the next process."""
    settings = make_settings(drain_seconds=0.1, eager_lease_seconds=1.5)
    async with running(build(settings)) as engine:
        await one_task_workflow(engine, "leased", {"handler": "t.hold"})
        run, _ = await engine.run_service.start_run("leased", None, None)
        await entered(run.id)
    handlers.RELEASED.add(run.id)
    left = build(settings)
    later = datetime.now(UTC) + timedelta(hours=1)
    try:
        unsent = await left.store.claim_unsent(later, 10)
        await anyio.sleep(1.6)
        claimable = await left.store.claim_unsent(later, 10)
    finally:
        await left.store.close()

    assert unsent == []
    assert [r.channel for r in claimable] == ["tasks.default"]
    async with running(build(settings)) as engine:
        done = await finished(engine, run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.tasks["only"].output == "released"
