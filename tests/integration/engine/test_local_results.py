"""A worker in a process that also orchestrates over a broker has its results decided in
the process: they never cross the events channel. With `worker.decide_locally` off, or
when deciding one here fails, they go over it as before; over the in-process transport
(whose events channel is a memory queue) nothing changes. (Eager dispatch, which takes
the tasks channel out of the path too, is off where the tasks channel is counted.)

The in-process transport stands in for a broker here (`_as_broker`): what is measured is
which channel the worker publishes on, not the broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from tests.integration.engine.conftest import SettingsFactory
from tests.integration.engine.test_engine import finished, running
from treadle.domain.state import RunStatus
from treadle.messages import EVENTS_CHANNEL, Message
from treadle.store import StoreUnavailable
from treadle.wiring import Process, build

CHAIN: dict[str, Any] = {
    "name": "chain3",
    "tasks": {
        "a": {"handler": "t.echo"},
        "b": {"handler": "t.echo", "after": ["a"]},
        "c": {"handler": "t.echo", "after": ["b"]},
    },
}


def _as_broker(engine: Process) -> Process:
    """The engine, its transport saying it is durable, as a broker's would."""
    engine.transport.DURABLE = True  # type: ignore[misc]  # this instance only
    return engine


def _count_publishes(engine: Process) -> Counter[str]:
    """Messages published per channel by the engine's transport from now on."""
    counts: Counter[str] = Counter()
    publish = engine.transport.publish

    async def counted(channel: str, messages: Sequence[Message]) -> None:
        counts[channel] += len(messages)
        await publish(channel, messages)

    engine.transport.publish = counted  # type: ignore[method-assign]
    return counts


async def _run_chain(engine: Process) -> tuple[RunStatus, Counter[str]]:
    """Run CHAIN to its end; its status, and the messages published per channel."""
    counts = _count_publishes(engine)
    async with running(engine):
        await engine.run_service.register_workflow(CHAIN)
        run, _ = await engine.run_service.start_run("chain3", None, {})
        done = await finished(engine, run.id)
    return done.status, counts


@pytest.mark.anyio
async def test_results_are_decided_in_the_process_without_the_events_channel(
    make_settings: SettingsFactory,
) -> None:
    status, counts = await _run_chain(_as_broker(build(make_settings(eager=False))))

    assert status is RunStatus.COMPLETED
    assert counts[EVENTS_CHANNEL] == 0
    assert counts["tasks.default"] == 3


@pytest.mark.anyio
async def test_over_the_in_process_transport_results_take_its_events_channel(
    make_settings: SettingsFactory,
) -> None:
    status, counts = await _run_chain(build(make_settings()))

    assert status is RunStatus.COMPLETED
    assert counts[EVENTS_CHANNEL] >= 3


@pytest.mark.anyio
async def test_with_decide_locally_off_results_cross_the_events_channel(
    make_settings: SettingsFactory,
) -> None:
    status, counts = await _run_chain(_as_broker(build(make_settings(decide_locally=False))))

    assert status is RunStatus.COMPLETED
    assert counts[EVENTS_CHANNEL] >= 3


@pytest.mark.anyio
async def test_a_result_that_cannot_be_decided_here_goes_over_the_broker(
    make_settings: SettingsFactory,
) -> None:
    """The store fails the local decision once: the result is published instead, the
    events consumer decides it, and the run completes."""
    engine = _as_broker(build(make_settings()))
    counts = _count_publishes(engine)
    apply_event = engine.run_service.apply_event
    failures = [StoreUnavailable("apply", "the database is away")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await apply_event(*args, **kwargs)

    async with running(engine):
        await engine.run_service.register_workflow({"name": "one", "tasks": CHAIN["tasks"]})
        run, _ = await engine.run_service.start_run("one", None, {})
        engine.run_service.apply_event = flaky  # type: ignore[method-assign]
        done = await finished(engine, run.id)

    assert done.status is RunStatus.COMPLETED
    assert counts[EVENTS_CHANNEL] == 1
