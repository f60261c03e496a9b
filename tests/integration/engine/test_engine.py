"""Runs driven end to end: `RunService` starts them, the worker runs real handlers, the
orchestrator applies results and timers, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.engine import handlers
from tests.integration.engine.conftest import SettingsFactory
from treadle.domain.errors import RunNotActive
from treadle.domain.state import RunState, RunStatus, TaskStatus
from treadle.modules.orchestrator._children import MAX_CHILD_DEPTH
from treadle.observability import Telemetry
from treadle.ports import RunFilter
from treadle.store._tables import outbox
from treadle.wiring import Process, build

DIAMOND: dict[str, Any] = {
    "name": "diamond",
    "tasks": {
        "a": {"handler": "t.echo", "input": {"n": "${ input.n }"}},
        "b": {"after": ["a"], "handler": "t.add", "input": {"a": "${ tasks.a.output.n }", "b": 1}},
        "c": {"after": ["a"], "handler": "t.echo", "when": "${ input.n > `100` }"},
        "d": {"after": ["b"], "handler": "t.add", "input": {"a": "${ tasks.b.output }", "b": 10}},
        "e": {"after": ["b", "c"], "handler": "t.echo"},
    },
    "output": "${ tasks.d.output }",
}


@asynccontextmanager
async def running(engine: Process) -> AsyncIterator[Process]:
    """The engine migrated and connected, its orchestrator and worker running."""
    await engine.store.migrate()
    await engine.connect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
            tg.start_soon(engine.worker().run)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()
    finally:
        await engine.close()


async def entered(run_id: str) -> None:
    """Wait until the run's `t.hold` task is running in the worker."""
    with anyio.fail_after(5):
        while True:
            if run_id in handlers.ENTERED:
                return
            await anyio.sleep(0.02)


async def finished(engine: Process, run_id: str, within: float = 20.0) -> RunState:
    """The run once it reaches a terminal status."""
    with anyio.fail_after(within):
        while True:
            run = await engine.store.get_run(run_id)
            if run.status.is_terminal:
                return run
            await anyio.sleep(0.05)


async def one_task_workflow(engine: Process, name: str, task: dict[str, Any]) -> None:
    await engine.run_service.register_workflow({"name": name, "tasks": {"only": task}})


@pytest.mark.anyio
async def test_a_diamond_runs_to_completion_skipping_a_false_branch(
    make_settings: SettingsFactory,
) -> None:
    """Tasks run in dependency order; a false `when` skips its task and what needs it."""
    async with running(build(make_settings())) as engine:
        stored, created = await engine.run_service.register_workflow(DIAMOND)
        run, _ = await engine.run_service.start_run("diamond", None, {"n": 5})
        done = await finished(engine, run.id)

    assert created
    assert stored.version == 1
    assert done.status is RunStatus.COMPLETED
    assert done.output == 16
    statuses = {tid: t.status for tid, t in done.tasks.items()}
    assert statuses == {
        "a": TaskStatus.COMPLETED,
        "b": TaskStatus.COMPLETED,
        "c": TaskStatus.SKIPPED,
        "d": TaskStatus.COMPLETED,
        "e": TaskStatus.SKIPPED,
    }
    assert done.tasks["a"].output == {"task": "a", "n": 5}


@pytest.mark.anyio
async def test_a_failing_handler_is_retried_after_its_backoff(
    make_settings: SettingsFactory,
) -> None:
    """A handler failing twice succeeds on the third attempt, after short backoffs."""
    async with running(build(make_settings())) as engine:
        await one_task_workflow(
            engine,
            "flaky",
            {
                "handler": "t.flaky",
                "input": {"succeed_on": 3},
                "retry": {"max_attempts": 3, "initial_interval": "100ms", "backoff": 1.0},
            },
        )
        run, _ = await engine.run_service.start_run("flaky", None, None)
        done = await finished(engine, run.id, within=10)
        history = await engine.store.list_history(run.id, 100, None)

    assert done.status is RunStatus.COMPLETED
    assert done.tasks["only"].attempt == 3
    assert done.tasks["only"].output == 3
    failures = [h for h in history.items if h.type == "task.failed"]
    assert [h.attempt for h in failures] == [1, 2]


@pytest.mark.anyio
async def test_an_attempt_past_its_timeout_times_the_task_out(
    make_settings: SettingsFactory,
) -> None:
    """A handler sleeping past a 0.5s timeout, without retries, fails the run as timed out."""
    async with running(build(make_settings())) as engine:
        await one_task_workflow(
            engine, "slow", {"handler": "t.sleep", "input": {"seconds": 60}, "timeout": "500ms"}
        )
        run, _ = await engine.run_service.start_run("slow", None, None)
        # Far less than the handler's 60 s, so only the timeout can end it; room for a
        # loaded machine (4 s was missed at load 16).
        done = await finished(engine, run.id, within=30)

    assert done.status is RunStatus.FAILED
    assert done.tasks["only"].status is TaskStatus.TIMED_OUT
    assert done.tasks["only"].error is not None
    assert done.tasks["only"].error.type == "TimeoutError"


@pytest.mark.anyio
async def test_a_cancelled_run_stops_and_cannot_be_cancelled_again(
    make_settings: SettingsFactory,
) -> None:
    """Cancelling a running run makes it cancelled; a second cancel is `RunNotActive`."""
    async with running(build(make_settings())) as engine:
        await one_task_workflow(engine, "held", {"handler": "t.hold"})
        run, _ = await engine.run_service.start_run("held", None, None)
        await entered(run.id)
        cancelled = await engine.run_service.cancel_run(run.id, reason="test")
        handlers.RELEASED.add(run.id)
        with pytest.raises(RunNotActive) as info:
            await engine.run_service.cancel_run(run.id)
        await anyio.sleep(0.2)  # the late result arrives and must change nothing
        after = await engine.store.get_run(run.id)

    assert cancelled.status is RunStatus.CANCELLED
    assert info.value.status == "cancelled"
    assert after.status is RunStatus.CANCELLED


@pytest.mark.anyio
async def test_starting_twice_with_one_idempotency_key_gives_one_run(
    make_settings: SettingsFactory,
) -> None:
    """The second start with the same key returns the first run, not created."""
    async with running(build(make_settings())) as engine:
        await one_task_workflow(engine, "once", {"handler": "t.echo"})
        first, created_first = await engine.run_service.start_run(
            "once", None, {"x": 1}, idempotency_key="key-1"
        )
        second, created_second = await engine.run_service.start_run(
            "once", None, {"x": 1}, idempotency_key="key-1"
        )
        await finished(engine, first.id)
        page = await engine.store.list_runs(RunFilter(workflow="once"), limit=10, cursor=None)

    assert (created_first, created_second) == (True, False)
    assert second.id == first.id
    assert [r.id for r in page.items] == [first.id]


@pytest.mark.anyio
@pytest.mark.usefixtures("durable_store")
async def test_an_attempt_in_flight_at_a_stop_is_redispatched_after_restart(
    make_settings: SettingsFactory,
) -> None:
    """With the in-process transport, a new engine re-dispatches attempts left running."""
    settings = make_settings(drain_seconds=0.1)
    async with running(build(settings)) as engine:
        await one_task_workflow(engine, "restart", {"handler": "t.hold"})
        run, _ = await engine.run_service.start_run("restart", None, None)
        await entered(run.id)
    handlers.RELEASED.add(run.id)

    async with running(build(settings)) as engine:
        done = await finished(engine, run.id)

    assert done.status is RunStatus.COMPLETED
    assert done.tasks["only"].output == "released"


@pytest.mark.anyio
@pytest.mark.usefixtures("durable_store")
async def test_the_orchestrator_reports_its_start_once_recovery_is_over(
    make_settings: SettingsFactory,
) -> None:
    """Started with `TaskGroup.start`, the orchestrator returns only after its start-up
    recovery has re-dispatched what the last process left (delivery 2): nothing decided in
    this process after that can be taken for the dead one's and sent twice."""
    settings = make_settings(drain_seconds=0.1)
    async with running(build(settings)) as engine:
        await one_task_workflow(engine, "recovered", {"handler": "t.hold"})
        run, _ = await engine.run_service.start_run("recovered", None, None)
        await entered(run.id)
    handlers.RELEASED.add(run.id)

    engine = build(settings)
    await engine.connect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)
            state = await engine.store.get_run(run.id)
            tg.cancel_scope.cancel()
    finally:
        await engine.close()
    assert state.tasks["only"].delivery == 2


async def _unsend_dispatches(database_url: str) -> int:
    """Mark every dispatch in the outbox unsent and old, as a process that died between
    publishing it and marking it sent (`os._exit` in the handler it reached) leaves it."""
    db = create_async_engine(database_url)
    try:
        async with db.begin() as conn:
            done = await conn.execute(
                update(outbox)
                .where(outbox.c.channel.like("tasks.%"))
                .values(sent_at=None, created_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
    finally:
        await db.dispose()
    return done.rowcount


@pytest.mark.anyio
@pytest.mark.usefixtures("durable_store", "sql_store")
async def test_a_restart_sends_an_attempt_once_not_its_unsent_copy_too(
    make_settings: SettingsFactory,
) -> None:
    """After a restart, an attempt whose dispatch was left unsent in the outbox runs once,
    from recovery's counted re-dispatch: the stale copy, carrying its old delivery count,
    is not swept out as well (it let an attempt that ends its process run after every
    restart, a crash loop)."""
    settings = make_settings(drain_seconds=0.1)
    async with running(build(settings)) as engine:
        await one_task_workflow(engine, "resent", {"handler": "t.hold"})
        run, _ = await engine.run_service.start_run("resent", None, None)
        await entered(run.id)
    assert await _unsend_dispatches(settings.database.url) == 1
    handlers.ENTERED.discard(run.id)

    async with running(build(settings)) as engine:
        await entered(run.id)
        # Several sweeps (every 0.5 s, rows stale after 1 s) before the attempt may end.
        await anyio.sleep(2.0)
        handlers.RELEASED.add(run.id)
        done = await finished(engine, run.id)
        events = await engine.store.list_history(run.id, limit=100, cursor=None)

    assert done.status is RunStatus.COMPLETED
    assert [h for h in handlers.HOLDS if h[0] == run.id] == [(run.id, 1), (run.id, 1)]
    [first, again] = [e.data for e in events.items if e.type == "task.scheduled"]
    assert "delivery" not in first
    assert (again["redispatch"], again["delivery"]) == (True, 2)


@pytest.mark.anyio
@pytest.mark.usefixtures("durable_store")
async def test_a_map_in_flight_at_a_stop_completes_after_restart(
    make_settings: SettingsFactory,
) -> None:
    """A new engine re-dispatches the map items left scheduled or running, without timeouts."""
    settings = make_settings(drain_seconds=0.1)
    async with running(build(settings)) as engine:
        await engine.run_service.register_workflow(
            {
                "name": "fan",
                "tasks": {
                    "m": {
                        "type": "map",
                        "items": "${ input }",
                        "concurrency": 10,
                        "task": {"handler": "t.hold"},
                    }
                },
                "output": "${ tasks.m.output }",
            }
        )
        run, _ = await engine.run_service.start_run("fan", None, list(range(10)))
        await entered(run.id)
        held = await engine.store.inflight_attempts(100, None)
    handlers.RELEASED.add(run.id)

    async with running(build(settings)) as engine:
        done = await finished(engine, run.id, within=10)

    assert sorted(a.item for a in held if a.item is not None) == list(range(10))
    assert done.status is RunStatus.COMPLETED
    assert done.output == ["released"] * 10


@pytest.mark.anyio
async def test_a_workflow_that_starts_itself_stops_at_the_depth_limit(
    make_settings: SettingsFactory,
) -> None:
    """Self-recursion nests ten child runs, then the deepest task fails with a clear error."""
    async with running(build(make_settings())) as engine:
        await one_task_workflow(engine, "loop", {"type": "workflow", "workflow": "loop"})
        run, _ = await engine.run_service.start_run("loop", None, None)
        done = await finished(engine, run.id)
        page = await engine.store.list_runs(RunFilter(workflow="loop"), limit=50, cursor=None)

    assert done.status is RunStatus.FAILED
    assert len(page.items) == 1 + MAX_CHILD_DEPTH
    assert {r.status for r in page.items} == {RunStatus.FAILED}
    assert done.error is not None
    assert "ChildDepthExceeded" in done.error.message
    assert f"would nest {MAX_CHILD_DEPTH + 1} levels deep" in done.error.message


@pytest.mark.anyio
@pytest.mark.usefixtures("durable_store")
async def test_a_timer_fired_on_another_replica_joins_the_runs_trace(
    make_settings: SettingsFactory,
) -> None:
    """A sleep started on one engine and fired on a fresh one: one trace id throughout."""
    first_spans, second_spans = InMemorySpanExporter(), InMemorySpanExporter()
    settings = make_settings()
    first = build(settings, telemetry=Telemetry.for_tests(first_spans, role="orchestrator"))
    async with running(first) as engine:
        await one_task_workflow(engine, "nap", {"type": "sleep", "duration": "1s"})
        run, _ = await engine.run_service.start_run("nap", None, None)
    # The first engine stopped before the timer was due; a second one (no memory of the
    # run's trace) fires it.
    second = build(settings, telemetry=Telemetry.for_tests(second_spans, role="orchestrator"))
    async with running(second) as engine:
        done = await finished(engine, run.id, within=10)

    assert done.status is RunStatus.COMPLETED
    [started] = [s for s in first_spans.get_finished_spans() if s.name == "decide run.started"]
    [fired] = [s for s in second_spans.get_finished_spans() if s.name == "decide timer.fired"]
    assert started.context is not None
    assert fired.context is not None
    assert fired.context.trace_id == started.context.trace_id
    assert fired.parent is not None


@pytest.mark.anyio
@pytest.mark.usefixtures("sql_store")
async def test_each_decision_has_database_spans_under_it(make_settings: SettingsFactory) -> None:
    """The statements a decision runs are client spans whose parent is the decision's span,
    tagged with the database system (SQLAlchemy's instrumentation, on this engine only).

    A worker's start and result that queue behind each other are decided in one
    transaction, whose statements are children of the first one's span only; so each kind
    of decision must show its statements at least once, not every span."""
    spans = InMemorySpanExporter()
    engine = build(make_settings(), telemetry=Telemetry.for_tests(spans, role="orchestrator"))
    async with running(engine) as started:
        await one_task_workflow(started, "traced", {"handler": "t.echo", "input": {"n": 1}})
        run, _ = await started.run_service.start_run("traced", None, None)
        done = await finished(started, run.id)

    assert done.status is RunStatus.COMPLETED
    finished_spans = spans.get_finished_spans()
    decisions = [s for s in finished_spans if s.name.startswith("decide ")]
    assert {s.name for s in decisions} >= {"decide run.started", "decide task.completed"}
    with_statements: set[str] = set()
    for decision in decisions:
        assert decision.context is not None
        children = [
            s
            for s in finished_spans
            if s.parent is not None and s.parent.span_id == decision.context.span_id
        ]
        database = [s for s in children if s.kind is SpanKind.CLIENT]
        if database:
            with_statements.add(decision.name)
        assert {(s.attributes or {}).get("db.system") for s in database} <= {
            "sqlite",
            "postgresql",
        }
    assert "decide run.started" in with_statements
    assert with_statements & {"decide task.started", "decide task.completed"}
