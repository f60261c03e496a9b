"""The API wired to the real engine (SQLite file, in-process transport, worker and
orchestrator running), driven through the typed `AsyncClient`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from treadle.client import ApiError, AsyncClient, _Call
from treadle.config import (
    DatabaseSettings,
    OrchestratorSettings,
    Settings,
    TransportSettings,
    WorkerSettings,
)
from treadle.modules.api import RunBody, create_app
from treadle.modules.api import _waiting as api_waiting
from treadle.wiring import build

pytestmark = pytest.mark.anyio

GREET: dict[str, Any] = {
    "name": "greet",
    "input_schema": {"type": "object", "required": ["who"]},
    "tasks": {"hello": {"handler": "api.greet", "input": {"who": "${ input.who }"}}},
    "output": "${ tasks.hello.output }",
}
GATE: dict[str, Any] = {
    "name": "gate",
    "tasks": {
        "wait": {"type": "signal", "signal": "go"},
        "hello": {"after": ["wait"], "handler": "api.greet", "input": {"who": "gate"}},
    },
}
BOOM: dict[str, Any] = {"name": "boom", "tasks": {"only": {"handler": "api.boom"}}}


@asynccontextmanager
async def _api_on_engine(tmp_path: Path, *, announce_ends: bool) -> AsyncIterator[AsyncClient]:
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"),
        transport=TransportSettings(kind="memory"),
        worker=WorkerSettings(concurrency=4, drain_seconds=0.2),
        orchestrator=OrchestratorSettings(timer_poll_seconds=0.2, sweep_interval_seconds=0.5),
    )
    engine = build(settings, handler_modules=["tests.integration.api.handlers"])
    await engine.store.migrate()
    await engine.connect()
    app = create_app(
        run_control=engine.run_service,
        workflows=engine.store,
        runs=engine.store,
        health=engine.health_checks(),
        settings=settings.api,
        run_ends=engine.run_service.finishes if announce_ends else None,
    )
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
            tg.start_soon(engine.worker().run)
            async with AsyncClient("http://treadle.test", transport=httpx.ASGITransport(app)) as c:
                for definition in (GREET, GATE, BOOM):
                    await c.register_workflow(definition)
                yield c
            tg.cancel_scope.cancel()
    finally:
        await engine.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    """A typed client on an app wired to a running engine on a fresh SQLite file."""
    async with _api_on_engine(tmp_path, announce_ends=True) as client:
        yield client


@pytest.fixture
async def api_only(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    """The same, but the app is not told of run ends (as in a process with the api role
    alone): its long polls learn of them by reading the store again."""
    async with _api_on_engine(tmp_path, announce_ends=False) as client:
        yield client


async def settled(api: AsyncClient, run_id: str, status: str | None = None) -> RunBody:
    """The run once it is finished (or has `status`)."""
    with anyio.fail_after(15):
        while True:
            run = await api.get_run(run_id)
            if run.status == status or (status is None and run.finished_at is not None):
                return run
            await anyio.sleep(0.05)


async def test_a_run_started_over_http_completes_with_its_output(api: AsyncClient) -> None:
    """A run goes from POST /v1/runs to completed, with task details and history."""
    run, created = await api.start_run("greet", {"who": "ada"})
    assert created
    assert [task.task_id for task in run.tasks] == ["hello"]
    done = await settled(api, run.id)
    assert done.status == "completed"
    assert done.output == {"greeting": "hello ada"}
    assert done.tasks[0].status == "completed"
    assert done.tasks[0].attempt == 1
    history = await api.list_events(run.id)
    types = [entry.type for entry in history.items]
    assert types[0] == "run.started"
    assert "task.completed" in types


async def test_registration_reports_created_then_unchanged(api: AsyncClient) -> None:
    """The real store versions by content: same content is not a new version."""
    ref, created = await api.register_workflow(GREET)
    assert (ref.name, ref.version, created) == ("greet", 1, False)
    ref, created = await api.register_workflow({**GREET, "description": "v2"})
    assert (ref.version, created) == (2, True)
    detail = await api.get_workflow("greet")
    assert [v.version for v in detail.versions] == [2, 1]
    assert (await api.get_workflow_version("greet", 1)).definition == GREET


async def test_idempotency_key_returns_the_same_run(api: AsyncClient) -> None:
    """Two starts with one key give one run; the second says it was not created."""
    first, created = await api.start_run("greet", {"who": "a"}, idempotency_key="k-1")
    second, again = await api.start_run("greet", {"who": "a"}, idempotency_key="k-1")
    assert (created, again) == (True, False)
    assert second.id == first.id


async def test_invalid_input_and_unknown_workflow_raise_api_errors(api: AsyncClient) -> None:
    """The engine's InputInvalid is a 422 with paths; an unknown workflow a 404."""
    with pytest.raises(ApiError) as invalid:
        await api.start_run("greet", {})
    assert invalid.value.status == 422
    assert invalid.value.errors == [{"path": "input.who", "message": "required"}]
    with pytest.raises(ApiError) as missing:
        await api.start_run("ghost", {})
    assert missing.value.status == 404


async def test_a_signal_releases_a_waiting_run(api: AsyncClient) -> None:
    """A signal task waits until POST /signals/{name} arrives, then the run completes."""
    run, _ = await api.start_run("gate")
    await settled(api, run.id, "running")
    signalled = await api.signal_run(run.id, "go", {"ok": True})
    assert signalled.id == run.id
    assert (await settled(api, run.id)).status == "completed"


async def test_signal_and_cancel_of_a_finished_run_are_409(api: AsyncClient) -> None:
    """Steering a run that already ended is a conflict naming its status."""
    run, _ = await api.start_run("boom")
    assert (await settled(api, run.id)).status == "failed"
    for attempt in (api.signal_run(run.id, "go"), api.cancel_run(run.id)):
        with pytest.raises(ApiError) as conflict:
            await attempt
        assert conflict.value.status == 409
        assert conflict.value.body["run_status"] == "failed"


async def test_cancel_stops_a_waiting_run(api: AsyncClient) -> None:
    """Cancelling a run that waits for a signal answers with it and ends it cancelled."""
    run, _ = await api.start_run("gate")
    await settled(api, run.id, "running")
    await api.cancel_run(run.id, "no longer needed")
    assert (await settled(api, run.id)).status == "cancelled"


async def test_retry_reruns_the_failed_task_on_the_real_engine(api: AsyncClient) -> None:
    """Retrying a failed run runs its failed task again (next attempt); a running one is 409."""
    run, _ = await api.start_run("boom")
    await settled(api, run.id)
    retried = await api.retry_run(run.id)
    assert retried.status == "running"
    again = await settled(api, run.id, "failed")
    assert again.tasks[0].attempt > run.tasks[0].attempt
    ok, _ = await api.start_run("greet", {"who": "x"})
    await settled(api, ok.id)
    with pytest.raises(ApiError) as conflict:
        await api.retry_run(ok.id)
    assert conflict.value.status == 409


async def test_list_runs_filters_and_rejects_a_bad_cursor(api: AsyncClient) -> None:
    """The real store lists newest first by status, and refuses a forged cursor with 400."""
    ok, _ = await api.start_run("greet", {"who": "x"})
    bad, _ = await api.start_run("boom")
    await settled(api, ok.id)
    await settled(api, bad.id)
    failed = await api.list_runs(status="failed")
    assert [r.id for r in failed.items] == [bad.id]
    everything = await api.list_runs(limit=1)
    assert everything.items[0].id == bad.id
    assert everything.next_cursor is not None
    with pytest.raises(ApiError) as forged:
        await api.list_runs(cursor="not-a-cursor")
    assert forged.value.status == 400


async def test_unknown_run_is_404_through_the_client(api: AsyncClient) -> None:
    """RunNotFound from the real store reaches the client as an ApiError 404."""
    with pytest.raises(ApiError) as missing:
        await api.get_run("no-such-run")
    assert (missing.value.status, missing.value.title) == (404, "Run not found")


async def _long_poll(
    api: AsyncClient, run_id: str, wait: float, into: list[RunBody], answered: anyio.Event
) -> None:
    into.append(await api.get_run(run_id, wait=wait))
    answered.set()


async def test_a_long_poll_answers_when_the_run_ends(
    api: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /v1/runs/{id}?wait=N is answered by the end of the run, announced in-process
    (the store rechecks are pushed out of reach, so only the announcement can wake it)."""
    monkeypatch.setattr(api_waiting, "RECHECK_WITH_NOTICES", 600.0)
    run, _ = await api.start_run("gate")
    await settled(api, run.id, "running")
    answers: list[RunBody] = []
    answered = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_long_poll, api, run.id, 60.0, answers, answered)
        await anyio.sleep(0.2)
        assert answers == []  # still waiting: the run waits for its signal
        await api.signal_run(run.id, "go", {"ok": True})
        with anyio.fail_after(10):
            await answered.wait()
    assert answers[0].status == "completed"
    assert [t.status for t in answers[0].tasks] == ["completed", "completed"]


async def test_a_long_poll_without_announcements_sees_the_end_by_reading_again(
    api_only: AsyncClient,
) -> None:
    run, _ = await api_only.start_run("greet", {"who": "poll"})
    with anyio.fail_after(10):
        done = await api_only.get_run(run.id, wait=8.0)
    assert done.status == "completed"
    assert done.output == {"greeting": "hello poll"}


async def test_a_long_poll_ends_at_its_deadline_with_the_run_as_it_is(api: AsyncClient) -> None:
    run, _ = await api.start_run("gate")
    await settled(api, run.id, "running")
    with anyio.fail_after(10):
        still = await api.get_run(run.id, wait=0.3)
    assert still.status == "running"


async def test_a_long_poll_on_an_ended_run_answers_at_once(api: AsyncClient) -> None:
    run, _ = await api.start_run("boom")
    await settled(api, run.id)
    with anyio.fail_after(5):  # far below the wait
        done = await api.get_run(run.id, wait=60.0)
    assert done.status == "failed"


@pytest.mark.parametrize("wait", ["-1", "61", "soon"])
async def test_a_wait_out_of_range_is_400_and_an_unknown_run_404(
    api: AsyncClient, wait: str
) -> None:
    with pytest.raises(ApiError) as bad:
        await api._send(_Call("GET", "/v1/runs/r1", RunBody, params={"wait": wait}))
    assert bad.value.status == 400
    assert "wait" in str(bad.value)
    with pytest.raises(ApiError) as missing:
        await api.get_run("no-such-run", wait=0.5)
    assert missing.value.status == 404
